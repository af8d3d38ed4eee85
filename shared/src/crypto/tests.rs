//! Tests of internals the public API does not expose: incremental header parsing, the body AAD
//! and IV layout, and the key derivation cross-checked against an independent HKDF.

use hmac::{Hmac, Mac};
use sha2::Sha512;

use super::format::{derive_keys, frame_iv, parse_header, BodyAad, Parsed};
use super::*;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("ns", "name", [3u8; 32]).expect("keyring")
}

#[tokio::test]
async fn incomplete_header_asks_for_exactly_the_bytes_it_needs_next() {
    let ctx = EncryptionContext::new().with("k", "v");
    let enc = FrameEncryptor::new(&keyring(), ctx, 64)
        .await
        .expect("encryptor");
    let h = enc.header();
    let mut len = 0;
    let mut parses = 0;
    // Feeding exactly what each Incomplete asks for must reach the full header, never overshoot,
    // and take a number of steps proportional to the number of fields, not bytes.
    loop {
        parses += 1;
        match parse_header(&h[..len]).expect("valid prefix") {
            Parsed::Incomplete(need) => {
                assert!(need > len && need <= h.len(), "need {need} at {len}");
                len = need;
            }
            Parsed::Complete(parsed) => {
                assert_eq!(parsed.total_len(), h.len());
                assert_eq!(len, h.len());
                break;
            }
        }
    }
    assert!(parses < 25, "{parses} parses for a one-EDK header");
}

#[test]
fn body_aad_is_message_id_label_sequence_and_length() {
    let id = [0xAA; 32];
    let aad = BodyAad::new(&id, false, 7, 4096);
    let mut expected = id.to_vec();
    expected.extend_from_slice(b"AWSKMSEncryptionClient Frame");
    expected.extend_from_slice(&7u32.to_be_bytes());
    expected.extend_from_slice(&4096u64.to_be_bytes());
    assert_eq!(aad.as_slice(), &expected[..]);
    let aad = BodyAad::new(&id, true, 9, 0);
    let mut expected = id.to_vec();
    expected.extend_from_slice(b"AWSKMSEncryptionClient Final Frame");
    expected.extend_from_slice(&9u32.to_be_bytes());
    expected.extend_from_slice(&0u64.to_be_bytes());
    assert_eq!(aad.as_slice(), &expected[..]);
    assert_eq!(frame_iv(0x0102_0304), [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
}

/// RFC 5869 HKDF with SHA-512 written out with HMAC, independent of aws-lc's implementation.
fn reference_hkdf(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let mut extract = Hmac::<Sha512>::new_from_slice(salt).expect("any key length");
    extract.update(ikm);
    let prk = extract.finalize().into_bytes();
    let mut expand = Hmac::<Sha512>::new_from_slice(&prk).expect("any key length");
    expand.update(info);
    expand.update(&[1]);
    let t1 = expand.finalize().into_bytes();
    let mut out = [0u8; 32];
    out.copy_from_slice(&t1[..32]);
    out
}

#[test]
fn derived_keys_follow_the_spec_salt_and_info_strings() {
    let data_key = DataKey::from_bytes([0x11; 32]);
    let message_id = [0x22; 32];
    let keys = derive_keys(&data_key, &message_id).expect("derive");
    let expected_commit = reference_hkdf(&message_id, &[0x11; 32], b"COMMITKEY");
    assert_eq!(*keys.commit_key, expected_commit);

    // The encryption key: info is the suite id followed by "DERIVEKEY". Check it by sealing with
    // the independently derived key and opening with ours.
    let mut info = ALGORITHM_SUITE_ID.to_be_bytes().to_vec();
    info.extend_from_slice(b"DERIVEKEY");
    let reference = reference_hkdf(&message_id, &[0x11; 32], &info);
    let key = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &reference).expect("key"),
    );
    let nonce = || aws_lc_rs::aead::Nonce::assume_unique_for_key([0u8; 12]);
    let mut data = b"probe".to_vec();
    let tag = key
        .seal_in_place_separate_tag(nonce(), aws_lc_rs::aead::Aad::empty(), &mut data)
        .expect("seal");
    let mut out = [0u8; 5];
    keys.aead
        .open_separate_gather(
            nonce(),
            aws_lc_rs::aead::Aad::empty(),
            &data,
            tag.as_ref(),
            &mut out,
        )
        .expect("our derived key equals the reference key");
    assert_eq!(&out, b"probe");
}
