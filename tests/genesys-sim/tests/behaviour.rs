//! Every [`Behaviour`] switch, each variant observed over HTTP.

mod common;

use std::time::Duration;

use base64::Engine;
use common::*;
use genesys_sim::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

#[test]
fn defaults_are_the_documented_or_conservative_ones() {
    let cfg = SimConfig::default();
    let b = &cfg.behaviour;
    assert_eq!(b.none_format, NoneFormat::MetadataOnly);
    assert_eq!(b.media_uri_keys, MediaUriKeys::Single);
    assert_eq!(b.media_content_type, MediaContentType::OctetStream);
    assert_eq!(b.accepted_body, AcceptedBody::Empty);
    assert_eq!(b.range, RangeSupport::Ignored);
    assert_eq!(b.expired_url, ExpiredUrl::Forbidden);
    assert_eq!(b.custom_attributes_list, CustomAttributesListShape::Results);
    assert!(!b.media_checksums);
    assert_eq!(b.transcode_serial, TranscodeSerial::PerEncode);
    assert_eq!(cfg.batch_polls, 1);
    assert_eq!(cfg.batch_url_ttl_secs, 3600);
    // Struct update keeps working.
    let cfg = SimConfig {
        behaviour: Behaviour {
            range: RangeSupport::Honoured,
            ..Default::default()
        },
        ..SimConfig::default()
    };
    assert_eq!(cfg.behaviour.range, RangeSupport::Honoured);
    // Behaviour round-trips through JSON, and partial JSON fills in defaults.
    let j = serde_json::to_string(&cfg.behaviour).unwrap();
    assert_eq!(
        serde_json::from_str::<Behaviour>(&j).unwrap(),
        cfg.behaviour
    );
    let partial: Behaviour = serde_json::from_str(r#"{"expired_url":"Gone"}"#).unwrap();
    assert_eq!(partial.expired_url, ExpiredUrl::Gone);
    assert_eq!(partial.range, RangeSupport::Ignored);
}

#[tokio::test]
async fn none_format_metadata_only_has_no_media_uris() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::Mp3));
    spec.transcoding_polls = 3;
    let (cid, rid) = conv_with(&sim, spec);
    // No transcode is needed for metadata: 200 at once.
    let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=NONE").await;
    assert!(v.get("mediaUris").is_none(), "{v}");
    assert_eq!(v["fileState"], "AVAILABLE");
    assert_eq!(v["outputSizeInBytes"], 0);
    assert_eq!(v["id"], rid.as_str());
}

#[tokio::test]
async fn none_format_serves_original_gives_the_source_bytes() {
    let sim = sim_behaving(Behaviour {
        none_format: NoneFormat::ServesOriginal,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    for src in [
        MediaSource::Real(Codec::OggOpus),
        MediaSource::SynthWav {
            size_bytes: 300_000,
        },
    ] {
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(src));
        let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=NONE").await;
        assert_eq!(v["outputSizeInBytes"], sim.media_len(&rid).unwrap());
        let url = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
        let body = c.get(url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(body.to_vec(), sim.media_bytes(&rid).unwrap(), "{src:?}");
    }
}

#[tokio::test]
async fn media_uri_keys_single_and_per_channel() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=WAV").await;
    let keys: Vec<&String> = v["mediaUris"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["S"]);

    let sim = sim_behaving(Behaviour {
        media_uri_keys: MediaUriKeys::PerChannel,
        ..Default::default()
    })
    .await;
    let tok = token(&sim, &c).await;
    for src in [
        MediaSource::Real(Codec::WavPcm),
        MediaSource::SynthWav {
            size_bytes: 200_000,
        },
    ] {
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(src));
        for f in ["WAV", "WEBM", "WAV_ULAW", "OGG_VORBIS", "OGG_OPUS", "MP3"] {
            let v = recording(&sim, &c, &tok, &cid, &rid, &format!("formatId={f}")).await;
            let m = v["mediaUris"].as_object().unwrap();
            let keys: Vec<&String> = m.keys().collect();
            assert_eq!(keys, ["0", "1"], "{f}");
            let mut bodies = Vec::new();
            for k in ["0", "1"] {
                let url = m[k]["mediaUri"].as_str().unwrap();
                let body = c
                    .get(url)
                    .send()
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec();
                assert_eq!(sniff(&body), f, "{src:?} {f} key {k}");
                assert_eq!(body, sim.media_key_bytes(&rid, f, k).unwrap(), "{f} {k}");
                bodies.push(body);
            }
            assert_ne!(bodies[0], bodies[1], "{src:?} {f}: two different streams");
            assert_eq!(v["outputSizeInBytes"], bodies[0].len());
            assert_eq!(sim.rendition_bytes(&rid, f).unwrap(), bodies[0]);
        }
    }
}

#[tokio::test]
async fn media_content_type_octet_stream_and_accurate() {
    let c = client();
    for (mode, expect_accurate) in [
        (MediaContentType::OctetStream, false),
        (MediaContentType::Accurate, true),
    ] {
        let sim = sim_behaving(Behaviour {
            media_content_type: mode,
            ..Default::default()
        })
        .await;
        let tok = token(&sim, &c).await;
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavUlaw)));
        for (f, ct) in [
            ("WAV", "audio/wav"),
            ("WAV_ULAW", "audio/wav"),
            ("OGG_OPUS", "audio/ogg"),
            ("OGG_VORBIS", "audio/ogg"),
            ("MP3", "audio/mpeg"),
            ("WEBM", "audio/webm"),
        ] {
            let url = rendition_url(&sim, &c, &tok, &cid, &rid, f).await;
            let r = c.get(&url).send().await.unwrap();
            let want = if expect_accurate {
                ct
            } else {
                "binary/octet-stream"
            };
            assert_eq!(r.headers()["content-type"], want, "{mode:?} {f}");
        }
        let docs = [
            (MediaSource::Chat, "application/zip"),
            (MediaSource::Messaging, "application/zip"),
            (MediaSource::Email, "message/rfc822"),
            (MediaSource::Screen, "video/webm"),
        ];
        for (src, ct) in docs {
            let (cid, rid) = conv_with(&sim, RecordingSpec::new(src));
            let v = recording(&sim, &c, &tok, &cid, &rid, "").await;
            let url = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
            let r = c.get(url).send().await.unwrap();
            let want = if expect_accurate {
                ct
            } else {
                "binary/octet-stream"
            };
            assert_eq!(r.headers()["content-type"], want, "{mode:?} {src:?}");
        }
        // Batch results always state the accurate type; the URL follows the switch.
        let url = original_url(&sim, &c, &tok, &cid, &rid).await;
        let r = c.get(&url).send().await.unwrap();
        let want = if expect_accurate {
            "audio/wav"
        } else {
            "binary/octet-stream"
        };
        assert_eq!(r.headers()["content-type"], want);
    }
}

#[tokio::test]
async fn accepted_body_empty_and_recording_json() {
    let c = client();
    for mode in [AcceptedBody::Empty, AcceptedBody::RecordingJson] {
        let sim = sim_behaving(Behaviour {
            accepted_body: mode,
            ..Default::default()
        })
        .await;
        let tok = token(&sim, &c).await;
        let mut spec = RecordingSpec::new(MediaSource::Real(Codec::Mp3));
        spec.unavailable_polls = 1;
        spec.transcoding_polls = 1;
        let (cid, rid) = conv_with(&sim, spec);
        let p = format!("/api/v2/conversations/{cid}/recordings/{rid}?formatId=MP3");
        // Uploading, then transcoding, then a forced 202: all 202s.
        sim.inject(FaultRule {
            target: FaultTarget::Api {
                path_contains: "/recordings/".into(),
            },
            fault: Fault::Transcoding202,
            skip: 2,
            times: 1,
        });
        for (i, state) in ["UPLOADING", "AVAILABLE", "AVAILABLE"].iter().enumerate() {
            let r = api_get(&sim, &c, &tok, &p).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{mode:?} poll {i}");
            let body = r.bytes().await.unwrap();
            match mode {
                AcceptedBody::Empty => assert!(body.is_empty(), "{mode:?} poll {i}"),
                AcceptedBody::RecordingJson => {
                    let v: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(v["fileState"], *state);
                    assert!(v["estimatedTranscodeTimeMs"].as_u64().unwrap() > 0);
                    assert!(v.get("mediaUris").is_none());
                }
            }
        }
        let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=MP3").await;
        assert!(v["mediaUris"]["S"]["mediaUri"].is_string());
    }
}

#[tokio::test]
async fn range_ignored_by_default_honoured_on_request_and_overridable() {
    let c = client();
    let sim = sim().await;
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    let r = c
        .get(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("content-range").is_none());
    assert_eq!(&r.bytes().await.unwrap()[..], real_sample(Codec::Mp3));
    sim.set_ignore_range(false);
    let r = c
        .get(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    let sim = sim_behaving(Behaviour {
        range: RangeSupport::Honoured,
        ..Default::default()
    })
    .await;
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    let r = c
        .get(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    let total = real_sample(Codec::Mp3).len();
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 0-9/{total}").as_str()
    );
    assert_eq!(
        &r.bytes().await.unwrap()[..],
        &real_sample(Codec::Mp3)[..10]
    );
    sim.set_ignore_range(true);
    let r = c
        .get(&url)
        .header("Range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn assert_expired_as(c: &reqwest::Client, url: &str, status: u16) {
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), status, "{url}");
    let body = r.text().await.unwrap();
    assert!(body.contains("Request has expired"), "{body}");
}

#[tokio::test]
async fn expired_url_status_per_variant_for_every_kind_of_expiry() {
    let c = client();
    for mode in [
        ExpiredUrl::Forbidden,
        ExpiredUrl::BadRequest,
        ExpiredUrl::Unauthorized,
        ExpiredUrl::Gone,
    ] {
        let want = mode.status();
        let sim = sim_with(SimConfig {
            media_url_ttl_secs: 1,
            batch_url_ttl_secs: 1,
            behaviour: Behaviour {
                expired_url: mode,
                ..Default::default()
            },
            ..SimConfig::default()
        })
        .await;
        let tok = token(&sim, &c).await;
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
        // Fault on a live URL.
        let url = media_url(&sim, &c, &tok, &cid, &rid).await;
        sim.inject(FaultRule::once(
            FaultTarget::Media { recording_id: None },
            Fault::ExpiredUrl,
        ));
        assert_expired_as(&c, &url, want).await;
        assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
        // Invalidated: renditions and batch URLs alike.
        let batch = original_url(&sim, &c, &tok, &cid, &rid).await;
        assert_eq!(c.get(&batch).send().await.unwrap().status(), StatusCode::OK);
        sim.expire_media_urls();
        assert_expired_as(&c, &url, want).await;
        assert_expired_as(&c, &batch, want).await;
        // Time-expired.
        let url = media_url(&sim, &c, &tok, &cid, &rid).await;
        let batch = original_url(&sim, &c, &tok, &cid, &rid).await;
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_expired_as(&c, &url, want).await;
        assert_expired_as(&c, &batch, want).await;
        // A tampered signature is still 403 SignatureDoesNotMatch.
        let last = if url.ends_with('0') { '1' } else { '0' };
        let bad = format!("{}{last}", &url[..url.len() - 1]);
        let r = c.get(&bad).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}

#[tokio::test]
async fn custom_attributes_list_shapes() {
    let c = client();
    for (mode, key) in [
        (CustomAttributesListShape::Results, Some("results")),
        (CustomAttributesListShape::Entities, Some("entities")),
        (CustomAttributesListShape::BareArray, None),
    ] {
        let sim = sim_behaving(Behaviour {
            custom_attributes_list: mode,
            ..Default::default()
        })
        .await;
        let tok = token(&sim, &c).await;
        let cid = sim.add_conversation(ConversationSpec::default());
        let url = format!(
            "{}/api/v2/conversations/{cid}/customattributes",
            sim.base_url()
        );
        let r = c
            .put(&url)
            .bearer_auth(&tok)
            .json(&json!({"id": "a1", "schemaId": "s1", "customAttributes": {"k": "v"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = api_get(
            &sim,
            &c,
            &tok,
            &format!("/api/v2/conversations/{cid}/customattributes"),
        )
        .await
        .json()
        .await
        .unwrap();
        let list = match key {
            Some(k) => {
                assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
                v[k].clone()
            }
            None => v.clone(),
        };
        assert_eq!(list[0]["id"], "a1", "{mode:?}: {v}");
        assert_eq!(list[0]["customAttributes"]["k"], "v");
    }
}

#[tokio::test]
async fn media_checksums_give_md5_etag_and_sha256_of_the_whole_object() {
    let c = client();
    // Off: opaque ETag, no checksum header even when asked.
    let sim = sim().await;
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    let r = c
        .get(&url)
        .header("x-amz-checksum-mode", "ENABLED")
        .send()
        .await
        .unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    assert!(r.headers().get("x-amz-checksum-sha256").is_none());
    let body = r.bytes().await.unwrap();
    assert_ne!(etag, format!("\"{}\"", md5_hex(&body)));
    assert!(etag.starts_with('"') && etag.ends_with("-1\""), "{etag}");

    // On.
    let sim = sim_behaving(Behaviour {
        media_checksums: true,
        range: RangeSupport::Honoured,
        ..Default::default()
    })
    .await;
    let tok = token(&sim, &c).await;
    for src in [
        MediaSource::Real(Codec::Mp3),
        MediaSource::SynthWav {
            size_bytes: 3_000_000,
        },
    ] {
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(src));
        let url = media_url(&sim, &c, &tok, &cid, &rid).await;
        let whole = sim
            .rendition_bytes(&rid, own_codec(&sim, &rid).as_format_id())
            .unwrap();
        let md5 = format!("\"{}\"", md5_hex(&whole));
        let sha = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&whole));
        // Full GET without checksum mode: MD5 ETag only.
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.headers()["etag"], md5.as_str());
        assert!(r.headers().get("x-amz-checksum-sha256").is_none());
        // With checksum mode: SHA-256 too.
        let r = c
            .get(&url)
            .header("x-amz-checksum-mode", "ENABLED")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["etag"], md5.as_str());
        assert_eq!(r.headers()["x-amz-checksum-sha256"], sha.as_str());
        assert_eq!(r.bytes().await.unwrap().to_vec(), whole);
        // Partial range: ETag of the whole object, no checksum.
        let r = c
            .get(&url)
            .header("x-amz-checksum-mode", "ENABLED")
            .header("Range", "bytes=0-99")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()["etag"], md5.as_str());
        assert!(r.headers().get("x-amz-checksum-sha256").is_none());
        // A 206 that covers the whole object carries it.
        let r = c
            .get(&url)
            .header("x-amz-checksum-mode", "ENABLED")
            .header("Range", "bytes=0-")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.headers()["x-amz-checksum-sha256"], sha.as_str());
    }
}

/// MD5 for the test's own check (RFC 1321), independent of the simulator's.
fn md5_hex(data: &[u8]) -> String {
    let s: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut h = [0x6745_2301u32, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for chunk in msg.chunks(64) {
        let m: Vec<u32> = chunk
            .chunks(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let (mut a, mut b, mut c, mut d) = (h[0], h[1], h[2], h[3]);
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let t = d;
            d = c;
            c = b;
            b = b.wrapping_add(
                a.wrapping_add(f)
                    .wrapping_add(k[i])
                    .wrapping_add(m[g])
                    .rotate_left(s[i]),
            );
            a = t;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
    }
    h.iter()
        .flat_map(|w| w.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn test_md5_is_right() {
    assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
}
