//! Example-based tests of the crypto module's wire format and error reporting, byte by byte
//! against the ESDK specification, through the public API.

use std::sync::Arc;

use gc_archive::crypto::*;

const NAMESPACE: &str = "gc-archive-test";

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new(NAMESPACE, "key-1", [7u8; 32]).expect("valid keyring")
}

fn arc_keyring() -> Arc<dyn Keyring> {
    Arc::new(keyring())
}

fn ctx() -> EncryptionContext {
    EncryptionContext::new()
        .with("org", "acme")
        .with("conversation", "c-123")
}

async fn message(plaintext: &[u8], frame_len: u32) -> (Vec<u8>, usize) {
    let enc = FrameEncryptor::new(&keyring(), ctx(), frame_len)
        .await
        .expect("encryptor");
    let header_len = enc.header().len();
    let mut out = enc.header().to_vec();
    enc.finish(plaintext, &mut out).expect("finish");
    (out, header_len)
}

async fn decrypt(ct: &[u8]) -> Result<(Vec<u8>, DecryptedInfo), CryptoError> {
    decrypt_bytes(arc_keyring(), DecryptOptions::default(), ct).await
}

#[test]
fn context_serializes_pairs_sorted_by_key_with_u16_lengths() {
    let c = EncryptionContext::new().with("b", "22").with("a", "1");
    let expected = [
        0, 2, // two pairs
        0, 1, b'a', 0, 1, b'1', //
        0, 1, b'b', 0, 2, b'2', b'2',
    ];
    assert_eq!(c.serialize().expect("serializes"), expected);
}

#[test]
fn empty_context_serializes_to_no_bytes() {
    assert!(EncryptionContext::new()
        .serialize()
        .expect("serializes")
        .is_empty());
}

#[test]
fn context_round_trips_through_json_as_a_plain_map() {
    let json = serde_json::to_string(&ctx()).expect("json");
    assert_eq!(json, r#"{"conversation":"c-123","org":"acme"}"#);
    let back: EncryptionContext = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, ctx());
}

#[test]
fn context_with_reserved_aws_crypto_prefix_is_refused_for_encryption() {
    let c = EncryptionContext::new().with("aws-crypto-public-key", "x");
    assert!(matches!(
        c.validate_for_encrypt(),
        Err(CryptoError::InvalidContext(_))
    ));
}

#[test]
fn oversized_context_value_is_refused() {
    let c = EncryptionContext::new().with("k", "v".repeat(70_000));
    assert!(matches!(c.serialize(), Err(CryptoError::InvalidContext(_))));
}

#[test]
fn raw_aes_keyring_refuses_the_aws_kms_namespace() {
    let err = RawAesKeyring::new("aws-kms", "k", [0u8; 32]).expect_err("must refuse");
    assert!(matches!(err, CryptoError::KeyringConfig(_)));
}

#[test]
fn debug_output_never_shows_key_material() {
    let kr = RawAesKeyring::new("ns", "name", [0xAB; 32]).expect("valid keyring");
    let shown = format!("{kr:?}");
    assert!(shown.contains("ns") && shown.contains("name"));
    assert!(!shown.to_lowercase().contains("ab, ") && !shown.contains("171"));
    assert_eq!(
        format!("{:?}", DataKey::from_bytes([1u8; 32])),
        "DataKey(***)"
    );
}

#[tokio::test]
async fn header_has_the_v2_layout_for_suite_0478() {
    let enc = FrameEncryptor::new(&keyring(), ctx(), 4096)
        .await
        .expect("encryptor");
    let h = enc.header();
    assert_eq!(h[0], 0x02, "version");
    assert_eq!(&h[1..3], &[0x04, 0x78], "suite id");
    let aad_len = u16::from_be_bytes([h[35], h[36]]) as usize;
    let ctx_bytes = ctx().serialize().expect("ctx");
    assert_eq!(aad_len, ctx_bytes.len());
    assert_eq!(&h[37..37 + aad_len], &ctx_bytes[..]);
    let edk_count_at = 37 + aad_len;
    assert_eq!(&h[edk_count_at..edk_count_at + 2], &[0, 1]);
    // Tail: content type, frame length, 32-byte commit key, 16-byte tag.
    let tail = h.len() - 16 - 32 - 4 - 1;
    assert_eq!(h[tail], 0x02, "framed content type");
    assert_eq!(&h[tail + 1..tail + 5], &4096u32.to_be_bytes());
    // The single EDK: provider id, provider info, ciphertext, each u16-length-prefixed.
    let mut at = edk_count_at + 2;
    let mut field = || {
        let n = u16::from_be_bytes([h[at], h[at + 1]]) as usize;
        let f = &h[at + 2..at + 2 + n];
        at += 2 + n;
        f
    };
    assert_eq!(field(), NAMESPACE.as_bytes());
    // Raw AES provider info: key name, tag bits 128, IV length 12, IV.
    let info = field();
    assert_eq!(&info[..5], b"key-1");
    assert_eq!(&info[5..13], &[0, 0, 0, 128, 0, 0, 0, 12]);
    assert_eq!(info.len(), 5 + 8 + 12);
    assert_eq!(field().len(), 32 + 16, "wrapped data key and its tag");
    assert_eq!(at, tail, "content type follows the EDKs directly");
}

#[tokio::test]
async fn frames_carry_sequence_numbers_and_sequence_ivs() {
    let (ct, hl) = message(&[9u8; 10], 4).await;
    // Two regular frames of 4 bytes, then a final frame of 2.
    let reg = 4 + 12 + 4 + 16;
    assert_eq!(&ct[hl..hl + 4], &1u32.to_be_bytes());
    assert_eq!(&ct[hl + 4..hl + 16], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    assert_eq!(&ct[hl + reg..hl + reg + 4], &2u32.to_be_bytes());
    let fin = hl + 2 * reg;
    assert_eq!(&ct[fin..fin + 4], &[0xFF; 4]);
    assert_eq!(&ct[fin + 4..fin + 8], &3u32.to_be_bytes());
    assert_eq!(&ct[fin + 20..fin + 24], &2u32.to_be_bytes());
    assert_eq!(ct.len(), fin + 24 + 2 + 16);
}

#[tokio::test]
async fn exact_multiple_of_frame_len_puts_the_last_frame_in_the_final_frame() {
    let (ct, hl) = message(&[1u8; 8], 4).await;
    assert_eq!(ct.len() as u64, ciphertext_len(hl, 8, 4));
    let fin = hl + (4 + 12 + 4 + 16);
    assert_eq!(&ct[fin..fin + 4], &[0xFF; 4]);
    assert_eq!(&ct[fin + 20..fin + 24], &4u32.to_be_bytes());
}

#[tokio::test]
async fn ciphertext_len_predicts_the_output_size() {
    for (n, f) in [
        (0usize, 1u32),
        (1, 1),
        (5, 1),
        (0, 4096),
        (4095, 4096),
        (4096, 4096),
        (4097, 4096),
        (100_000, 65536),
    ] {
        let (ct, hl) = message(&vec![0u8; n], f).await;
        assert_eq!(
            ct.len() as u64,
            ciphertext_len(hl, n as u64, f),
            "n={n} f={f}"
        );
    }
}

#[tokio::test]
async fn empty_plaintext_round_trips_as_a_single_empty_final_frame() {
    let (ct, hl) = message(b"", 4096).await;
    assert_eq!(ct.len(), hl + 4 + 4 + 12 + 4 + 16);
    let (pt, info) = decrypt(&ct).await.expect("decrypts");
    assert!(pt.is_empty());
    assert_eq!(info.plaintext_len, 0);
    assert_eq!(info.context, ctx());
}

#[tokio::test]
async fn zero_or_huge_frame_len_is_refused_by_the_encryptor() {
    for f in [0, MAX_FRAME_LEN + 1] {
        let err = FrameEncryptor::new(&keyring(), ctx(), f)
            .await
            .expect_err("refused");
        assert!(matches!(err, CryptoError::FrameLen(x) if x == f));
    }
}

#[tokio::test]
async fn encrypt_regular_refuses_a_partial_frame() {
    let mut enc = FrameEncryptor::new(&keyring(), ctx(), 16)
        .await
        .expect("encryptor");
    let mut out = Vec::new();
    let err = enc
        .encrypt_regular(&[0u8; 17], &mut out)
        .expect_err("refused");
    assert!(matches!(
        err,
        CryptoError::NotFrameAligned {
            len: 17,
            frame_len: 16
        }
    ));
    assert!(out.is_empty());
}

fn set(ct: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut v = ct.to_vec();
    v[at..at + bytes.len()].copy_from_slice(bytes);
    v
}

#[tokio::test]
async fn unknown_version_suite_and_content_type_are_rejected() {
    let (ct, hl) = message(b"hello", 64).await;
    assert!(matches!(
        decrypt(&set(&ct, 0, &[0x01])).await,
        Err(CryptoError::UnsupportedVersion(1))
    ));
    assert!(matches!(
        decrypt(&set(&ct, 1, &[0x05, 0x78])).await,
        Err(CryptoError::UnsupportedSuite(0x0578))
    ));
    let content_type_at = hl - 16 - 32 - 4 - 1;
    assert!(matches!(
        decrypt(&set(&ct, content_type_at, &[0x01])).await,
        Err(CryptoError::UnsupportedContentType(1))
    ));
}

#[tokio::test]
async fn zero_frame_len_in_a_header_is_rejected() {
    let (ct, hl) = message(b"hello", 64).await;
    let frame_len_at = hl - 16 - 32 - 4;
    assert!(matches!(
        decrypt(&set(&ct, frame_len_at, &[0, 0, 0, 0])).await,
        Err(CryptoError::FrameLen(0))
    ));
}

#[tokio::test]
async fn header_with_zero_or_too_many_edks_is_rejected_before_any_allocation() {
    let (ct, _) = message(b"hello", 64).await;
    let aad_len = u16::from_be_bytes([ct[35], ct[36]]) as usize;
    let count_at = 37 + aad_len;
    assert!(matches!(
        decrypt(&set(&ct, count_at, &[0, 0])).await,
        Err(CryptoError::Malformed(_))
    ));
    assert!(matches!(
        decrypt(&set(&ct, count_at, &[0xFF, 0xFF])).await,
        Err(CryptoError::Malformed(_))
    ));
}

#[tokio::test]
async fn header_longer_than_the_limit_is_rejected_while_streaming() {
    // 256 EDKs whose ciphertexts each claim 65535 bytes: ~16 MiB of declared header.
    let mut h = vec![0x02, 0x04, 0x78];
    h.extend_from_slice(&[0u8; 32]);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&256u16.to_be_bytes());
    let mut dec = StreamDecryptor::new(arc_keyring(), DecryptOptions::default());
    dec.push(&h).await.expect("still incomplete");
    let mut edk = vec![0, 1, b'x', 0, 0, 0xFF, 0xFF];
    edk.extend_from_slice(&[0u8; 65535]);
    let mut result = Ok(bytes::Bytes::new());
    for _ in 0..20 {
        result = dec.push(&edk).await;
        if result.is_err() {
            break;
        }
    }
    assert!(matches!(result, Err(CryptoError::Malformed(m)) if m.contains("header longer")));
}

#[tokio::test]
async fn tampered_commitment_key_is_reported_as_bad_commitment() {
    let (ct, hl) = message(b"hello", 64).await;
    let commit_at = hl - 16 - 32;
    let mut bad = ct.clone();
    bad[commit_at] ^= 1;
    assert!(matches!(
        decrypt(&bad).await,
        Err(CryptoError::BadCommitment)
    ));
}

#[tokio::test]
async fn tampered_header_field_is_reported_as_header_auth_failure() {
    let (ct, hl) = message(b"hello", 64).await;
    let frame_len_at = hl - 16 - 32 - 4;
    let mut bad = ct.clone();
    bad[frame_len_at + 3] ^= 1;
    assert!(matches!(
        decrypt(&bad).await,
        Err(CryptoError::HeaderAuthFailed)
    ));
    let mut bad = ct.clone();
    bad[hl - 1] ^= 1;
    assert!(matches!(
        decrypt(&bad).await,
        Err(CryptoError::HeaderAuthFailed)
    ));
}

#[tokio::test]
async fn tampered_frame_is_reported_with_its_sequence_number() {
    let (ct, hl) = message(&[3u8; 100], 64).await;
    let mut bad = ct.clone();
    bad[hl + 4 + 12 + 5] ^= 1;
    assert!(matches!(
        decrypt(&bad).await,
        Err(CryptoError::FrameAuthFailed { sequence: 1 })
    ));
    let mut bad = ct.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        decrypt(&bad).await,
        Err(CryptoError::FrameAuthFailed { sequence: 2 })
    ));
}

#[tokio::test]
async fn final_frame_longer_than_frame_len_is_rejected() {
    let (ct, hl) = message(&[3u8; 10], 64).await;
    let len_at = hl + 4 + 4 + 12;
    assert!(matches!(
        decrypt(&set(&ct, len_at, &65u32.to_be_bytes())).await,
        Err(CryptoError::FinalFrameTooLong {
            content_len: 65,
            frame_len: 64
        })
    ));
}

#[tokio::test]
async fn frame_whose_iv_is_not_its_sequence_number_is_rejected() {
    let (ct, hl) = message(&[3u8; 100], 64).await;
    assert!(matches!(
        decrypt(&set(&ct, hl + 4, &[1])).await,
        Err(CryptoError::Malformed(_))
    ));
}

#[tokio::test]
async fn missing_final_frame_is_truncated_and_extra_bytes_are_trailing() {
    let (ct, hl) = message(&[3u8; 100], 64).await;
    let regular_end = hl + 4 + 12 + 64 + 16;
    assert!(matches!(
        decrypt(&ct[..regular_end]).await,
        Err(CryptoError::Truncated)
    ));
    assert!(matches!(
        decrypt(&ct[..hl - 1]).await,
        Err(CryptoError::Truncated)
    ));
    assert!(matches!(decrypt(b"").await, Err(CryptoError::Truncated)));
    let mut extra = ct.clone();
    extra.push(0);
    assert!(matches!(
        decrypt(&extra).await,
        Err(CryptoError::TrailingBytes)
    ));
    // Trailing bytes arriving in a later push are caught too.
    let mut dec = StreamDecryptor::new(arc_keyring(), DecryptOptions::default());
    dec.push(&ct).await.expect("whole message");
    assert!(dec.is_done());
    assert!(matches!(
        dec.push(&[0]).await,
        Err(CryptoError::TrailingBytes)
    ));
}

#[tokio::test]
async fn decryptor_refuses_further_input_after_an_error() {
    let (ct, _) = message(&[3u8; 10], 64).await;
    let mut dec = StreamDecryptor::new(arc_keyring(), DecryptOptions::default());
    assert!(dec.push(&set(&ct, 0, &[9])).await.is_err());
    assert!(dec.push(&ct).await.is_err());
    assert!(dec.finish().is_err());
}

#[tokio::test]
async fn required_context_must_match_exactly() {
    let (ct, _) = message(b"x", 64).await;
    let opts = |k: &str, v: &str| DecryptOptions {
        required_context: EncryptionContext::new().with(k, v),
    };
    let ok = decrypt_bytes(arc_keyring(), opts("org", "acme"), &ct).await;
    assert!(ok.is_ok());
    match decrypt_bytes(arc_keyring(), opts("org", "other"), &ct).await {
        Err(CryptoError::ContextMismatch {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(
                (key.as_str(), expected.as_str(), actual.as_deref()),
                ("org", "other", Some("acme"))
            );
        }
        other => panic!("expected a context mismatch, got {other:?}"),
    }
    assert!(matches!(
        decrypt_bytes(arc_keyring(), opts("tenant", "t"), &ct).await,
        Err(CryptoError::ContextMismatch { actual: None, .. })
    ));
}

#[tokio::test]
async fn other_key_or_namespace_cannot_decrypt() {
    let (ct, _) = message(b"secret", 64).await;
    for kr in [
        RawAesKeyring::new(NAMESPACE, "key-1", [8u8; 32]),
        RawAesKeyring::new("other-ns", "key-1", [7u8; 32]),
        RawAesKeyring::new(NAMESPACE, "key-2", [7u8; 32]),
    ] {
        let kr: Arc<dyn Keyring> = Arc::new(kr.expect("keyring"));
        match decrypt_bytes(kr, DecryptOptions::default(), &ct).await {
            Err(CryptoError::NoDecryptableKey { providers }) => {
                assert_eq!(providers, vec![NAMESPACE])
            }
            other => panic!("expected NoDecryptableKey, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn checkpoint_survives_json_and_refuses_tampering() {
    let mut enc = FrameEncryptor::new(&keyring(), ctx(), 8)
        .await
        .expect("encryptor");
    let mut out = Vec::new();
    enc.encrypt_regular(&[1u8; 16], &mut out).expect("frames");
    let cp = enc.checkpoint();
    assert_eq!(cp.next_sequence, 3);
    let json = serde_json::to_string(&cp).expect("json");
    assert!(
        !json.contains("key\":"),
        "checkpoint must not carry a key: {json}"
    );
    let back: EncryptorCheckpoint = serde_json::from_str(&json).expect("parse");
    let resumed = FrameEncryptor::resume(&keyring(), &back)
        .await
        .expect("resume");
    assert_eq!(resumed.plaintext_consumed(), 16);
    assert_eq!(resumed.header(), enc.header());

    let wrong = RawAesKeyring::new(NAMESPACE, "key-1", [9u8; 32]).expect("valid keyring");
    assert!(matches!(
        FrameEncryptor::resume(&wrong, &cp).await,
        Err(CryptoError::NoDecryptableKey { .. })
    ));
    let mut bad = cp.clone();
    bad.frame_len = 9;
    assert!(matches!(
        FrameEncryptor::resume(&keyring(), &bad).await,
        Err(CryptoError::Checkpoint(_))
    ));
    let mut bad = cp.clone();
    bad.next_sequence = 0;
    assert!(matches!(
        FrameEncryptor::resume(&keyring(), &bad).await,
        Err(CryptoError::Checkpoint(_))
    ));
    let mut bad = cp.clone();
    bad.header = "not base64!".into();
    assert!(matches!(
        FrameEncryptor::resume(&keyring(), &bad).await,
        Err(CryptoError::Checkpoint(_))
    ));
}

#[tokio::test]
async fn stream_encryptor_output_matches_the_planned_size_and_decrypts() {
    let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let enc = FrameEncryptor::new(&keyring(), ctx(), 1000)
        .await
        .expect("encryptor");
    let hl = enc.header().len();
    let mut se = StreamEncryptor::new(enc);
    let mut ct = Vec::new();
    for chunk in data.chunks(333) {
        se.push(chunk, &mut ct).expect("push");
    }
    se.finish(&mut ct).expect("finish");
    assert_eq!(ct.len() as u64, ciphertext_len(hl, 10_000, 1000));
    let (pt, _) = decrypt(&ct).await.expect("decrypts");
    assert_eq!(pt, data);
}

#[tokio::test]
async fn encrypt_stream_passes_input_errors_through() {
    let enc = FrameEncryptor::new(&keyring(), ctx(), 64)
        .await
        .expect("encryptor");
    let input = futures::stream::iter(vec![
        Ok(bytes::Bytes::from_static(b"abc")),
        Err(std::io::Error::other("disk on fire")),
    ]);
    let items: Vec<_> = futures::StreamExt::collect(encrypt_stream(enc, input)).await;
    assert!(items[0].is_ok());
    assert!(
        matches!(items.last(), Some(Err(CryptoError::Source(e))) if e.to_string() == "disk on fire")
    );
}

#[tokio::test]
async fn writer_helpers_round_trip() {
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
    let mut ct = Vec::new();
    let n = encrypt_to_writer(&keyring(), ctx(), 4096, &data[..], &mut ct)
        .await
        .expect("encrypt");
    assert_eq!(n, ct.len() as u64);
    let mut pt = Vec::new();
    let info = decrypt_to_writer(arc_keyring(), DecryptOptions::default(), &ct[..], &mut pt)
        .await
        .expect("decrypt");
    assert_eq!(pt, data);
    assert_eq!(info.plaintext_len, 200_000);
    assert_eq!(info.frame_len, 4096);
    assert_eq!(info.message_id.len(), 64);
}

#[tokio::test]
async fn header_info_names_the_key_providers_without_key_material() {
    let mut enc = FrameEncryptor::new(&keyring(), ctx(), 512)
        .await
        .expect("encryptor");
    let mut out = Vec::new();
    enc.encrypt_regular(&[0u8; 1024], &mut out).expect("frames");
    let info = parse_header_info(&enc.checkpoint()).expect("info");
    assert_eq!(info.key_providers, vec![format!("{NAMESPACE}/key-1")]);
    assert_eq!(info.frame_len, 512);
    assert_eq!(info.message_id_hex, enc.message_id_hex());
    assert_eq!(info.context, ctx());
    assert_eq!(info.header_len, enc.header().len());
    assert_eq!(parse_header_bytes(enc.header()).expect("bytes"), info);
    assert!(matches!(
        parse_header_bytes(&enc.header()[..10]),
        Err(CryptoError::Truncated)
    ));
}
