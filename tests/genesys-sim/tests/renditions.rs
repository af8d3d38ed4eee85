//! Renditions: every formatId is served in its codec whatever the recording's own codec;
//! μ-law renditions of synthesized WAVs; per-encode Ogg bitstreams.

mod common;

use common::*;
use genesys_sim::*;
use reqwest::StatusCode;
use serde_json::Value;

const FORMATS: [&str; 6] = ["WAV", "WEBM", "WAV_ULAW", "OGG_VORBIS", "OGG_OPUS", "MP3"];

async fn get_bytes(c: &reqwest::Client, url: &str) -> Vec<u8> {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn every_format_id_serves_its_codec_for_every_source() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let mut sources: Vec<MediaSource> = Codec::ALL.into_iter().map(MediaSource::Real).collect();
    sources.push(MediaSource::SynthWav {
        size_bytes: 100_000,
    });
    for src in sources {
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(src));
        for f in FORMATS {
            let v = recording(&sim, &c, &tok, &cid, &rid, &format!("formatId={f}")).await;
            let url = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
            let body = get_bytes(&c, url).await;
            assert_eq!(sniff(&body), f, "{src:?} as {f}");
            assert_eq!(v["outputSizeInBytes"], body.len(), "{src:?} as {f}");
            assert_eq!(
                body,
                sim.rendition_bytes(&rid, f).unwrap(),
                "{src:?} as {f}"
            );
            match (src, f) {
                // The synth's own PCM bytes.
                (MediaSource::SynthWav { .. }, "WAV") => {
                    assert_eq!(body, sim.media_bytes(&rid).unwrap())
                }
                (MediaSource::SynthWav { .. }, "WAV_ULAW") => {}
                // Ogg renditions are fresh encodes of the committed sample.
                (_, "OGG_OPUS" | "OGG_VORBIS") => {
                    let codec = Codec::from_format_id(f).unwrap();
                    assert_eq!(body.len(), real_sample(codec).len());
                }
                _ => assert_eq!(body, real_sample(Codec::from_format_id(f).unwrap())),
            }
        }
        // No formatId = WEBM (documented default).
        let v = recording(&sim, &c, &tok, &cid, &rid, "").await;
        let body = get_bytes(&c, v["mediaUris"]["S"]["mediaUri"].as_str().unwrap()).await;
        assert_eq!(sniff(&body), "WEBM", "{src:?} default");
        // The original stays the source.
        assert_eq!(
            sim.media_len(&rid),
            Some(sim.media_bytes(&rid).unwrap().len() as u64)
        );
    }
    assert_eq!(sim.rendition_bytes("nope", "WAV"), None);
    let (_, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    assert_eq!(sim.rendition_bytes(&rid, "NONE"), None);
    assert_eq!(sim.rendition_bytes(&rid, "FLAC"), None);
}

#[tokio::test]
async fn ulaw_rendition_of_a_synthesized_wav_has_the_expected_size_and_samples() {
    let sim = sim_behaving(Behaviour {
        range: RangeSupport::Honoured,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let size = 6_000_044u64;
    let (cid, rid) = conv_with(
        &sim,
        RecordingSpec::new(MediaSource::SynthWav { size_bytes: size }),
    );
    let samples = (size - 44) / 2;
    let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=WAV_ULAW").await;
    assert_eq!(v["outputSizeInBytes"], ULAW_HEADER_LEN + samples);
    let url = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
    let body = get_bytes(&c, url).await;
    assert_eq!(body.len() as u64, ULAW_HEADER_LEN + samples);
    assert_eq!(&body[..4], b"RIFF");
    assert_eq!(
        u32::from_le_bytes(body[4..8].try_into().unwrap()) as u64,
        body.len() as u64 - 8
    );
    assert_eq!(&body[8..16], b"WAVEfmt ");
    assert_eq!(
        u16::from_le_bytes([body[20], body[21]]),
        7,
        "format tag μ-law"
    );
    assert_eq!(u16::from_le_bytes([body[22], body[23]]), 1, "mono");
    assert_eq!(u32::from_le_bytes(body[24..28].try_into().unwrap()), 8000);
    assert_eq!(u16::from_le_bytes([body[34], body[35]]), 8, "8 bits");
    assert_eq!(&body[50..54], b"data");
    assert_eq!(
        u32::from_le_bytes(body[54..58].try_into().unwrap()) as u64,
        samples
    );
    // Sample k is the μ-law of PCM sample k (spot-check by decoding).
    let pcm = sim.media_bytes(&rid).unwrap();
    for k in [0usize, 1, 1000, 32_767, 32_768, 2_999_999] {
        let lin = i16::from_le_bytes([pcm[44 + 2 * k], pcm[45 + 2 * k]]) as i32;
        let dec = ulaw_decode(body[58 + k]) as i32;
        assert!(
            (lin - dec).abs() <= (lin.abs() / 16).max(8),
            "sample {k}: {lin} vs {dec}"
        );
    }
    // Ranges of the streamed μ-law rendition equal the full body.
    let r = c
        .get(url)
        .header("Range", "bytes=40-70000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes().await.unwrap()[..], &body[40..=70000]);
}

fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let sign = u & 0x80;
    let exp = (u >> 4) & 7;
    let mant = u & 0x0f;
    let mag = ((((mant as i32) << 3) + 0x84) << exp) - 0x84;
    (if sign != 0 { -mag } else { mag }) as i16
}

#[tokio::test]
async fn per_encode_ogg_renditions_differ_between_issuances_with_valid_page_crcs() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    for src in [
        MediaSource::Real(Codec::OggOpus),
        MediaSource::Real(Codec::WavPcm),
    ] {
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(src));
        for f in ["OGG_OPUS", "OGG_VORBIS"] {
            assert_eq!(sim.encodes_issued(&rid, f), 0);
            let a = get_bytes(&c, &rendition_url(&sim, &c, &tok, &cid, &rid, f).await).await;
            assert_eq!(sim.rendition_bytes(&rid, f).unwrap(), a);
            let b = get_bytes(&c, &rendition_url(&sim, &c, &tok, &cid, &rid, f).await).await;
            assert_eq!(sim.rendition_bytes(&rid, f).unwrap(), b);
            assert_eq!(sim.encodes_issued(&rid, f), 2);
            assert_ne!(a, b, "{src:?} {f}: a fresh encode per issued URL");
            assert_eq!(a.len(), b.len());
            let (pa, pb) = (ogg_pages(&a), ogg_pages(&b));
            assert!(
                pa.iter().chain(&pb).all(|(_, ok)| *ok),
                "every page CRC valid"
            );
            assert_ne!(pa[0].0, pb[0].0, "new serial");
            assert!(
                pa.iter().all(|(s, _)| *s == pa[0].0),
                "one serial per stream"
            );
            assert_ne!(
                pa[0].0,
                ogg_pages(real_sample(Codec::from_format_id(f).unwrap()))[0].0
            );
        }
        // Non-Ogg renditions are the same bytes every time.
        let a = get_bytes(&c, &rendition_url(&sim, &c, &tok, &cid, &rid, "MP3").await).await;
        let b = get_bytes(&c, &rendition_url(&sim, &c, &tok, &cid, &rid, "MP3").await).await;
        assert_eq!(a, b);
    }
}

#[tokio::test]
async fn stable_ogg_renditions_are_identical_between_issuances() {
    let sim = sim_behaving(Behaviour {
        transcode_serial: TranscodeSerial::Stable,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(
        &sim,
        RecordingSpec::new(MediaSource::Real(Codec::OggVorbis)),
    );
    for f in ["OGG_OPUS", "OGG_VORBIS"] {
        let a = get_bytes(&c, &rendition_url(&sim, &c, &tok, &cid, &rid, f).await).await;
        let b = get_bytes(&c, &rendition_url(&sim, &c, &tok, &cid, &rid, f).await).await;
        assert_eq!(a, b);
        assert_eq!(a, real_sample(Codec::from_format_id(f).unwrap()));
        assert!(ogg_pages(&a).iter().all(|(_, ok)| *ok));
        assert_eq!(sim.encodes_issued(&rid, f), 2);
    }
    // The Ogg original (batch) is the source sample.
    let orig = get_bytes(&c, &original_url(&sim, &c, &tok, &cid, &rid).await).await;
    assert_eq!(orig, real_sample(Codec::OggVorbis));
}

#[tokio::test]
async fn a_url_tampered_to_another_variant_is_rejected() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    let v: Value = recording(&sim, &c, &tok, &cid, &rid, "formatId=WAV").await;
    let url = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
    // Swap the opaque part for another variant's: the signature no longer matches.
    let other = rendition_url(&sim, &c, &tok, &cid, &rid, "MP3").await;
    let opaque = |u: &str| {
        u.split("/media/")
            .nth(1)
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_string()
    };
    let forged = url.replace(&opaque(url), &opaque(&other));
    assert_eq!(
        c.get(&forged).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
}
