//! Property tests of the crypto module through its public API: round trips for arbitrary sizes,
//! frame lengths, split/resume points and chunkings, and rejection of every kind of tampering.

use std::sync::Arc;

use gc_archive::crypto::{
    ciphertext_len, decrypt_bytes, CryptoError, DecryptOptions, EncryptionContext,
    EncryptorCheckpoint, FrameEncryptor, Keyring, RawAesKeyring, StreamDecryptor, StreamEncryptor,
};
use proptest::prelude::*;
use proptest::sample::Index;

fn keyring() -> RawAesKeyring {
    RawAesKeyring::new("gc-archive-test", "prop-key", [0x42; 32]).expect("keyring")
}

fn arc_keyring() -> Arc<dyn Keyring> {
    Arc::new(keyring())
}

fn ctx() -> EncryptionContext {
    EncryptionContext::new()
        .with("org", "o-1")
        .with("conversation", "c-9")
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn frame_lens() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..=64, 65u32..=4096, Just(65536u32)]
}

fn plaintext(max: usize) -> impl Strategy<Value = Vec<u8>> {
    (0..=max, any::<u8>())
        .prop_map(|(n, seed)| (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect())
}

/// Decrypts by pushing `ct` split at the given (sorted, deduplicated) cut points.
async fn decrypt_chunked(ct: &[u8], cuts: &[usize]) -> Result<Vec<u8>, CryptoError> {
    let mut dec = StreamDecryptor::new(arc_keyring(), DecryptOptions::default());
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain(std::iter::once(&ct.len())) {
        let cut = cut.clamp(from, ct.len());
        out.extend_from_slice(&dec.push(&ct[from..cut]).await?);
        from = cut;
    }
    let info = dec.finish()?;
    assert_eq!(info.plaintext_len, out.len() as u64);
    assert_eq!(info.context, ctx());
    Ok(out)
}

async fn encrypt_whole(pt: &[u8], frame_len: u32) -> (Vec<u8>, usize) {
    let enc = FrameEncryptor::new(&keyring(), ctx(), frame_len)
        .await
        .expect("encryptor");
    let hl = enc.header().len();
    let mut out = enc.header().to_vec();
    enc.finish(pt, &mut out).expect("finish");
    (out, hl)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn checkpoint_and_resume_at_any_frame_boundary_gives_byte_identical_output(
        pt in plaintext(300 << 10),
        frame_len in frame_lens(),
        a in 0.0f64..=1.0,
        b in 0.0f64..=1.0,
    ) {
        block_on(async {
            let f = frame_len as usize;
            let enc = FrameEncryptor::new(&keyring(), ctx(), frame_len).await.expect("encryptor");
            let start: EncryptorCheckpoint = enc.checkpoint();
            let hl = enc.header().len();
            let mut whole = enc.header().to_vec();
            enc.finish(&pt, &mut whole).expect("finish");
            prop_assert_eq!(whole.len() as u64, ciphertext_len(hl, pt.len() as u64, frame_len));

            // Same message written in three sessions, each resumed from a JSON checkpoint.
            let regular_frames = if pt.is_empty() { 0 } else { (pt.len() - 1) / f };
            let (mut k1, mut k2) = ((a * regular_frames as f64) as usize, (b * regular_frames as f64) as usize);
            if k1 > k2 { std::mem::swap(&mut k1, &mut k2); }
            let json = serde_json::to_string(&start).expect("json");
            let mut e1 = FrameEncryptor::resume(&keyring(), &serde_json::from_str(&json).expect("cp"))
                .await.expect("resume 1");
            let mut pieces = e1.header().to_vec();
            e1.encrypt_regular(&pt[..k1 * f], &mut pieces).expect("part 1");
            let json = serde_json::to_string(&e1.checkpoint()).expect("json");
            drop(e1);
            let mut e2 = FrameEncryptor::resume(&keyring(), &serde_json::from_str(&json).expect("cp"))
                .await.expect("resume 2");
            prop_assert_eq!(e2.plaintext_consumed(), (k1 * f) as u64);
            e2.encrypt_regular(&pt[k1 * f..k2 * f], &mut pieces).expect("part 2");
            let cp = e2.checkpoint();
            drop(e2);
            let e3 = FrameEncryptor::resume(&keyring(), &cp).await.expect("resume 3");
            e3.finish(&pt[k2 * f..], &mut pieces).expect("finish");
            prop_assert!(pieces == whole, "resumed output differs from the uninterrupted run");

            let (dec, info) = decrypt_bytes(arc_keyring(), DecryptOptions::default(), &whole)
                .await.expect("decrypts");
            prop_assert!(dec == pt);
            prop_assert_eq!(info.frame_len, frame_len);
            Ok(())
        })?;
    }

    #[test]
    fn stream_encryptor_with_any_chunking_decrypts_with_any_chunking(
        pt in plaintext(300 << 10),
        frame_len in frame_lens(),
        enc_cuts in prop::collection::vec(any::<Index>(), 0..12),
        dec_cuts in prop::collection::vec(any::<Index>(), 0..12),
    ) {
        block_on(async {
            let enc = FrameEncryptor::new(&keyring(), ctx(), frame_len).await.expect("encryptor");
            let hl = enc.header().len();
            let mut se = StreamEncryptor::new(enc);
            let mut ct = Vec::new();
            let mut cuts: Vec<usize> = enc_cuts.iter().map(|i| i.index(pt.len() + 1)).collect();
            cuts.sort_unstable();
            let mut from = 0;
            for cut in cuts.into_iter().chain(std::iter::once(pt.len())) {
                se.push(&pt[from..cut], &mut ct).expect("push");
                from = cut;
            }
            se.finish(&mut ct).expect("finish");
            // Holding back one frame means the layout equals the one-shot layout.
            prop_assert_eq!(ct.len() as u64, ciphertext_len(hl, pt.len() as u64, frame_len));
            let mut cuts: Vec<usize> = dec_cuts.iter().map(|i| i.index(ct.len() + 1)).collect();
            cuts.sort_unstable();
            let dec = decrypt_chunked(&ct, &cuts).await.expect("decrypts");
            prop_assert!(dec == pt);
            Ok(())
        })?;
    }

    #[test]
    fn flipping_any_bit_anywhere_is_rejected(
        pt in plaintext(20 << 10),
        frame_len in frame_lens(),
        at in any::<Index>(),
        bit in 0u8..8,
    ) {
        block_on(async {
            let (mut ct, _) = encrypt_whole(&pt, frame_len).await;
            let i = at.index(ct.len());
            ct[i] ^= 1 << bit;
            let res = decrypt_bytes(arc_keyring(), DecryptOptions::default(), &ct).await;
            prop_assert!(res.is_err(), "flip at {} of {} accepted", i, ct.len());
            Ok(())
        })?;
    }

    #[test]
    fn truncating_anywhere_is_rejected(
        pt in plaintext(20 << 10),
        frame_len in frame_lens(),
        at in any::<Index>(),
    ) {
        block_on(async {
            let (ct, _) = encrypt_whole(&pt, frame_len).await;
            let cut = at.index(ct.len());
            let res = decrypt_bytes(arc_keyring(), DecryptOptions::default(), &ct[..cut]).await;
            prop_assert!(matches!(res, Err(CryptoError::Truncated)), "cut at {}: {:?}", cut, res.err());
            Ok(())
        })?;
    }

    #[test]
    fn dropping_duplicating_or_swapping_frames_is_rejected(
        frames in 2usize..12,
        tail in 1usize..=16,
        i in any::<Index>(),
        j in any::<Index>(),
    ) {
        block_on(async {
            let frame_len = 16u32;
            let pt = vec![0x5Au8; (frames - 1) * 16 + tail];
            let (ct, hl) = encrypt_whole(&pt, frame_len).await;
            let reg = 4 + 12 + 16 + 16;
            let mut parts: Vec<&[u8]> = (0..frames - 1).map(|k| &ct[hl + k * reg..hl + (k + 1) * reg]).collect();
            parts.push(&ct[hl + (frames - 1) * reg..]);
            let (i, j) = (i.index(frames), j.index(frames));
            let assemble = |ps: &[&[u8]]| -> Vec<u8> {
                let mut v = ct[..hl].to_vec();
                for p in ps { v.extend_from_slice(p); }
                v
            };
            let decrypt = |m: Vec<u8>| async move {
                decrypt_bytes(arc_keyring(), DecryptOptions::default(), &m).await
            };
            let mut dropped = parts.clone();
            dropped.remove(i);
            prop_assert!(decrypt(assemble(&dropped)).await.is_err(), "dropping frame {} accepted", i);
            let mut duplicated = parts.clone();
            duplicated.insert(i, parts[i]);
            prop_assert!(decrypt(assemble(&duplicated)).await.is_err(), "duplicating frame {} accepted", i);
            if i != j {
                let mut swapped = parts.clone();
                swapped.swap(i, j);
                prop_assert!(decrypt(assemble(&swapped)).await.is_err(), "swapping {} and {} accepted", i, j);
            }
            Ok(())
        })?;
    }
}

#[test]
fn frames_from_another_message_under_the_same_key_are_rejected() {
    block_on(async {
        let pt = vec![1u8; 100];
        let (a, hla) = encrypt_whole(&pt, 32).await;
        let (b, hlb) = encrypt_whole(&pt, 32).await;
        let mut spliced = a[..hla].to_vec();
        spliced.extend_from_slice(&b[hlb..]);
        let res = decrypt_bytes(arc_keyring(), DecryptOptions::default(), &spliced).await;
        assert!(matches!(
            res,
            Err(CryptoError::FrameAuthFailed { sequence: 1 })
        ));
    });
}
