//! Interoperability of gc-archive's ESDK messages with the official AWS Encryption SDK for Python
//! (driven through `esdk_interop.py` in the project virtualenv), both directions, with the raw AES
//! keyring and with AWS KMS (moto).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use gc_archive::crypto::{
    decrypt_bytes, decrypt_to_writer, encrypt_bytes, CryptoError, DecryptOptions,
    EncryptionContext, FrameEncryptor, Keyring, KmsKeyring, RawAesKeyring, StreamEncryptor,
    DEFAULT_FRAME_LEN,
};
use gc_archive_it::{venv, MotoServer};
use serde_json::Value;

const NAMESPACE: &str = "gc-archive-interop";
const KEY_NAME: &str = "wrapping-key-1";
const RAW_KEY: [u8; 32] = [
    0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
    0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
];
const FRAME: u32 = 4096;
const ESDK_SUITE_0478: u64 = 0x0478;

fn raw_keyring() -> RawAesKeyring {
    RawAesKeyring::new(NAMESPACE, KEY_NAME, RAW_KEY).expect("raw keyring")
}

fn context() -> EncryptionContext {
    EncryptionContext::new()
        .with("org", "acme-org-id")
        .with("conversation", "0f9a8b7c-1234")
        .with("recording", "r-42")
}

fn data(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Sizes that hit every body layout: empty, tiny, exactly one frame, one frame plus a byte, and
/// a multi-megabyte message.
fn sizes() -> [usize; 5] {
    [0, 1, FRAME as usize, FRAME as usize + 1, 5 << 20]
}

fn script() -> PathBuf {
    venv::workspace_root().join("tests/integration/tests/esdk_interop.py")
}

/// Runs the Python helper and returns its stdout; panics with its stderr on failure.
async fn python(args: &[String]) -> String {
    let out = tokio::process::Command::new(venv::python())
        .arg(script())
        .args(args)
        .env("AWS_ACCESS_KEY_ID", gc_archive_it::moto::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", gc_archive_it::moto::SECRET_KEY)
        .env("AWS_DEFAULT_REGION", gc_archive_it::moto::REGION)
        .output()
        .await
        .expect("run esdk_interop.py");
    assert!(
        out.status.success(),
        "esdk_interop.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

fn raw_args() -> Vec<String> {
    vec![
        "--raw-key-hex".into(),
        hex(&RAW_KEY),
        "--namespace".into(),
        NAMESPACE.into(),
        "--key-name".into(),
        KEY_NAME.into(),
    ]
}

fn kms_args(key_id: &str, moto: &MotoServer) -> Vec<String> {
    vec![
        "--kms-key-id".into(),
        key_id.into(),
        "--endpoint-url".into(),
        moto.endpoint_url(),
    ]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("utf-8 temp path").to_owned()
}

/// Python decrypts `ciphertext`; returns the plaintext and the report it printed.
async fn python_decrypt(ciphertext: &[u8], key_args: Vec<String>) -> (Vec<u8>, Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ct, pt) = (dir.path().join("ct"), dir.path().join("pt"));
    std::fs::write(&ct, ciphertext).expect("write ciphertext");
    let mut args = vec!["decrypt".to_owned(), path_arg(&ct), path_arg(&pt)];
    args.extend(key_args);
    let report: Value = serde_json::from_str(python(&args).await.trim()).expect("json report");
    (std::fs::read(&pt).expect("read plaintext"), report)
}

/// Python encrypts `plaintext` with our test context and `frame_len`.
async fn python_encrypt(plaintext: &[u8], frame_len: u32, key_args: Vec<String>) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pt, ct) = (dir.path().join("pt"), dir.path().join("ct"));
    std::fs::write(&pt, plaintext).expect("write plaintext");
    let mut args = vec!["encrypt".to_owned(), path_arg(&pt), path_arg(&ct)];
    args.extend(key_args);
    args.extend(["--frame-length".to_owned(), frame_len.to_string()]);
    for (k, v) in context().iter() {
        args.extend(["--context".to_owned(), format!("{k}={v}")]);
    }
    python(&args).await;
    std::fs::read(&ct).expect("read ciphertext")
}

fn assert_report(report: &Value, frame_len: u32) {
    let expected: serde_json::Map<String, Value> = context()
        .iter()
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect();
    assert_eq!(report["encryption_context"], Value::Object(expected));
    assert_eq!(report["frame_length"], u64::from(frame_len));
    assert_eq!(report["algorithm"], ESDK_SUITE_0478);
    assert_eq!(report["version"], 2);
    assert_eq!(report["content_type"], 2, "framed");
}

fn required() -> DecryptOptions {
    DecryptOptions {
        required_context: context(),
    }
}

#[tokio::test]
async fn our_raw_aes_messages_decrypt_with_the_python_esdk() {
    for n in sizes() {
        let pt = data(n);
        let ct = encrypt_bytes(&raw_keyring(), context(), FRAME, &pt)
            .await
            .expect("encrypt");
        let (back, report) = python_decrypt(&ct, raw_args()).await;
        assert!(back == pt, "python decrypted {n} bytes differently");
        assert_report(&report, FRAME);
        let expected_final = if n == 0 {
            0
        } else {
            (n - 1) % FRAME as usize + 1
        };
        assert_eq!(report["final_frame_length"], expected_final as u64, "n={n}");
    }
}

#[tokio::test]
async fn python_raw_aes_messages_decrypt_with_ours() {
    for n in sizes() {
        let pt = data(n);
        let ct = python_encrypt(&pt, FRAME, raw_args()).await;
        let keyring: Arc<dyn Keyring> = Arc::new(raw_keyring());
        let (back, info) = decrypt_bytes(keyring.clone(), required(), &ct)
            .await
            .expect("decrypt python message");
        assert!(back == pt, "we decrypted python's {n} bytes differently");
        assert_eq!(info.context, context());
        assert_eq!(info.frame_len, FRAME);
        assert_eq!(info.plaintext_len, n as u64);
        // The streaming path, reading in chunks that do not line up with frames.
        let mut streamed = Vec::new();
        decrypt_to_writer(keyring, required(), &ct[..], &mut streamed)
            .await
            .expect("streamed decrypt");
        assert!(streamed == pt);
    }
}

#[tokio::test]
async fn python_ends_exact_multiples_with_an_empty_final_frame_which_we_accept() {
    let pt = data(2 * FRAME as usize);
    let ct = python_encrypt(&pt, FRAME, raw_args()).await;
    let (_, report) = python_decrypt(&ct, raw_args()).await;
    assert_eq!(report["final_frame_length"], 0);
    let (back, _) = decrypt_bytes(Arc::new(raw_keyring()), required(), &ct)
        .await
        .expect("decrypt");
    assert!(back == pt);
}

#[tokio::test]
async fn python_message_with_the_wrong_raw_key_is_refused() {
    let ct = python_encrypt(b"secret", FRAME, raw_args()).await;
    let wrong = RawAesKeyring::new(NAMESPACE, KEY_NAME, [0u8; 32]).expect("raw keyring");
    let err = decrypt_bytes(Arc::new(wrong), DecryptOptions::default(), &ct)
        .await
        .expect_err("wrong key");
    assert!(
        matches!(err, CryptoError::NoDecryptableKey { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn message_written_across_checkpoints_and_streamed_decrypts_with_python() {
    let f = DEFAULT_FRAME_LEN as usize;
    let pt = data(3 * f + 777);
    let enc = FrameEncryptor::new(&raw_keyring(), context(), DEFAULT_FRAME_LEN)
        .await
        .expect("encryptor");
    let mut ct = enc.header().to_vec();
    let mut enc = enc;
    enc.encrypt_regular(&pt[..f], &mut ct).expect("part 1");
    let cp = serde_json::to_string(&enc.checkpoint()).expect("checkpoint");
    drop(enc);
    let cp = serde_json::from_str(&cp).expect("checkpoint json");
    let mut enc = FrameEncryptor::resume(&raw_keyring(), &cp)
        .await
        .expect("resume");
    enc.encrypt_regular(&pt[f..2 * f], &mut ct).expect("part 2");
    enc.finish(&pt[2 * f..], &mut ct).expect("finish");
    let (back, report) = python_decrypt(&ct, raw_args()).await;
    assert!(back == pt);
    assert_report(&report, DEFAULT_FRAME_LEN);

    // The push-style encryptor, fed odd-sized chunks, is just as readable.
    let enc = FrameEncryptor::new(&raw_keyring(), context(), FRAME)
        .await
        .expect("encryptor");
    let mut se = StreamEncryptor::new(enc);
    let mut ct = Vec::new();
    for chunk in pt.chunks(1000) {
        se.push(chunk, &mut ct).expect("push");
    }
    se.finish(&mut ct).expect("finish");
    let (back, _) = python_decrypt(&ct, raw_args()).await;
    assert!(back == pt);
}

async fn kms_key(moto: &MotoServer) -> (aws_sdk_kms::Client, String, String) {
    let kms = moto.kms().await;
    let key = kms.create_key().send().await.expect("create key");
    let arn = key
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("key arn")
        .to_owned();
    let alias = "alias/gc-archive-interop".to_owned();
    kms.create_alias()
        .alias_name(&alias)
        .target_key_id(&arn)
        .send()
        .await
        .expect("create alias");
    (kms, arn, alias)
}

#[tokio::test]
async fn kms_messages_round_trip_with_the_python_esdk_by_arn_and_alias() {
    let moto = MotoServer::start().await;
    let (kms, arn, alias) = kms_key(&moto).await;
    let pt = data(FRAME as usize * 3 + 5);

    for our_key_id in [&arn, &alias] {
        // Ours -> Python. EDKs name the key ARN even when we asked KMS by alias.
        let ours = KmsKeyring::new(kms.clone(), our_key_id.as_str());
        let ct = encrypt_bytes(&ours, context(), FRAME, &pt)
            .await
            .expect("encrypt with kms");
        let (back, report) = python_decrypt(&ct, kms_args(&arn, &moto)).await;
        assert!(
            back == pt,
            "python could not read our message made via {our_key_id}"
        );
        assert_report(&report, FRAME);

        // Python -> ours, decrypting with the same identifier.
        let ct = python_encrypt(&pt, FRAME, kms_args(our_key_id, &moto)).await;
        let (back, info) = decrypt_bytes(Arc::new(ours), required(), &ct)
            .await
            .expect("decrypt python kms message");
        assert!(back == pt);
        assert_eq!(info.context, context());
    }
}

#[tokio::test]
async fn kms_keyring_for_another_key_cannot_decrypt() {
    let moto = MotoServer::start().await;
    let (kms, arn, _) = kms_key(&moto).await;
    let other = kms.create_key().send().await.expect("second key");
    let other_arn = other
        .key_metadata()
        .and_then(|m| m.arn())
        .expect("arn")
        .to_owned();
    let ct = encrypt_bytes(&KmsKeyring::new(kms.clone(), arn), context(), FRAME, b"x")
        .await
        .expect("encrypt");
    let err = decrypt_bytes(
        Arc::new(KmsKeyring::new(kms.clone(), other_arn.clone())),
        DecryptOptions::default(),
        &ct,
    )
    .await
    .expect_err("other key ARN must not decrypt");
    assert!(
        matches!(&err, CryptoError::NoDecryptableKey { providers } if providers == &["aws-kms"]),
        "{err:?}"
    );
    // By bare key id the EDK is offered to KMS, which refuses it.
    let other_id = other_arn.rsplit('/').next().expect("key id").to_owned();
    let err = decrypt_bytes(
        Arc::new(KmsKeyring::new(kms, other_id)),
        DecryptOptions::default(),
        &ct,
    )
    .await
    .expect_err("other key id must not decrypt");
    assert!(matches!(err, CryptoError::Kms(_)), "{err:?}");
}

#[tokio::test]
async fn kms_encryption_resumed_from_a_checkpoint_decrypts_with_python() {
    let moto = MotoServer::start().await;
    let (kms, arn, alias) = kms_key(&moto).await;
    let pt = data(FRAME as usize * 4 + 100);
    let f = FRAME as usize;
    let mut enc = FrameEncryptor::new(&KmsKeyring::new(kms.clone(), alias), context(), FRAME)
        .await
        .expect("encryptor");
    let mut ct = enc.header().to_vec();
    enc.encrypt_regular(&pt[..2 * f], &mut ct)
        .expect("first part");
    let cp = serde_json::to_string(&enc.checkpoint()).expect("checkpoint");
    drop(enc);
    // A new process: only the checkpoint and a KMS client survive.
    let cp = serde_json::from_str(&cp).expect("checkpoint json");
    let enc = FrameEncryptor::resume(&KmsKeyring::new(kms, arn.clone()), &cp)
        .await
        .expect("resume via KMS Decrypt");
    enc.finish(&pt[2 * f..], &mut ct).expect("finish");
    let (back, report) = python_decrypt(&ct, kms_args(&arn, &moto)).await;
    assert!(back == pt);
    assert_report(&report, FRAME);
}

#[tokio::test]
async fn kms_errors_carry_the_service_error_code_and_message_only() {
    let moto = MotoServer::start().await;
    let kms = moto.kms().await;
    let keyring = KmsKeyring::new(kms, "alias/does-not-exist");
    let err = FrameEncryptor::new(&keyring, context(), FRAME)
        .await
        .expect_err("unknown key");
    match err {
        // A key that does not exist is the deployment's problem, not the recording's.
        CryptoError::KmsConfiguration(msg) => {
            assert!(
                msg.starts_with("GenerateDataKey: NotFoundException"),
                "{msg}"
            );
        }
        other => panic!("expected a KMS error, got {other:?}"),
    }
}
