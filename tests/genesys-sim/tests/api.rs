//! Platform API behaviour: OAuth, auth/rate limits, recordings, custom attributes, tags,
//! analytics, API faults, request log and admin endpoints.

mod common;

use common::*;
use genesys_sim::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn token_good_and_bad_credentials() {
    let sim = sim_with(SimConfig {
        token_ttl_secs: 1234,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let url = format!("{}/oauth/token", sim.base_url());
    let r = c
        .post(&url)
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 1234);
    assert!(v["access_token"].as_str().unwrap().len() >= 32);

    let r = c
        .post(&url)
        .basic_auth("sim-client", Some("wrong"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");
    assert!(v["description"].is_string());

    let r = c
        .post(&url)
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    for body in [vec![("grant_type", "password")], vec![("scope", "x")]] {
        let r = c
            .post(&url)
            .basic_auth("sim-client", Some("sim-secret"))
            .form(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body:?}");
    }
}

#[tokio::test]
async fn api_requires_valid_token_and_sends_ratelimit_headers() {
    let sim = sim().await;
    let c = client();
    let cid = sim.add_conversation(ConversationSpec::default());
    let path = format!("{}/api/v2/conversations/{cid}", sim.base_url());

    let r = c.get(&path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("inin-ratelimit-count"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "bad.credentials");
    assert_eq!(v["message"], "Invalid login credentials.");
    assert_eq!(v["status"], 401);

    let r = c.get(&path).bearer_auth("garbage").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    let tok = token(&sim, &c).await;
    let r = c.get(&path).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for h in [
        "inin-ratelimit-count",
        "inin-ratelimit-allowed",
        "inin-ratelimit-reset",
        "inin-correlation-id",
    ] {
        assert!(r.headers().contains_key(h), "missing {h}");
    }
    assert_eq!(r.headers()["inin-ratelimit-count"], "1");

    sim.revoke_tokens();
    let r = c.get(&path).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let tok2 = token(&sim, &c).await;
    let r = c.get(&path).bearer_auth(&tok2).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn token_expires_after_ttl() {
    let sim = sim_with(SimConfig {
        token_ttl_secs: 1,
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let cid = sim.add_conversation(ConversationSpec::default());
    let tok = token(&sim, &c).await;
    let p = format!("/api/v2/conversations/{cid}");
    assert_eq!(api_get(&sim, &c, &tok, &p).await.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        api_get(&sim, &c, &tok, &p).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = sim_with(SimConfig {
        rate_limit: Some(RateLimit {
            requests: 3,
            window_secs: 60,
        }),
        ..SimConfig::default()
    })
    .await;
    let c = client();
    let cid = sim.add_conversation(ConversationSpec::default());
    let tok = token(&sim, &c).await;
    let p = format!("/api/v2/conversations/{cid}");
    for i in 1..=3 {
        let r = api_get(&sim, &c, &tok, &p).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["inin-ratelimit-allowed"], "3");
        assert_eq!(r.headers()["inin-ratelimit-count"], i.to_string().as_str());
    }
    let r = api_get(&sim, &c, &tok, &p).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let ra: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&ra));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "too.many.requests.retry.after");
    assert_eq!(v["status"], 429);
    // A new token has its own budget.
    let tok2 = token(&sim, &c).await;
    assert_eq!(api_get(&sim, &c, &tok2, &p).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn conversation_shape_tags_and_404() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let cid = sim.add_conversation(ConversationSpec::default());
    let r = api_get(&sim, &c, &tok, &format!("/api/v2/conversations/{cid}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], cid.as_str());
    assert!(v["startTime"].as_str().unwrap().ends_with('Z'));
    let purposes: Vec<&str> = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["customer", "acd", "agent"]);
    assert!(v["divisions"][0]["division"]["id"].is_string());
    assert!(v.get("externalTag").is_none());

    let r = c
        .put(format!(
            "{}/api/v2/conversations/{cid}/tags",
            sim.base_url()
        ))
        .bearer_auth(&tok)
        .json(&json!({"externalTag": "archive:s3://b/k"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(sim.external_tag(&cid).as_deref(), Some("archive:s3://b/k"));
    let v: Value = api_get(&sim, &c, &tok, &format!("/api/v2/conversations/{cid}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["externalTag"], "archive:s3://b/k");

    let r = c
        .put(format!(
            "{}/api/v2/conversations/{cid}/tags",
            sim.base_url()
        ))
        .bearer_auth(&tok)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = api_get(&sim, &c, &tok, "/api/v2/conversations/nope").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], 404);
    assert!(v["contextId"].is_string());
    let r = api_get(&sim, &c, &tok, "/api/v2/not/an/endpoint").await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metadata_uploading_then_available() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::OggOpus));
    spec.unavailable_polls = 2;
    let (cid, rid) = conv_with(&sim, spec);
    let list = format!("/api/v2/conversations/{cid}/recordingmetadata");
    let one = format!("{list}/{rid}");
    let states = [
        api_get(&sim, &c, &tok, &list)
            .await
            .json::<Value>()
            .await
            .unwrap()[0]["fileState"]
            .clone(),
        api_get(&sim, &c, &tok, &one)
            .await
            .json::<Value>()
            .await
            .unwrap()["fileState"]
            .clone(),
        api_get(&sim, &c, &tok, &list)
            .await
            .json::<Value>()
            .await
            .unwrap()[0]["fileState"]
            .clone(),
    ];
    assert_eq!(
        states,
        [json!("UPLOADING"), json!("UPLOADING"), json!("AVAILABLE")]
    );
    let v: Value = api_get(&sim, &c, &tok, &one).await.json().await.unwrap();
    assert_eq!(v["id"], rid.as_str());
    assert_eq!(v["conversationId"], cid.as_str());
    assert_eq!(v["media"], "audio");
    assert_eq!(v["region"], "us-east-1");
    assert!(v["startTime"].is_string() && v["endTime"].is_string());
    assert!(v.get("mediaUris").is_none());

    // Never available.
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::Mp3));
    spec.unavailable_polls = u32::MAX;
    let (cid2, rid2) = conv_with(&sim, spec);
    for _ in 0..5 {
        let v: Value = api_get(
            &sim,
            &c,
            &tok,
            &format!("/api/v2/conversations/{cid2}/recordingmetadata/{rid2}"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v["fileState"], "UPLOADING");
    }
    let r = api_get(
        &sim,
        &c,
        &tok,
        &format!("/api/v2/conversations/{cid2}/recordings/{rid2}?formatId=NONE"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // Recording of another conversation is 404.
    let r = api_get(
        &sim,
        &c,
        &tok,
        &format!("/api/v2/conversations/{cid}/recordingmetadata/{rid2}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn recording_202_while_transcoding_then_200_with_media_uris() {
    let sim = sim_behaving(Behaviour {
        accepted_body: AcceptedBody::RecordingJson,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::WavUlaw));
    spec.transcoding_polls = 2;
    let (cid, rid) = conv_with(&sim, spec);
    let p = format!("/api/v2/conversations/{cid}/recordings/{rid}?formatId=WAV_ULAW");
    for _ in 0..2 {
        let r = api_get(&sim, &c, &tok, &p).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let v: Value = r.json().await.unwrap();
        assert!(v.get("mediaUris").is_none());
        assert!(v["estimatedTranscodeTimeMs"].as_u64().unwrap() > 0);
        assert_eq!(v["fileState"], "AVAILABLE");
    }
    let r = api_get(&sim, &c, &tok, &p).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let uri = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
    assert!(uri.starts_with(&sim.base_url()) && uri.contains("sig=") && uri.contains("expires="));
    assert_eq!(v["outputSizeInBytes"], sim.media_len(&rid).unwrap());
    assert_eq!(v["outputDurationMs"], 4000);
    assert_eq!(v["fileState"], "AVAILABLE");
    assert_eq!(v["conversationId"], cid.as_str());
}

#[tokio::test]
async fn format_id_rules_and_fixed_states() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let base = format!("/api/v2/conversations/{cid}/recordings/{rid}");
    for (q, want, served) in [
        ("?formatId=NONE", 200, None),
        ("", 200, Some("WEBM")),
        ("?formatId=WAV", 200, Some("WAV")),
        ("?formatId=mp3", 200, Some("MP3")),
        ("?formatId=FLAC", 400, None),
        ("?mediaFormats=WAV&mediaFormats=MP3", 200, Some("WAV")),
        ("?mediaFormats=OGG_VORBIS,MP3", 200, Some("OGG_VORBIS")),
        ("?formatId=WAV&mediaFormats=OGG_OPUS", 200, Some("OGG_OPUS")),
        ("?mediaFormats=NONE", 400, None),
        ("?mediaFormats=FLAC&formatId=WAV", 400, None),
        ("?chatFormatId=PDF", 400, None),
    ] {
        let r = api_get(&sim, &c, &tok, &format!("{base}{q}")).await;
        assert_eq!(r.status().as_u16(), want, "{q}");
        let v: Value = r.json().await.unwrap();
        if want == 400 {
            assert_eq!(v["code"], "bad.request");
            continue;
        }
        match served {
            None => assert!(v.get("mediaUris").is_none(), "{q}: {v}"),
            Some(f) => {
                let url = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
                let body = c.get(url).send().await.unwrap().bytes().await.unwrap();
                assert_eq!(sniff(&body), f, "{q}");
                assert_eq!(v["outputSizeInBytes"], body.len(), "{q}");
            }
        }
    }
    // A lying declared codec: the declared format serves the stored bytes.
    let mut spec = RecordingSpec::new(MediaSource::Real(Codec::WavPcm));
    spec.declared_codec = Some(Codec::Mp3);
    let (cid2, rid2) = conv_with(&sim, spec);
    let r = api_get(
        &sim,
        &c,
        &tok,
        &format!("/api/v2/conversations/{cid2}/recordings/{rid2}?formatId=MP3"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    let url = v["mediaUris"]["S"]["mediaUri"].as_str().unwrap();
    let body = c.get(url).send().await.unwrap().bytes().await.unwrap();
    assert!(body.starts_with(b"RIFF"));
    assert!(v["name"].as_str().unwrap().ends_with(".mp3"));

    for (state, status) in [
        (FileState::Deleted, 404),
        (FileState::Archived, 200),
        (FileState::Error, 200),
    ] {
        let mut spec = RecordingSpec::new(MediaSource::Real(Codec::OggVorbis));
        spec.file_state_override = Some(state);
        let (cid, rid) = conv_with(&sim, spec);
        let r = api_get(
            &sim,
            &c,
            &tok,
            &format!("/api/v2/conversations/{cid}/recordings/{rid}?formatId=NONE"),
        )
        .await;
        assert_eq!(r.status().as_u16(), status, "{state:?}");
        if status == 200 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["fileState"], state.as_str());
            assert!(v.get("mediaUris").is_none());
        }
        let v: Value = api_get(
            &sim,
            &c,
            &tok,
            &format!("/api/v2/conversations/{cid}/recordingmetadata"),
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(v[0]["fileState"], state.as_str());
        if state == FileState::Archived {
            assert!(v[0]["archiveDate"].is_string());
        }
    }
}

#[tokio::test]
async fn custom_attributes_versioning() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let cid = sim.add_conversation(ConversationSpec::default());
    let url = format!(
        "{}/api/v2/conversations/{cid}/customattributes",
        sim.base_url()
    );

    // Create requires schemaId.
    let r = c
        .put(&url)
        .bearer_auth(&tok)
        .json(&json!({"customAttributes": {"a": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = c
        .put(&url)
        .bearer_auth(&tok)
        .json(&json!({"id": "archive", "schemaId": "s1", "divisions": [], "customAttributes": {"s3Key": "k1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"id": "archive"}));

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
    assert_eq!(v["results"][0]["version"], 1);
    assert_eq!(v["results"][0]["schema"]["id"], "s1");
    assert_eq!(v["results"][0]["customAttributes"]["s3Key"], "k1");

    // Replace with the right version → 2.
    let r = c
        .put(&url)
        .bearer_auth(&tok)
        .json(&json!({"id": "archive", "schemaId": "s1", "version": 1, "customAttributes": {"s3Key": "k2"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Stale version → 409.
    let r = c
        .put(&url)
        .bearer_auth(&tok)
        .json(&json!({"id": "archive", "schemaId": "s1", "version": 1, "customAttributes": {"s3Key": "k3"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "conflict");
    assert_eq!(e["status"], 409);

    // PATCH merges.
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .json(&json!({"id": "archive", "version": 2, "customAttributes": {"sha256": "ab"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .json(&json!({"id": "archive", "version": 2, "customAttributes": {"x": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = c
        .patch(&url)
        .bearer_auth(&tok)
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let v: Value = api_get(
        &sim,
        &c,
        &tok,
        &format!("/api/v2/conversations/{cid}/customattributes/archive"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["version"], 3);
    assert_eq!(
        v["customAttributes"],
        json!({"s3Key": "k2", "sha256": "ab"})
    );
    let lib = sim.custom_attributes(&cid).unwrap();
    assert_eq!(lib[0]["version"], 3);
    assert_eq!(lib[0]["customAttributes"]["sha256"], "ab");
}

fn iso(d: chrono::DateTime<chrono::Utc>) -> String {
    d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[tokio::test]
async fn analytics_query_paging_filter_and_limits() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let now = chrono::Utc::now();
    let mut with_rec = Vec::new();
    for i in 0..25 {
        let cid = sim.add_conversation(ConversationSpec {
            start: Some(now - chrono::Duration::hours(i + 1)),
            ..Default::default()
        });
        if i % 5 != 0 {
            sim.add_recording(&cid, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
            with_rec.push(cid);
        }
    }
    // Outside the interval.
    sim.add_conversation(ConversationSpec {
        start: Some(now - chrono::Duration::days(9)),
        ..Default::default()
    });
    let url = format!(
        "{}/api/v2/analytics/conversations/details/query",
        sim.base_url()
    );
    let interval = format!("{}/{}", iso(now - chrono::Duration::days(7)), iso(now));
    let q = |page: u64, size: u64, rec: bool| {
        let mut b = json!({
            "interval": interval,
            "order": "asc",
            "orderBy": "conversationStart",
            "paging": {"pageSize": size, "pageNumber": page},
        });
        if rec {
            b["segmentFilters"] = json!([{"type": "and", "predicates": [
                {"type": "dimension", "dimension": "recording", "value": "true"}]}]);
        }
        b
    };
    let mut seen = Vec::new();
    for page in 1..=3 {
        let v: Value = c
            .post(&url)
            .bearer_auth(&tok)
            .json(&q(page, 10, false))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["totalHits"], 25);
        let convs = v["conversations"].as_array().unwrap();
        assert_eq!(convs.len(), if page < 3 { 10 } else { 5 });
        for cv in convs {
            seen.push(cv["conversationStart"].as_str().unwrap().to_string());
            assert!(cv["conversationId"].is_string());
            assert_eq!(cv["participants"][0]["sessions"][0]["mediaType"], "voice");
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "ascending conversationStart");
    // Past the end: no `conversations` key.
    let v: Value = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&q(4, 10, false))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v.get("conversations").is_none());
    assert_eq!(v["totalHits"], 25);

    // Recording filter.
    let v: Value = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&q(1, 100, true))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["totalHits"], 20);
    let ids: Vec<&str> = v["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["conversationId"].as_str().unwrap())
        .collect();
    for id in &ids {
        assert!(with_rec.iter().any(|w| w == id));
    }
    assert_eq!(
        v["conversations"][0]["participants"][0]["sessions"][0]["recording"],
        true
    );
    // The brief's flat predicate form is honoured too.
    let mut flat = q(1, 100, false);
    flat["segmentFilters"] =
        json!([{"type": "dimension", "dimension": "recording", "value": "true"}]);
    let v: Value = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&flat)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["totalHits"], 20);

    // Limits.
    let mut long = q(1, 10, false);
    long["interval"] = json!(format!(
        "{}/{}",
        iso(now - chrono::Duration::days(8)),
        iso(now)
    ));
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&q(1, 101, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(&url)
        .bearer_auth(&tok)
        .json(&json!({"interval": "yesterday"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn api_faults_status_skip_times_unauthorized_and_transcoding() {
    let sim = sim().await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::Webm)));
    let meta = format!("/api/v2/conversations/{cid}/recordingmetadata");
    sim.inject(FaultRule {
        target: FaultTarget::Api {
            path_contains: "recordingmetadata".into(),
        },
        fault: Fault::Status {
            status: 503,
            retry_after_secs: Some(4),
        },
        skip: 1,
        times: 2,
    });
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = api_get(&sim, &c, &tok, &meta).await;
        statuses.push(r.status().as_u16());
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.headers()["retry-after"], "4");
            assert!(r.headers().contains_key("inin-correlation-id"));
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["status"], 503);
        }
        // Other paths are unaffected and do not count towards skip/times.
        let other = api_get(&sim, &c, &tok, &format!("/api/v2/conversations/{cid}")).await;
        assert_eq!(other.status(), StatusCode::OK);
    }
    assert_eq!(statuses, [200, 503, 503, 200]);
    let log: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("recordingmetadata"))
        .map(|r| r.status)
        .collect();
    assert_eq!(log, [200, 503, 503, 200]);

    sim.inject(FaultRule::once(
        FaultTarget::Api {
            path_contains: String::new(),
        },
        Fault::UnauthorizedToken,
    ));
    let r = api_get(&sim, &c, &tok, &meta).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad.credentials");
    assert_eq!(
        api_get(&sim, &c, &tok, &meta).await.status(),
        StatusCode::OK
    );

    let rec = format!("/api/v2/conversations/{cid}/recordings/{rid}?formatId=NONE");
    sim.inject(FaultRule::once(
        FaultTarget::Api {
            path_contains: "/recordings/".into(),
        },
        Fault::Transcoding202,
    ));
    let r = api_get(&sim, &c, &tok, &rec).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "202 body is empty by default"
    );
    assert_eq!(api_get(&sim, &c, &tok, &rec).await.status(), StatusCode::OK);

    sim.inject(FaultRule::once(
        FaultTarget::Api {
            path_contains: "/recordings/".into(),
        },
        Fault::WrongContentType("text/html".into()),
    ));
    let r = api_get(&sim, &c, &tok, &rec).await;
    assert_eq!(r.headers()["content-type"], "text/html");

    sim.inject(FaultRule::once(
        FaultTarget::Api {
            path_contains: "recordingmetadata".into(),
        },
        Fault::TruncatedBody { after_bytes: 10 },
    ));
    let r = api_get(&sim, &c, &tok, &meta).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.json::<Value>().await.is_err());

    // Token endpoint faults.
    sim.inject(FaultRule::once(
        FaultTarget::Token,
        Fault::Status {
            status: 429,
            retry_after_secs: Some(2),
        },
    ));
    let r = c
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth(sim.client_id(), Some(sim.client_secret()))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "2");
    token(&sim, &c).await;
    sim.clear_faults();
}

#[tokio::test]
async fn request_log_records_range_and_auth_scheme_only() {
    let sim = sim_behaving(Behaviour {
        range: RangeSupport::Honoured,
        ..Default::default()
    })
    .await;
    let c = client();
    let tok = token(&sim, &c).await;
    let (cid, rid) = conv_with(&sim, RecordingSpec::new(MediaSource::Real(Codec::WavPcm)));
    let url = media_url(&sim, &c, &tok, &cid, &rid).await;
    sim.clear_requests();
    let r = c
        .get(&url)
        .header("Range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    // A leaky client sending the bearer token to the signed URL is still served, but logged.
    let r = c.get(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "GET");
    assert!(log[0].path.starts_with("/media/"));
    assert!(log[0].query.as_deref().unwrap().contains("sig="));
    assert_eq!(log[0].range.as_deref(), Some("bytes=0-99"));
    assert_eq!(log[0].auth, None);
    assert_eq!(log[0].status, 206);
    assert_eq!(log[1].auth.as_deref(), Some("Bearer"));
    assert_eq!(log[1].range, None);
    let dump = format!("{log:?}");
    assert!(!dump.contains(&tok), "token must never be logged");

    token(&sim, &c).await;
    let last = sim.requests().pop().unwrap();
    assert_eq!(last.path, "/oauth/token");
    assert_eq!(last.auth.as_deref(), Some("Basic"));
}

#[tokio::test]
async fn admin_http_endpoints() {
    let sim = sim().await;
    let c = client();
    let base = sim.base_url();
    let r = c
        .post(format!("{base}/__sim/conversations"))
        .json(&json!({"conversations": 6, "days": 2, "rng_seed": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Vec<ConversationSummary> = r.json().await.unwrap();
    assert_eq!(created.len(), 6);
    let all: Vec<ConversationSummary> = c
        .get(format!("{base}/__sim/conversations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all, sim.conversations());
    assert_eq!(all.len(), 6);
    let two_days = chrono::Duration::days(2) + chrono::Duration::minutes(1);
    assert!(all
        .iter()
        .all(|c| chrono::Utc::now() - c.start_time <= two_days));

    let rule = FaultRule::once(
        FaultTarget::Api {
            path_contains: "/conversations/".into(),
        },
        Fault::Status {
            status: 500,
            retry_after_secs: None,
        },
    );
    let r = c
        .post(format!("{base}/__sim/faults"))
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let r = c
        .post(format!("{base}/__sim/faults"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let tok = token(&sim, &c).await;
    let p = format!("/api/v2/conversations/{}", all[0].id);
    assert_eq!(
        api_get(&sim, &c, &tok, &p).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(api_get(&sim, &c, &tok, &p).await.status(), StatusCode::OK);
    sim.inject(rule);
    let r = c
        .delete(format!("{base}/__sim/faults"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(api_get(&sim, &c, &tok, &p).await.status(), StatusCode::OK);

    let log: Vec<RequestRecord> = c
        .get(format!("{base}/__sim/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(log.iter().all(|r| !r.path.starts_with("/__sim")));
    assert_eq!(log.len(), 4);
}

#[tokio::test]
async fn seeded_store_is_deterministic_and_mixed() {
    let seed = SeedSpec {
        conversations: 40,
        days: 3,
        rng_seed: 7,
    };
    let a = sim_with(SimConfig {
        seed: Some(seed),
        ..SimConfig::default()
    })
    .await;
    let b = sim_with(SimConfig {
        seed: Some(seed),
        ..SimConfig::default()
    })
    .await;
    let (ca, cb) = (a.conversations(), b.conversations());
    assert_eq!(ca.len(), 40);
    let ids = |v: &[ConversationSummary]| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&ca), ids(&cb));
    let recs: Vec<_> = ca.iter().flat_map(|c| c.recordings.clone()).collect();
    assert!(ca.iter().any(|c| c.recordings.is_empty()));
    assert!(recs.iter().any(|r| r.size_bytes > 150_000));
    let codecs: std::collections::HashSet<_> = recs.iter().map(|r| r.codec).collect();
    assert!(codecs.len() >= 4, "{codecs:?}");
    for r in &recs {
        assert_eq!(a.media_bytes(&r.id).unwrap(), b.media_bytes(&r.id).unwrap());
    }
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let c = client();
    let sim = sim().await;
    let base = sim.base_url();
    assert!(c
        .get(format!("{base}/__sim/conversations"))
        .send()
        .await
        .is_ok());
    sim.shutdown().await;
    assert!(c
        .get(format!("{base}/__sim/conversations"))
        .send()
        .await
        .is_err());

    let sim = sim_with(SimConfig::default()).await;
    let base = sim.base_url();
    drop(sim);
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(reqwest::Client::new()
        .get(format!("{base}/__sim/conversations"))
        .send()
        .await
        .is_err());
}
