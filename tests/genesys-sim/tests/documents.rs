//! Non-audio recordings (chat, messaging, email, screen) and restoring archived recordings.

mod common;

use common::*;
use genesys_sim::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap())
}

/// Parse a stored ZIP: checks local headers, central directory, EOCD and CRCs;
/// returns (name, data) per entry.
fn unzip(b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let eocd = b.len() - 22;
    assert_eq!(u32_at(b, eocd), 0x0605_4b50, "EOCD signature");
    let entries = u16_at(b, eocd + 10) as usize;
    let cd_size = u32_at(b, eocd + 12) as usize;
    let cd_off = u32_at(b, eocd + 16) as usize;
    assert_eq!(cd_off + cd_size, eocd);
    let mut out = Vec::new();
    let mut p = cd_off;
    for _ in 0..entries {
        assert_eq!(u32_at(b, p), 0x0201_4b50, "central directory signature");
        let method = u16_at(b, p + 10);
        let crc = u32_at(b, p + 16);
        let size = u32_at(b, p + 20) as usize;
        let name_len = u16_at(b, p + 28) as usize;
        let local = u32_at(b, p + 42) as usize;
        let name = String::from_utf8(b[p + 46..p + 46 + name_len].to_vec()).unwrap();
        assert_eq!(method, 0, "stored");
        assert_eq!(u32_at(b, local), 0x0403_4b50, "local header signature");
        assert_eq!(u32_at(b, local + 14), crc);
        let lname = u16_at(b, local + 26) as usize;
        let extra = u16_at(b, local + 28) as usize;
        let start = local + 30 + lname + extra;
        let data = b[start..start + size].to_vec();
        assert_eq!(zip_crc(&data), crc, "CRC-32 of {name}");
        out.push((name, data));
        p += 46 + name_len + u16_at(b, p + 30) as usize + u16_at(b, p + 32) as usize;
    }
    out
}

async fn fetch(c: &reqwest::Client, v: &Value) -> Vec<u8> {
    let url = v["mediaUris"]["S"]["mediaUri"]
        .as_str()
        .unwrap_or_else(|| panic!("no media in {v}"));
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.bytes().await.unwrap().to_vec()
}

#[tokio::test]
async fn chat_and_messaging_serve_a_zip_with_the_transcript() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    for (src, param, media) in [
        (MediaSource::Chat, "chatFormatId", "chat"),
        (MediaSource::Messaging, "messageFormatId", "messaging"),
    ] {
        let (cid, rid) = conv_with(&sim, RecordingSpec::new(src));
        let meta: Value = api_get(
            &sim,
            &c,
            &tok,
            &format!("/api/v2/conversations/{cid}/recordingmetadata/{rid}"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(meta["media"], media);
        assert!(meta.get("mediaSubtype").is_none());
        for q in ["", &format!("{param}=ZIP")] {
            let v = recording(&sim, &c, &tok, &cid, &rid, q).await;
            assert_eq!(v["media"], media);
            let body = fetch(&c, &v).await;
            assert_eq!(v["outputSizeInBytes"], body.len());
            assert_eq!(body, sim.media_bytes(&rid).unwrap());
            assert_eq!(sniff(&body), "ZIP");
            let files = unzip(&body);
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].0, "transcript.json");
            let t: Value = serde_json::from_slice(&files[0].1).unwrap();
            assert_eq!(t["conversationId"], cid.as_str());
            assert!(t["messages"].as_array().unwrap().len() >= 2);
        }
        let v = recording(&sim, &c, &tok, &cid, &rid, &format!("{param}=NONE")).await;
        assert!(v.get("mediaUris").is_none());
        let summary = sim
            .conversations()
            .into_iter()
            .find(|x| x.id == cid)
            .unwrap();
        assert_eq!(summary.recordings[0].media, media);
    }
}

#[tokio::test]
async fn email_serves_an_rfc822_message() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Email));
    let v = recording(&sim, &c, &tok, &cid, &rid, "emailFormatId=EML").await;
    assert_eq!(v["media"], "email");
    assert!(v["name"].as_str().unwrap().ends_with(".eml"));
    let body = fetch(&c, &v).await;
    assert_eq!(body, sim.media_bytes(&rid).unwrap());
    let text = String::from_utf8(body).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    for h in [
        "From: ",
        "To: ",
        "Subject: ",
        "Date: ",
        "Message-ID: <",
        "MIME-Version: 1.0",
    ] {
        assert!(
            head.lines().any(|l| l.starts_with(h)),
            "{h} missing in {head}"
        );
    }
    let date = head.lines().find_map(|l| l.strip_prefix("Date: ")).unwrap();
    assert!(chrono::DateTime::parse_from_rfc2822(date).is_ok(), "{date}");
    assert!(!rest.trim().is_empty());
    let v = recording(&sim, &c, &tok, &cid, &rid, "").await;
    assert!(
        v["mediaUris"]["S"]["mediaUri"].is_string(),
        "EML is the default"
    );
    let v = recording(&sim, &c, &tok, &cid, &rid, "emailFormatId=NONE").await;
    assert!(v.get("mediaUris").is_none());
    let r = api_get(
        &sim,
        &c,
        &tok,
        &format!("/api/v2/conversations/{cid}/recordings/{rid}?emailFormatId=ZIP"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn screen_recordings_are_webm_with_the_screen_subtype() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Screen));
    let v = recording(&sim, &c, &tok, &cid, &rid, "").await;
    assert_eq!(v["media"], "screen");
    assert_eq!(v["mediaSubtype"], "Screen");
    let body = fetch(&c, &v).await;
    assert_eq!(sniff(&body), "WEBM");
    assert_eq!(body, sim.media_bytes(&rid).unwrap());
    let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=NONE").await;
    assert!(v.get("mediaUris").is_none());
    assert_eq!(sim.rendition_bytes(&rid, "WEBM").unwrap(), body);
}

#[tokio::test]
async fn archived_recording_is_restored_by_moving_its_archive_date() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::Mp3));
    spec.file_state_override = Some(FileState::Archived);
    let (cid, rid) = conv_with(&sim, spec);
    let url = format!(
        "{}/api/v2/conversations/{cid}/recordings/{rid}",
        sim.base_url()
    );
    let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=MP3").await;
    assert_eq!(v["fileState"], "ARCHIVED");
    assert!(v.get("mediaUris").is_none());

    // Other bodies are echoed and stored without a restore.
    let r = c
        .put(&url)
        .bearer_auth(&tok)
        .json(&json!({"deleteDate": "2999-01-01T00:00:00.000Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fileState"], "ARCHIVED");
    assert_eq!(v["deleteDate"], "2999-01-01T00:00:00.000Z");
    let r = c
        .put(&url)
        .bearer_auth(&tok)
        .json(&json!({"archiveDate": "2001-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["fileState"], "ARCHIVED");
    for bad in [json!({"archiveDate": "tomorrow"}), json!([1])] {
        let r = c
            .put(&url)
            .bearer_auth(&tok)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    let future = (chrono::Utc::now() + chrono::Duration::days(30))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let r = c
        .put(&url)
        .bearer_auth(&tok)
        .json(&json!({"archiveDate": future}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["fileState"], "RESTORING");
    assert_eq!(v["archiveDate"], future.as_str());
    let meta = format!("/api/v2/conversations/{cid}/recordingmetadata/{rid}");
    for _ in 0..2 {
        let v: Value = api_get(&sim, &c, &tok, &meta).await.json().await.unwrap();
        assert_eq!(v["fileState"], "RESTORING");
    }
    let v: Value = api_get(&sim, &c, &tok, &meta).await.json().await.unwrap();
    assert_eq!(v["fileState"], "RESTORED");
    let exp = v["restoreExpirationTime"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(exp).unwrap() > chrono::Utc::now());
    let v = recording(&sim, &c, &tok, &cid, &rid, "formatId=MP3").await;
    assert_eq!(v["fileState"], "RESTORED");
    assert_eq!(fetch(&c, &v).await, real_sample(Codec::Mp3));
    // Restored recordings are batch-downloadable.
    let url = original_url(&sim, &c, &tok, &cid, &rid).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);

    // A null archiveDate restores too.
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::WavPcm));
    spec.file_state_override = Some(FileState::Archived);
    let (cid, rid) = conv_with(&sim, spec);
    let r = c
        .put(format!(
            "{}/api/v2/conversations/{cid}/recordings/{rid}",
            sim.base_url()
        ))
        .bearer_auth(&tok)
        .json(&json!({"archiveDate": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["fileState"], "RESTORING");
    let r = c
        .put(format!(
            "{}/api/v2/conversations/{cid}/recordings/nope",
            sim.base_url()
        ))
        .bearer_auth(&tok)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
