//! Batch download API: `POST /api/v2/recording/batchrequests`, `GET .../{jobId}`.

mod common;

use common::*;
use genesys_sim::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn batch_sim(polls: u32) -> SimConfig {
    SimConfig {
        batch_polls: polls,
        extra_clients: vec![("other-client".into(), "other-secret".into())],
        ..SimConfig::default()
    }
}

async fn get_job(sim: &Simulator, c: &reqwest::Client, tok: &str, id: &str) -> reqwest::Response {
    api_get(
        sim,
        c,
        tok,
        &format!("/api/v2/recording/batchrequests/{id}"),
    )
    .await
}

#[tokio::test]
async fn job_is_in_progress_for_batch_polls_then_completed_with_original_bytes() {
    let sim = sim_with(batch_sim(3)).await;
    let c = client();
    let tok = token(&sim, &c).await;
    let cid = sim.add_conversation(ConversationSpec::default());
    let a = sim.add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
    let b = sim.add_recording(
        &cid,
        RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: 250_000,
        }),
    );
    let (cid2, c2) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    // No recordingId = every recording of the conversation.
    let id = submit_batch(
        &sim,
        &c,
        &tok,
        json!([{"conversationId": cid}, {"conversationId": cid2, "recordingId": c2}]),
    )
    .await;
    for _ in 0..3 {
        let v: Value = get_job(&sim, &c, &tok, &id).await.json().await.unwrap();
        assert_eq!(v["status"], "InProgress");
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["jobId"], id.as_str());
        assert_eq!(v["expectedResultCount"], 3);
        assert!(v["resultCount"].as_u64().unwrap() < 3);
    }
    let v: Value = get_job(&sim, &c, &tok, &id).await.json().await.unwrap();
    assert_eq!(v["status"], "Completed");
    assert_eq!(v["resultCount"], 3);
    assert_eq!(v["errorCount"], 0);
    assert_eq!(
        v["selfUri"],
        format!("/api/v2/recording/batchrequests/{id}").as_str()
    );
    let results = v["results"].as_array().unwrap();
    let mut seen = Vec::new();
    for r in results {
        let rid = r["recordingId"].as_str().unwrap();
        assert!(r.get("errorMsg").is_none(), "{r}");
        let want_ct = match rid {
            x if x == a => "audio/ogg",
            x if x == b => "audio/wav",
            _ => "audio/mpeg",
        };
        assert_eq!(r["contentType"], want_ct);
        let url = r["resultUrl"].as_str().unwrap();
        let resp = c.get(url).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.bytes().await.unwrap().to_vec();
        assert_eq!(
            body,
            sim.media_bytes(rid).unwrap(),
            "original bytes of {rid}"
        );
        seen.push(rid.to_string());
    }
    seen.sort();
    let mut want = vec![a.clone(), b, c2];
    want.sort();
    assert_eq!(seen, want);
    // The Ogg original is the source sample, not a fresh encode.
    assert_eq!(sim.media_bytes(&a).unwrap(), real_sample(Codec::OggOpus));
    // Later GETs repeat the same results.
    let again: Value = get_job(&sim, &c, &tok, &id).await.json().await.unwrap();
    assert_eq!(again["results"], v["results"]);
}

#[tokio::test]
async fn zero_batch_polls_completes_on_the_first_get() {
    let sim = sim_with(batch_sim(0)).await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let id = submit_batch(
        &sim,
        &c,
        &tok,
        json!([{"conversationId": cid, "recordingId": rid}]),
    )
    .await;
    let v: Value = get_job(&sim, &c, &tok, &id).await.json().await.unwrap();
    assert_eq!(v["status"], "Completed");
}

#[tokio::test]
async fn only_the_submitting_client_can_read_the_job() {
    let sim = sim_with(batch_sim(0)).await;
    let c = client();
    let tok = token(&sim, &c).await;
    let other = token_for(&sim, &c, "other-client", "other-secret").await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let id = submit_batch(
        &sim,
        &c,
        &tok,
        json!([{"conversationId": cid, "recordingId": rid}]),
    )
    .await;
    let r = get_job(&sim, &c, &other, &id).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "not.found");
    // A second token of the submitting client may.
    let tok2 = token(&sim, &c).await;
    assert_eq!(get_job(&sim, &c, &tok2, &id).await.status(), StatusCode::OK);
    assert_eq!(
        get_job(&sim, &c, &tok, "no-such-job").await.status(),
        StatusCode::NOT_FOUND
    );
    // Unknown client secrets still fail at the token endpoint.
    let r = c
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth("other-client", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn submission_validation() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let url = format!("{}/api/v2/recording/batchrequests", sim.base_url());
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"conversationId": format!("c{i}")}))
        .collect();
    let hundred: Vec<Value> = (0..100)
        .map(|i| json!({"conversationId": format!("c{i}")}))
        .collect();
    for (body, want) in [
        (json!({"batchDownloadRequestList": many}), 400),
        (json!({"batchDownloadRequestList": []}), 400),
        (json!({}), 400),
        (
            json!({"batchDownloadRequestList": [{"recordingId": "r"}]}),
            400,
        ),
        (
            json!({"batchDownloadRequestList": [{"conversationId": 5}]}),
            400,
        ),
        (json!({"batchDownloadRequestList": hundred}), 200),
    ] {
        let r = c
            .post(&url)
            .bearer_auth(&tok)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
        let v: Value = r.json().await.unwrap();
        if want == 400 {
            assert_eq!(v["code"], "bad.request");
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
    }
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Needs a token like every API call.
    let r = c
        .post(&url)
        .json(&json!({"batchDownloadRequestList": [{"conversationId": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn unavailable_recordings_and_unknown_conversations_yield_error_results() {
    let sim = sim_with(batch_sim(0)).await;
    let c = client();
    let tok = token(&sim, &c).await;
    let cid = sim.add_conversation(ConversationSpec::default());
    let mut items = vec![json!({"conversationId": "no-such-conversation"})];
    let mut bad = Vec::new();
    for state in [
        FileState::Archived,
        FileState::Deleted,
        FileState::Error,
        FileState::Uploading,
    ] {
        let mut spec = RecordingSpec::new(MediaSource::Real(Codec::WavPcm));
        spec.file_state_override = Some(state);
        bad.push(sim.add_recording(&cid, spec));
    }
    for src in [MediaSource::Chat, MediaSource::Email, MediaSource::Screen] {
        bad.push(sim.add_recording(&cid, RecordingSpec::new(src)));
    }
    let good = sim.add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    items.push(json!({"conversationId": cid}));
    items.push(json!({"conversationId": cid, "recordingId": "no-such-recording"}));
    let id = submit_batch(&sim, &c, &tok, Value::Array(items)).await;
    let v = batch_completed(&sim, &c, &tok, &id).await;
    let results = v["results"].as_array().unwrap();
    assert_eq!(v["expectedResultCount"], results.len());
    assert_eq!(results.len(), 1 + bad.len() + 1 + 1);
    assert_eq!(v["errorCount"], results.len() - 1);
    for r in results {
        if r["recordingId"] == good.as_str() {
            assert!(r["resultUrl"].is_string());
            continue;
        }
        let msg = r["errorMsg"].as_str().unwrap_or_else(|| panic!("{r}"));
        assert!(msg.len() > 10 && msg.ends_with('.'), "{msg}");
        assert!(r.get("resultUrl").is_none(), "{r}");
        assert!(r["conversationId"].is_string());
    }
    let unknown = results
        .iter()
        .find(|r| r["conversationId"] == "no-such-conversation")
        .unwrap();
    assert!(unknown["errorMsg"].as_str().unwrap().contains("not found"));
    let archived = results
        .iter()
        .find(|r| r["recordingId"] == bad[0].as_str())
        .unwrap();
    assert!(archived["errorMsg"].as_str().unwrap().contains("archived"));
    let chat = results
        .iter()
        .find(|r| r["recordingId"] == bad[4].as_str())
        .unwrap();
    assert!(chat["errorMsg"].as_str().unwrap().contains("chat"));
}

#[tokio::test]
async fn result_urls_expire_after_batch_url_ttl_and_api_faults_match_batch_paths() {
    let sim = sim_with(SimConfig {
        batch_polls: 0,
        batch_url_ttl_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let url = original_url(&sim, &c, &tok, &cid, &rid).await;
    assert_eq!(c.get(&url).send().await.unwrap().status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_eq!(
        c.get(&url).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    sim.inject(FaultRule::once(
        FaultTarget::Api {
            path_contains: "/recording/batchrequests".into(),
        },
        Fault::Status {
            status: 429,
            retry_after_secs: Some(3),
        },
    ));
    let r = c
        .post(format!("{}/api/v2/recording/batchrequests", sim.base_url()))
        .bearer_auth(&tok)
        .json(&json!({"batchDownloadRequestList": [{"conversationId": cid}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "3");
    let id = submit_batch(&sim, &c, &tok, json!([{"conversationId": cid}])).await;
    sim.inject(FaultRule::once(
        FaultTarget::Api {
            path_contains: format!("/recording/batchrequests/{id}"),
        },
        Fault::Status {
            status: 503,
            retry_after_secs: None,
        },
    ));
    assert_eq!(
        get_job(&sim, &c, &tok, &id).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(get_job(&sim, &c, &tok, &id).await.status(), StatusCode::OK);
    // Media faults apply to result URLs like any media URL.
    let url = original_url(&sim, &c, &tok, &cid, &rid).await;
    sim.inject(FaultRule::once(
        FaultTarget::Media {
            recording_id: Some(rid.clone()),
        },
        Fault::TruncatedBody { after_bytes: 100 },
    ));
    let r = c.get(&url).send().await.unwrap();
    assert!(r.bytes().await.is_err());
}
