//! The `gc-archive` binary as a user runs it: encrypt and decrypt files with a raw key, and the
//! clear errors (and absent output files) for a wrong key, a tampered object and a wrong context.

use std::path::Path;
use std::process::Command;

fn gc_archive(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gc-archive"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run gc-archive")
}

fn write_key(dir: &Path, name: &str, byte: u8) -> String {
    let path = dir.join(name);
    std::fs::write(&path, hex::encode([byte; 32])).unwrap();
    path.display().to_string()
}

#[test]
fn encrypt_then_decrypt_round_trips_and_failures_leave_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let key = write_key(dir.path(), "key.hex", 7);
    let other = write_key(dir.path(), "other.hex", 8);
    let plain = dir.path().join("call.wav");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&plain, &data).unwrap();
    let enc = dir.path().join("call.wav.enc");
    let p = |x: &Path| x.display().to_string();

    let out = gc_archive(&[
        "encrypt",
        "--in",
        &p(&plain),
        "--out",
        &p(&enc),
        "--raw-key-file",
        &key,
        "--context",
        "recordingId=r1",
        "--frame-len",
        "4096",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dec = dir.path().join("back.wav");
    let out = gc_archive(&[
        "decrypt",
        "--in",
        &p(&enc),
        "--out",
        &p(&dec),
        "--raw-key-file",
        &key,
        "--context",
        "recordingId=r1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dec).unwrap(), data);

    // Wrong key: clear error, no file.
    let bad = dir.path().join("bad1.wav");
    let out = gc_archive(&[
        "decrypt",
        "--in",
        &p(&enc),
        "--out",
        &p(&bad),
        "--raw-key-file",
        &other,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("key"), "{err}");
    assert!(!bad.exists());

    // Wrong context: the object belongs to another recording.
    let out = gc_archive(&[
        "decrypt",
        "--in",
        &p(&enc),
        "--out",
        &p(&bad),
        "--raw-key-file",
        &key,
        "--context",
        "recordingId=r2",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("recordingId"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!bad.exists());

    // Tampered: one flipped byte in the last frame; the plaintext before it must not appear.
    let mut bytes = std::fs::read(&enc).unwrap();
    let at = bytes.len() - 20;
    bytes[at] ^= 1;
    let tampered = dir.path().join("tampered.enc");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = gc_archive(&[
        "decrypt",
        "--in",
        &p(&tampered),
        "--out",
        &p(&bad),
        "--raw-key-file",
        &key,
    ]);
    assert!(!out.status.success());
    assert!(!bad.exists());

    // Truncated: ends before the final frame.
    std::fs::write(&tampered, &bytes[..bytes.len() / 2]).unwrap();
    let out = gc_archive(&[
        "decrypt",
        "--in",
        &p(&tampered),
        "--out",
        &p(&bad),
        "--raw-key-file",
        &key,
    ]);
    assert!(!out.status.success());
    assert!(!bad.exists());
    // No temporary files left behind either.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 6, "{leftovers:?}");
}

#[test]
fn a_missing_key_choice_is_a_usage_error() {
    let out = gc_archive(&["decrypt", "--in", "x", "--out", "-"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kms-key"));
}

#[test]
fn archive_without_configuration_names_every_missing_setting() {
    let out = Command::new(env!("CARGO_BIN_EXE_gc-archive"))
        .args(["archive", "--conversation", "c1"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "GENESYS_REGION",
        "GENESYS_ORG_ID",
        "ARCHIVE_BUCKET",
        "ARCHIVE_KMS_KEY_ID",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}
