//! Signed media URLs: codecs, ranges, expiry, body faults and synthesized WAVs.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use genesys_sim::*;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

fn slice_of(sim: &Simulator, rid: &str, start: u64, len: u64) -> Vec<u8> {
    let mut r = sim.media_reader(rid).unwrap();
    std::io::copy(&mut (&mut r).take(start), &mut std::io::sink()).unwrap();
    let mut out = Vec::new();
    r.take(len).read_to_end(&mut out).unwrap();
    out
}

#[tokio::test]
async fn full_get_per_codec_accurate_content_type_and_no_auth_needed() {
    let sim = sim_behaving(Behaviour {
        media_content_type: MediaContentType::Accurate,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    for codec in Codec::ALL {
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(codec)));
        let url = media_url(&sim, &c, &tok, &cid, &rid).await;
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{codec:?}");
        assert_eq!(r.headers()["content-type"], codec.content_type());
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        let want = sim.rendition_bytes(&rid, codec.as_format_id()).unwrap();
        assert_eq!(
            r.headers()["content-length"],
            want.len().to_string().as_str()
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(&body[..], &want[..]);
        if !matches!(codec, Codec::OggOpus | Codec::OggVorbis) {
            // Non-Ogg renditions in the recording's own codec are the original bytes.
            assert_eq!(&body[..], &sim.media_bytes(&rid).unwrap()[..]);
            assert_eq!(&body[..], real_sample(codec));
        }
        // The original bytes (batch resultUrl) carry the same type.
        let r = c
            .get(original_url(&sim, &c, &tok, &cid, &rid).await)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], codec.content_type());
        assert_eq!(&r.bytes().await.unwrap()[..], real_sample(codec));
    }
    let expected = [
        ("audio/wav", Codec::WavPcm),
        ("audio/wav", Codec::WavUlaw),
        ("audio/ogg", Codec::OggOpus),
        ("audio/ogg", Codec::OggVorbis),
        ("audio/mpeg", Codec::Mp3),
        ("audio/webm", Codec::Webm),
    ];
    for (ct, c) in expected {
        assert_eq!(c.content_type(), ct);
    }
    // Declared (lying) codec drives the served Content-Type, bytes stay the real ones.
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::WavPcm));
    spec.declared_codec = Some(Codec::Mp3);
    let (cid, rid) = conv_with(&sim, spec);
    for url in [
        media_url(&sim, &c, &tok, &cid, &rid).await,
        original_url(&sim, &c, &tok, &cid, &rid).await,
    ] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.headers()["content-type"], "audio/mpeg");
        assert!(r.bytes().await.unwrap().starts_with(b"RIFF"));
    }
}

#[tokio::test]
async fn range_requests_206_416_and_ignore_range() {
    let sim = sim_behaving(Behaviour {
        range: RangeSupport::Honoured,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(
        &sim,
        RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: 1_000_000,
        }),
    );
    let total = sim.media_len(&rid).unwrap();
    assert_eq!(total, 1_000_000);
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    for (hdr, start, end) in [
        ("bytes=0-99", 0u64, 99u64),
        ("bytes=65530-131080", 65_530, 131_080),
        ("bytes=999000-", 999_000, 999_999),
        ("bytes=-500", 999_500, 999_999),
        ("bytes=999990-5000000", 999_990, 999_999),
    ] {
        let r = c.get(&url).header("Range", hdr).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{hdr}");
        assert_eq!(
            r.headers()["content-range"],
            format!("bytes {start}-{end}/{total}").as_str()
        );
        assert_eq!(
            r.headers()["content-length"],
            (end - start + 1).to_string().as_str()
        );
        let body = r.bytes().await.unwrap();
        assert_eq!(
            body.to_vec(),
            slice_of(&sim, &rid, start, end - start + 1),
            "{hdr}"
        );
    }
    let r = c
        .get(&url)
        .header("Range", "bytes=1000000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["content-range"], "bytes */1000000");

    sim.set_ignore_range(true);
    let r = c
        .get(&url)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("content-range").is_none());
    assert_eq!(r.bytes().await.unwrap().len() as u64, total);
    sim.set_ignore_range(false);

    let ignoring = sim_with(SimConfig::default()).await; // RangeSupport::Ignored is the default
    let tok2 = token(&ignoring, &c).await;
    let (cid, rid) = conv_with(&ignoring, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    let url = media_url(&ignoring, &c, &tok2, &cid, &rid).await;
    let r = c
        .get(&url)
        .header("Range", "bytes=10-20")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], real_sample(Codec::Mp3));
}

async fn assert_expired(c: &reqwest::Client, url: &str) {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body = r.text().await.unwrap();
    assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    assert!(
        body.contains("<Message>Request has expired</Message>"),
        "{body}"
    );
}

#[tokio::test]
async fn expired_invalidated_and_tampered_urls_are_403() {
    let sim = sim_with(SimConfig {
        media_url_ttl_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_expired(&c, &url).await;

    let sim = sim_with(SimConfig::default()).await;
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    sim.expire_media_urls();
    assert_expired(&c, &url).await;
    let fresh = media_url(&sim, &c, &tok, &cid, &rid).await;
    assert_ne!(fresh, url);
    assert_eq!(c.get(&fresh).send().await.unwrap().status(), StatusCode::OK);

    let mut tampered = fresh.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    assert_eq!(
        c.get(&tampered).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let no_sig = fresh.split('?').next().unwrap();
    assert_eq!(
        c.get(no_sig).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Extending `expires` breaks the signature.
    let bumped = fresh.replace("expires=", "expires=9");
    assert_eq!(
        c.get(&bumped).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}

fn media_rule(rid: &str, fault: Fault) -> FaultRule {
    FaultRule::once(
        FaultTarget::Media {
            recording_id: Some(rid.to_string()),
        },
        fault,
    )
}

/// Read the body chunk by chunk; returns (bytes received, whether it ended with an error).
async fn drain(mut r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(b)) => got.extend_from_slice(&b),
            Ok(None) => return (got, false),
            Err(_) => return (got, true),
        }
    }
}

#[tokio::test]
async fn media_faults_are_observable() {
    let sim = sim_behaving(Behaviour {
        range: RangeSupport::Honoured,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(
        &sim,
        RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: 2_000_000,
        }),
    );
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    let full = sim.media_bytes(&rid).unwrap();

    // Status + Retry-After.
    sim.inject(media_rule(
        &rid,
        Fault::Status {
            status: 503,
            retry_after_secs: Some(3),
        },
    ));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()["retry-after"], "3");

    // Reset mid body.
    sim.inject(media_rule(
        &rid,
        Fault::ResetMidBody {
            after_bytes: 300_000,
        },
    ));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (got, err) = drain(r).await;
    assert!(err, "reset must surface as a body error");
    assert!(got.len() <= 300_000);
    assert_eq!(&got[..], &full[..got.len()]);

    // Truncated body: full Content-Length declared, fewer bytes delivered.
    sim.inject(media_rule(
        &rid,
        Fault::TruncatedBody {
            after_bytes: 123_457,
        },
    ));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "2000000");
    let (got, err) = drain(r).await;
    assert!(err, "short body must surface as an error");
    assert!(got.len() <= 123_457);
    assert_eq!(&got[..], &full[..got.len()]);

    // Wrong Content-Range on a range request.
    sim.inject(media_rule(&rid, Fault::WrongContentRange));
    let r = c
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let cr = r.headers()["content-range"].to_str().unwrap().to_string();
    assert_eq!(
        cr,
        format!(
            "bytes {}-{}/2000000",
            1000 + WRONG_RANGE_SHIFT,
            1999 + WRONG_RANGE_SHIFT
        )
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), full[1000..2000].to_vec());
    // ... and on a plain GET: unexpected 206.
    sim.inject(media_rule(&rid, Fault::WrongContentRange));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.headers()["content-range"]
        .to_str()
        .unwrap()
        .starts_with(&format!("bytes {WRONG_RANGE_SHIFT}-")));

    // Wrong content type.
    sim.inject(media_rule(
        &rid,
        Fault::WrongContentType("text/html; charset=utf-8".into()),
    ));
    let r = c
        .get(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");

    // Slow body: 40 KB at 100 KB/s takes ≥ ~0.4 s.
    sim.inject(media_rule(
        &rid,
        Fault::SlowBody {
            bytes_per_sec: 100_000,
        },
    ));
    let t = Instant::now();
    let r = c
        .get(&url)
        .header("Range", "bytes=0-39999")
        .send()
        .await
        .unwrap();
    let body = r.bytes().await.unwrap();
    let took = t.elapsed();
    assert_eq!(body.len(), 40_000);
    assert!(took >= Duration::from_millis(350), "{took:?}");

    // Expired URL and 202 faults.
    sim.inject(media_rule(&rid, Fault::ExpiredUrl));
    assert_expired(&c, &url).await;
    sim.inject(media_rule(&rid, Fault::Transcoding202));
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );

    // Rules for another recording do not match; after the rules are used up, normal service.
    sim.inject(media_rule(
        "other",
        Fault::Status {
            status: 500,
            retry_after_secs: None,
        },
    ));
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), full);
}

#[tokio::test]
async fn synthesized_wav_is_valid_deterministic_and_range_consistent() {
    let sim = sim_behaving(Behaviour {
        range: RangeSupport::Honoured,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let size = 48 * 1024 * 1024 + 10;
    let mut spec = RecordingSpec::new(MediaSource::SynthWav { size_bytes: size });
    spec.id = Some("fixed-id".into());
    let (cid, rid) = conv_with(&sim, spec);
    let total = sim.media_len(&rid).unwrap();
    assert_eq!(total, size);

    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    let t = Instant::now();
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut hasher = Sha256::new();
    let mut header = Vec::new();
    let mut r = r;
    let mut n = 0u64;
    while let Some(ch) = r.chunk().await.unwrap() {
        if header.len() < 44 {
            header.extend_from_slice(&ch[..ch.len().min(44 - header.len())]);
        }
        n += ch.len() as u64;
        hasher.update(&ch);
    }
    eprintln!("streamed {n} bytes in {:?}", t.elapsed());
    assert_eq!(n, total);
    let http_hash = hasher.finalize();

    let mut local = Sha256::new();
    std::io::copy(&mut sim.media_reader(&rid).unwrap(), &mut local).unwrap();
    assert_eq!(local.finalize(), http_hash);

    // Valid RIFF/WAVE PCM 16-bit 8 kHz mono with consistent sizes.
    assert_eq!(&header[0..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes(header[4..8].try_into().unwrap()) as u64,
        total - 8
    );
    assert_eq!(&header[8..16], b"WAVEfmt ");
    assert_eq!(u16::from_le_bytes([header[20], header[21]]), 1);
    assert_eq!(u16::from_le_bytes([header[22], header[23]]), 1);
    assert_eq!(u32::from_le_bytes(header[24..28].try_into().unwrap()), 8000);
    assert_eq!(u16::from_le_bytes([header[34], header[35]]), 16);
    assert_eq!(&header[36..40], b"data");
    assert_eq!(
        u32::from_le_bytes(header[40..44].try_into().unwrap()) as u64,
        total - 44
    );

    // Same id in another simulator → same bytes.
    let other = sim_with(SimConfig::default()).await;
    let mut spec = RecordingSpec::new(MediaSource::SynthWav { size_bytes: size });
    spec.id = Some("fixed-id".into());
    let (_, rid2) = conv_with(&other, spec);
    let mut h2 = Sha256::new();
    std::io::copy(&mut other.media_reader(&rid2).unwrap(), &mut h2).unwrap();
    assert_eq!(h2.finalize(), http_hash);

    // Arbitrary ranges equal the same bytes of a full read.
    for (a, b) in [
        (0u64, 43u64),
        (40, 200_000),
        (65_535, 65_537),
        (33_554_000, 33_700_000),
        (total - 3, total - 1),
    ] {
        let r = c
            .get(&url)
            .header("Range", format!("bytes={a}-{b}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            r.bytes().await.unwrap().to_vec(),
            slice_of(&sim, &rid, a, b - a + 1),
            "{a}-{b}"
        );
    }
}
