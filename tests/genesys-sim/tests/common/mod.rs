#![allow(dead_code)]

use genesys_sim::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub async fn sim() -> Simulator {
    Simulator::start(SimConfig::default()).await.expect("start")
}

pub async fn sim_with(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg).await.expect("start")
}

/// A simulator with one behaviour switch set.
pub async fn sim_behaving(b: Behaviour) -> Simulator {
    sim_with(SimConfig {
        behaviour: b,
        ..SimConfig::default()
    })
    .await
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

pub async fn token(sim: &Simulator, c: &reqwest::Client) -> String {
    token_for(sim, c, sim.client_id(), sim.client_secret()).await
}

pub async fn token_for(sim: &Simulator, c: &reqwest::Client, id: &str, secret: &str) -> String {
    let r = c
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["access_token"].as_str().unwrap().to_string()
}

pub async fn api_get(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    path: &str,
) -> reqwest::Response {
    c.get(format!("{}{}", sim.base_url(), path))
        .bearer_auth(tok)
        .send()
        .await
        .unwrap()
}

/// A conversation with one recording; returns (conversation id, recording id).
pub fn conv_with(sim: &Simulator, spec: RecordingSpec) -> (String, String) {
    let cid = sim.add_conversation(ConversationSpec::default());
    let rid = sim.add_recording(&cid, spec);
    (cid, rid)
}

/// The recording's own (declared) codec.
pub fn own_codec(sim: &Simulator, rid: &str) -> Codec {
    sim.conversations()
        .iter()
        .flat_map(|c| c.recordings.iter())
        .find(|r| r.id == rid)
        .map(|r| r.declared_codec)
        .expect("recording exists")
}

/// The recording JSON for `query` (200 expected).
pub async fn recording(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    cid: &str,
    rid: &str,
    query: &str,
) -> Value {
    let r = api_get(
        sim,
        c,
        tok,
        &format!("/api/v2/conversations/{cid}/recordings/{rid}?{query}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "{query}");
    r.json().await.unwrap()
}

/// Signed media URL of the `format_id` rendition (key "S").
pub async fn rendition_url(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    cid: &str,
    rid: &str,
    format_id: &str,
) -> String {
    let v = recording(sim, c, tok, cid, rid, &format!("formatId={format_id}")).await;
    v["mediaUris"]["S"]["mediaUri"]
        .as_str()
        .unwrap_or_else(|| panic!("no mediaUris.S in {v}"))
        .to_string()
}

/// Signed media URL of the rendition in the recording's own codec. For WAV, MP3 and WEBM
/// recordings (real or synthesized) it serves exactly the original bytes.
pub async fn media_url(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    cid: &str,
    rid: &str,
) -> String {
    let f = own_codec(sim, rid).as_format_id();
    rendition_url(sim, c, tok, cid, rid, f).await
}

/// Submit a batch job; returns its id.
pub async fn submit_batch(sim: &Simulator, c: &reqwest::Client, tok: &str, items: Value) -> String {
    let r = c
        .post(format!("{}/api/v2/recording/batchrequests", sim.base_url()))
        .bearer_auth(tok)
        .json(&json!({ "batchDownloadRequestList": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["selfUri"],
        format!(
            "/api/v2/recording/batchrequests/{}",
            v["id"].as_str().unwrap()
        )
        .as_str()
    );
    v["id"].as_str().unwrap().to_string()
}

/// Poll a batch job until Completed (at most 20 GETs); returns the status result.
pub async fn batch_completed(sim: &Simulator, c: &reqwest::Client, tok: &str, id: &str) -> Value {
    for _ in 0..20 {
        let r = api_get(
            sim,
            c,
            tok,
            &format!("/api/v2/recording/batchrequests/{id}"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        if v["status"] == "Completed" {
            return v;
        }
    }
    panic!("batch job {id} never completed");
}

/// The original-bytes URL of one recording, through a batch download job.
pub async fn original_url(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    cid: &str,
    rid: &str,
) -> String {
    let id = submit_batch(
        sim,
        c,
        tok,
        json!([{"conversationId": cid, "recordingId": rid}]),
    )
    .await;
    let v = batch_completed(sim, c, tok, &id).await;
    v["results"][0]["resultUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("no resultUrl in {v}"))
        .to_string()
}

/// Pages of an Ogg stream: (serial, CRC valid) per page. Panics on a malformed stream.
pub fn ogg_pages(data: &[u8]) -> Vec<(u32, bool)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let p = &data[i..];
        assert!(p.len() >= 27 && &p[..4] == b"OggS", "page at {i}");
        let n = p[26] as usize;
        let len = 27 + n + p[27..27 + n].iter().map(|&s| s as usize).sum::<usize>();
        let mut page = p[..len].to_vec();
        let stored = u32::from_le_bytes(page[22..26].try_into().unwrap());
        page[22..26].copy_from_slice(&[0; 4]);
        let serial = u32::from_le_bytes(page[14..18].try_into().unwrap());
        out.push((serial, ogg_crc(&page) == stored));
        i += len;
    }
    out
}

/// Ogg page CRC: CRC-32, polynomial 0x04C11DB7, not reflected, init 0, no final XOR.
pub fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// CRC-32 as ZIP uses it (reflected 0xEDB88320).
pub fn zip_crc(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Which codec the bytes are, by their magic.
pub fn sniff(b: &[u8]) -> &'static str {
    if b.len() >= 22 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE" {
        return match u16::from_le_bytes([b[20], b[21]]) {
            1 => "WAV",
            7 => "WAV_ULAW",
            _ => "WAV?",
        };
    }
    if b.starts_with(b"OggS") {
        if b.windows(8).any(|w| w == b"OpusHead") {
            return "OGG_OPUS";
        }
        if b.windows(7).any(|w| w == b"\x01vorbis") {
            return "OGG_VORBIS";
        }
        return "OGG?";
    }
    if b.starts_with(b"ID3") || (b.len() > 1 && b[0] == 0xFF && b[1] & 0xE0 == 0xE0) {
        return "MP3";
    }
    if b.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return "WEBM";
    }
    if b.starts_with(b"PK\x03\x04") {
        return "ZIP";
    }
    "?"
}
