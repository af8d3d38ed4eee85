//! Message media upload (request an upload URL, upload with its headers, poll the status),
//! sending messages with media, and web deployment configurations.

mod common;

use common::*;
use genesys_sim::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const CONV: &str = "3f1e0c9a-0000-4000-8000-00000000c0a1";
const COMM: &str = "7b2d4e6f-0000-4000-8000-00000000c0a2";

/// A simulator with one registered messaging conversation, a client and a token.
async fn setup() -> (Simulator, reqwest::Client, String) {
    let sim = sim().await;
    sim.messaging().add_conversation(CONV, COMM);
    let c = client();
    let tok = token(&sim, &c).await;
    (sim, c, tok)
}

fn messages_path(cid: &str, comm: &str) -> String {
    format!("/api/v2/conversations/messages/{cid}/communications/{comm}/messages")
}

async fn api_post(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    c.post(format!("{}{path}", sim.base_url()))
        .bearer_auth(tok)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// `POST .../media/uploads` for `bytes` as `name` (200 expected); the `MessageMediaUploadData`.
async fn request_upload(
    sim: &Simulator,
    c: &reqwest::Client,
    tok: &str,
    name: &str,
    bytes: &[u8],
) -> Value {
    let r = api_post(
        sim,
        c,
        tok,
        &format!("{}/media/uploads", messages_path(CONV, COMM)),
        json!({"fileName": name, "contentLengthBytes": bytes.len(), "contentMd5": content_md5(bytes)}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// An upload request to `data.uploadUrl` with every `uploadHeaders` entry except `skip`.
fn upload_req(
    c: &reqwest::Client,
    method: Method,
    data: &Value,
    body: &[u8],
    skip: Option<&str>,
) -> reqwest::RequestBuilder {
    let mut req = c.request(method, data["uploadUrl"].as_str().unwrap());
    for (k, v) in data["uploadHeaders"].as_object().unwrap() {
        if Some(k.as_str()) != skip {
            req = req.header(k, v.as_str().unwrap());
        }
    }
    req.body(body.to_vec())
}

async fn upload(c: &reqwest::Client, data: &Value, body: &[u8]) -> StatusCode {
    upload_req(c, Method::PUT, data, body, None)
        .send()
        .await
        .unwrap()
        .status()
}

async fn media_status(sim: &Simulator, c: &reqwest::Client, tok: &str, id: &str) -> String {
    let r = api_get(
        sim,
        c,
        tok,
        &format!("{}/media/{id}", messages_path(CONV, COMM)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["status"].as_str().unwrap().to_string()
}

async fn send_media(sim: &Simulator, c: &reqwest::Client, tok: &str, ids: &[&str]) -> StatusCode {
    api_post(
        sim,
        c,
        tok,
        &messages_path(CONV, COMM),
        json!({ "mediaIds": ids }),
    )
    .await
    .status()
}

async fn error_body(r: reqwest::Response) -> Value {
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].is_string() && v["code"].is_string() && v["status"].is_u64());
    v
}

#[test]
fn content_md5_is_the_base64_of_the_md5_digest() {
    assert_eq!(content_md5(b"hello world"), "XrY7u+Ae7tCTyyK7j1rNww==");
}

#[tokio::test]
async fn uploaded_media_becomes_valid_and_is_sent_in_a_message() {
    let (sim, c, tok) = setup().await;
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let data = request_upload(&sim, &c, &tok, "report.pdf", &bytes).await;
    let id = data["id"].as_str().unwrap().to_string();
    assert_eq!(data["name"], "report.pdf");
    let url = data["uploadUrl"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/message-media/", sim.base_url())));
    assert!(!url.contains("/api/v2/"));
    assert_eq!(data["uploadHeaders"]["Content-Type"], "application/pdf");
    assert!(data["uploadHeaders"][UPLOAD_TOKEN_HEADER].is_string());
    assert_eq!(
        data["selfUri"],
        format!("{}/media/{id}", messages_path(CONV, COMM))
    );
    assert_eq!(media_status(&sim, &c, &tok, &id).await, "uploading");

    let r = upload_req(&c, Method::PUT, &data, &bytes, None)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().contains_key("etag"));

    let r = api_get(
        &sim,
        &c,
        &tok,
        &format!("{}/media/{id}", messages_path(CONV, COMM)),
    )
    .await;
    let m: Value = r.json().await.unwrap();
    assert_eq!(m["status"], "valid");
    assert_eq!(m["contentLengthBytes"], bytes.len());
    assert_eq!(m["mediaType"], "application/pdf");
    assert_eq!(m["conversationId"], CONV);
    assert_eq!(m["communicationId"], COMM);

    let r = api_post(
        &sim,
        &c,
        &tok,
        &messages_path(CONV, COMM),
        json!({"mediaIds": [id]}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let msg: Value = r.json().await.unwrap();
    assert_eq!(msg["direction"], "outbound");
    assert_eq!(msg["status"], "sent");
    assert_eq!(msg["conversationId"], CONV);
    assert_eq!(
        msg["normalizedMessage"]["content"][0]["attachment"]["id"],
        id
    );

    let sent = sim.messaging().sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].id, msg["id"].as_str().unwrap());
    assert_eq!(sent[0].conversation_id, CONV);
    assert_eq!(sent[0].communication_id, COMM);
    assert_eq!(sent[0].media_ids, vec![id.clone()]);
    assert_eq!(sent[0].text_body, None);

    let rec = sim.messaging().media(&id).unwrap();
    assert_eq!(rec.name, "report.pdf");
    assert_eq!(rec.declared_length, bytes.len() as u64);
    assert_eq!(rec.declared_md5, content_md5(&bytes));
    assert_eq!(rec.received_length, Some(bytes.len() as u64));
    assert_eq!(
        rec.received_sha256.as_deref(),
        Some(hex_sha256(&bytes).as_str())
    );
    assert_eq!(rec.status, MediaStatus::Valid);
    assert_eq!(rec.upload_attempts, 1);
    assert_eq!(rec.upload_method.as_deref(), Some("PUT"));
    assert_eq!(sim.messaging().all_media(), vec![rec]);
    // The upload URL was called without any credential.
    let put = sim
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/message-media/"))
        .unwrap();
    assert_eq!(put.auth, None);
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

#[tokio::test]
async fn bytes_differing_from_the_declared_md5_or_length_end_invalid_and_cannot_be_sent() {
    let (sim, c, tok) = setup().await;
    let data = request_upload(&sim, &c, &tok, "a.png", b"the declared bytes").await;
    let id = data["id"].as_str().unwrap();
    assert_eq!(
        upload(&c, &data, b"the uploaded bytes").await,
        StatusCode::OK
    );
    assert_eq!(media_status(&sim, &c, &tok, id).await, "invalid");
    assert_eq!(
        sim.messaging().media(id).unwrap().status,
        MediaStatus::Invalid
    );
    let r = api_post(
        &sim,
        &c,
        &tok,
        &messages_path(CONV, COMM),
        json!({ "mediaIds": [id] }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(error_body(r).await["message"]
        .as_str()
        .unwrap()
        .contains("invalid"));

    let data = request_upload(&sim, &c, &tok, "b.png", b"twelve bytes").await;
    assert_eq!(
        upload(&c, &data, b"twelve bytes and more").await,
        StatusCode::OK
    );
    let id = data["id"].as_str().unwrap();
    assert_eq!(media_status(&sim, &c, &tok, id).await, "invalid");
    assert!(sim.messaging().sent_messages().is_empty());
}

#[tokio::test]
async fn upload_missing_any_upload_header_is_refused_403() {
    let (sim, c, tok) = setup().await;
    let data = request_upload(&sim, &c, &tok, "photo.jpg", b"jpeg bytes").await;
    for skip in ["Content-Type", UPLOAD_TOKEN_HEADER] {
        let r = upload_req(&c, Method::PUT, &data, b"jpeg bytes", Some(skip))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "without {skip}");
        assert!(r.text().await.unwrap().contains(skip));
    }
    // A wrong value is as bad as none.
    let r = upload_req(
        &c,
        Method::PUT,
        &data,
        b"jpeg bytes",
        Some(UPLOAD_TOKEN_HEADER),
    )
    .header(UPLOAD_TOKEN_HEADER, "guessed")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let id = data["id"].as_str().unwrap();
    let rec = sim.messaging().media(id).unwrap();
    assert_eq!(rec.upload_attempts, 3);
    assert_eq!(rec.received_length, None);
    assert_eq!(media_status(&sim, &c, &tok, id).await, "uploading");
}

#[tokio::test]
async fn upload_with_the_other_method_is_refused_405_under_each_setting() {
    let (sim, c, tok) = setup().await;
    let data = request_upload(&sim, &c, &tok, "x.txt", b"text").await;
    let id = data["id"].as_str().unwrap();
    let send = |m: Method| upload_req(&c, m, &data, b"text", None).send();

    let r = send(Method::POST).await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "PUT");
    assert_eq!(
        sim.messaging().media(id).unwrap().upload_method.as_deref(),
        Some("POST")
    );

    sim.messaging().set_upload_method(UploadMethod::Post);
    let r = send(Method::PUT).await.unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(media_status(&sim, &c, &tok, id).await, "uploading");
    assert_eq!(send(Method::POST).await.unwrap().status(), StatusCode::OK);
    assert_eq!(media_status(&sim, &c, &tok, id).await, "valid");
    let rec = sim.messaging().media(id).unwrap();
    assert_eq!(rec.upload_attempts, 3);
    assert_eq!(rec.upload_method.as_deref(), Some("POST"));
}

#[tokio::test]
async fn upload_carrying_a_bearer_token_is_refused_400() {
    let (sim, c, tok) = setup().await;
    let data = request_upload(&sim, &c, &tok, "x.txt", b"text").await;
    let r = upload_req(&c, Method::PUT, &data, b"text", None)
        .bearer_auth(&tok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("InvalidArgument"));
    let id = data["id"].as_str().unwrap();
    assert_eq!(media_status(&sim, &c, &tok, id).await, "uploading");
    assert_eq!(sim.messaging().media(id).unwrap().received_length, None);
}

#[tokio::test]
async fn upload_url_with_a_wrong_signature_is_refused_403() {
    let (sim, c, tok) = setup().await;
    let mut data = request_upload(&sim, &c, &tok, "x.txt", b"text").await;
    let url = data["uploadUrl"].as_str().unwrap().to_string();
    let (path, _) = url.split_once('?').unwrap();
    data["uploadUrl"] = json!(format!("{path}?sig=00"));
    assert_eq!(upload(&c, &data, b"text").await, StatusCode::FORBIDDEN);
    data["uploadUrl"] = json!(path);
    assert_eq!(upload(&c, &data, b"text").await, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn media_declared_above_the_size_limit_is_refused_400_naming_the_limit() {
    let (sim, c, tok) = setup().await;
    let path = format!("{}/media/uploads", messages_path(CONV, COMM));
    let r = api_post(
        &sim,
        &c,
        &tok,
        &path,
        json!({"fileName": "big.mp4", "contentLengthBytes": DEFAULT_MEDIA_MAX_BYTES + 1,
            "contentMd5": content_md5(b"")}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e = error_body(r).await;
    assert_eq!(e["code"], "bad.request");
    assert_eq!(e["status"], 400);
    assert!(e["message"]
        .as_str()
        .unwrap()
        .contains(&DEFAULT_MEDIA_MAX_BYTES.to_string()));
    let ok = json!({"fileName": "big.mp4", "contentLengthBytes": DEFAULT_MEDIA_MAX_BYTES,
        "contentMd5": content_md5(b"")});
    assert_eq!(
        api_post(&sim, &c, &tok, &path, ok.clone()).await.status(),
        StatusCode::OK
    );

    sim.messaging().set_media_max_bytes(1000);
    let r = api_post(&sim, &c, &tok, &path, ok).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(error_body(r).await["message"]
        .as_str()
        .unwrap()
        .contains("1000"));
    assert_eq!(sim.messaging().all_media().len(), 1);
}

#[tokio::test]
async fn upload_request_with_missing_or_invalid_fields_is_refused_400() {
    let (sim, c, tok) = setup().await;
    let path = format!("{}/media/uploads", messages_path(CONV, COMM));
    let md5 = content_md5(b"abc");
    for body in [
        json!({"contentLengthBytes": 3, "contentMd5": md5}),
        json!({"fileName": "", "contentLengthBytes": 3, "contentMd5": md5}),
        json!({"fileName": "a.txt", "contentMd5": md5}),
        json!({"fileName": "a.txt", "contentLengthBytes": 0, "contentMd5": md5}),
        json!({"fileName": "a.txt", "contentLengthBytes": -5, "contentMd5": md5}),
        json!({"fileName": "a.txt", "contentLengthBytes": 3}),
        json!({"fileName": "a.txt", "contentLengthBytes": 3, "contentMd5": "not base64!"}),
        // Base64, but of 15 bytes.
        json!({"fileName": "a.txt", "contentLengthBytes": 3, "contentMd5": "AAAAAAAAAAAAAAAAAAAA"}),
        // Hex is not what Content-MD5 carries.
        json!({"fileName": "a.txt", "contentLengthBytes": 3,
            "contentMd5": "900150983cd24fb0d6963f7d28e17f72"}),
        json!("not an object"),
    ] {
        let r = api_post(&sim, &c, &tok, &path, body.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_body(r).await["code"], "bad.request");
    }
    assert!(sim.messaging().all_media().is_empty());
}

#[tokio::test]
async fn status_stays_uploading_for_the_configured_polls_after_the_upload() {
    let (sim, c, tok) = setup().await;
    sim.messaging().set_uploading_polls(2);
    let data = request_upload(&sim, &c, &tok, "clip.wav", b"RIFF....WAVE").await;
    let id = data["id"].as_str().unwrap();
    // Polls before the upload do not count.
    assert_eq!(media_status(&sim, &c, &tok, id).await, "uploading");
    assert_eq!(upload(&c, &data, b"RIFF....WAVE").await, StatusCode::OK);
    assert_eq!(media_status(&sim, &c, &tok, id).await, "uploading");
    // Not sendable while the API still says uploading.
    assert_eq!(
        send_media(&sim, &c, &tok, &[id]).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(media_status(&sim, &c, &tok, id).await, "uploading");
    assert_eq!(media_status(&sim, &c, &tok, id).await, "valid");
    assert_eq!(media_status(&sim, &c, &tok, id).await, "valid");
    assert_eq!(send_media(&sim, &c, &tok, &[id]).await, StatusCode::OK);
}

#[tokio::test]
async fn scan_verdict_switch_makes_intact_uploads_invalid() {
    let (sim, c, tok) = setup().await;
    sim.messaging().set_scan_rejects_uploads(true);
    let data = request_upload(&sim, &c, &tok, "a.zip", b"PK\x03\x04").await;
    let id = data["id"].as_str().unwrap();
    assert_eq!(upload(&c, &data, b"PK\x03\x04").await, StatusCode::OK);
    assert_eq!(media_status(&sim, &c, &tok, id).await, "invalid");
    sim.messaging().set_scan_rejects_uploads(false);
    // A new upload of the same media gets a new verdict.
    assert_eq!(upload(&c, &data, b"PK\x03\x04").await, StatusCode::OK);
    assert_eq!(media_status(&sim, &c, &tok, id).await, "valid");
    assert_eq!(sim.messaging().media(id).unwrap().upload_attempts, 2);
}

#[tokio::test]
async fn chunked_upload_without_content_length_is_refused_411_unless_switched_off() {
    let (sim, c, tok) = setup().await;
    let data = request_upload(&sim, &c, &tok, "a.txt", b"streamed").await;
    let chunked = || {
        let s = chunks(b"streamed".to_vec());
        let mut req = c.put(data["uploadUrl"].as_str().unwrap());
        for (k, v) in data["uploadHeaders"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        req.body(reqwest::Body::wrap_stream(s)).send()
    };
    assert_eq!(
        chunked().await.unwrap().status(),
        StatusCode::LENGTH_REQUIRED
    );
    sim.messaging().set_require_content_length(false);
    assert_eq!(chunked().await.unwrap().status(), StatusCode::OK);
    let id = data["id"].as_str().unwrap();
    assert_eq!(media_status(&sim, &c, &tok, id).await, "valid");
}

/// `b` in 3-byte chunks: a body of unknown length, sent chunked.
fn chunks(b: Vec<u8>) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::iter(b.chunks(3).map(|c| Ok(c.to_vec())).collect::<Vec<_>>())
}

#[tokio::test]
async fn failed_upload_attempts_answer_the_fault_and_a_retry_succeeds() {
    let (sim, c, tok) = setup().await;
    sim.messaging().fail_uploads(1, 503);
    let data = request_upload(&sim, &c, &tok, "a.txt", b"retry me").await;
    assert_eq!(
        upload(&c, &data, b"retry me").await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(upload(&c, &data, b"retry me").await, StatusCode::OK);
    let id = data["id"].as_str().unwrap();
    assert_eq!(media_status(&sim, &c, &tok, id).await, "valid");
    assert_eq!(sim.messaging().media(id).unwrap().upload_attempts, 2);
}

#[tokio::test]
async fn unknown_conversation_or_communication_is_404() {
    let (sim, c, tok) = setup().await;
    let data = request_upload(&sim, &c, &tok, "a.txt", b"abc").await;
    let id = data["id"].as_str().unwrap();
    let upload_body = json!({"fileName": "a.txt", "contentLengthBytes": 3,
        "contentMd5": content_md5(b"abc")});
    for (cid, comm) in [
        ("no-such-conversation", COMM),
        (CONV, "no-such-communication"),
    ] {
        let base = messages_path(cid, comm);
        let r = api_post(
            &sim,
            &c,
            &tok,
            &format!("{base}/media/uploads"),
            upload_body.clone(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(error_body(r).await["code"], "not.found");
        let r = api_get(&sim, &c, &tok, &format!("{base}/media/{id}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = api_post(&sim, &c, &tok, &base, json!({"textBody": "hi"})).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let r = api_get(
        &sim,
        &c,
        &tok,
        &format!("{}/media/no-such-media", messages_path(CONV, COMM)),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // A media of another communication of the same conversation is not this one's.
    sim.messaging()
        .add_conversation(CONV, "other-communication");
    let r = api_get(
        &sim,
        &c,
        &tok,
        &format!("{}/media/{id}", messages_path(CONV, "other-communication")),
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(upload(&c, &data, b"abc").await, StatusCode::OK);
    let r = api_post(
        &sim,
        &c,
        &tok,
        &messages_path(CONV, "other-communication"),
        json!({ "mediaIds": [id] }),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(sim.messaging().sent_messages().is_empty());
}

#[tokio::test]
async fn messaging_endpoints_need_a_bearer_token() {
    let (sim, c, _) = setup().await;
    sim.messaging()
        .set_deployment("dep-1", DeploymentSpec::default());
    for (method, path) in [
        (
            Method::POST,
            format!("{}/media/uploads", messages_path(CONV, COMM)),
        ),
        (
            Method::GET,
            format!("{}/media/m1", messages_path(CONV, COMM)),
        ),
        (Method::POST, messages_path(CONV, COMM)),
        (
            Method::GET,
            "/api/v2/webdeployments/deployments/dep-1/configurations".to_string(),
        ),
    ] {
        let r = c
            .request(method, format!("{}{path}", sim.base_url()))
            .json(&json!({"textBody": "hi"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test]
async fn a_message_has_exactly_one_of_text_media_and_template() {
    let (sim, c, tok) = setup().await;
    let data = request_upload(&sim, &c, &tok, "a.txt", b"abc").await;
    let id = data["id"].as_str().unwrap();
    assert_eq!(upload(&c, &data, b"abc").await, StatusCode::OK);
    let path = messages_path(CONV, COMM);
    for body in [
        json!({}),
        json!({"textBody": "see attached", "mediaIds": [id]}),
        json!({"textBody": "hi", "messagingTemplate": {"responseId": "r1"}}),
        json!({"textBody": ""}),
        json!({"mediaIds": []}),
        json!({"mediaIds": ["no-such-media"]}),
    ] {
        let r = api_post(&sim, &c, &tok, &path, body.clone()).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_body(r).await["code"], "bad.request");
    }
    assert!(sim.messaging().sent_messages().is_empty());

    let r = api_post(&sim, &c, &tok, &path, json!({"textBody": "hello"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["normalizedMessage"]["text"], "hello");
    let r = api_post(
        &sim,
        &c,
        &tok,
        &path,
        json!({"messagingTemplate": {"responseId": "r1"}}),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let sent = sim.messaging().sent_messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].text_body.as_deref(), Some("hello"));
    assert!(sent[0].media_ids.is_empty());
    assert_eq!(
        sent[1].messaging_template,
        Some(json!({"responseId": "r1"}))
    );
}

#[tokio::test]
async fn one_media_per_message_unless_switched() {
    let (sim, c, tok) = setup().await;
    let mut ids = Vec::new();
    for name in ["a.png", "b.png"] {
        let data = request_upload(&sim, &c, &tok, name, name.as_bytes()).await;
        assert_eq!(upload(&c, &data, name.as_bytes()).await, StatusCode::OK);
        ids.push(data["id"].as_str().unwrap().to_string());
    }
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(
        send_media(&sim, &c, &tok, &ids).await,
        StatusCode::BAD_REQUEST
    );
    sim.messaging().set_max_media_per_message(2);
    assert_eq!(send_media(&sim, &c, &tok, &ids).await, StatusCode::OK);
    assert_eq!(sim.messaging().sent_messages()[0].media_ids, ids);
}

#[tokio::test]
async fn deployment_configuration_lists_the_messenger_attachment_settings() {
    let (sim, c, tok) = setup().await;
    sim.messaging().set_deployment(
        "dep-1",
        DeploymentSpec {
            enable_attachments: true,
            file_types: vec!["image/png".into(), "application/pdf".into()],
            max_file_size_kb: Some(10_240),
        },
    );
    sim.messaging()
        .set_deployment("dep-off", DeploymentSpec::default());
    let path = |d: &str| format!("/api/v2/webdeployments/deployments/{d}/configurations");
    let r = api_get(&sim, &c, &tok, &format!("{}?type=Published", path("dep-1"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["deployment"]["id"], "dep-1");
    let cv = &v["configurationVersion"];
    assert!(cv["id"].is_string() && cv["version"].is_string());
    let fu = &cv["messenger"]["fileUpload"];
    assert_eq!(fu["enableAttachments"], true);
    assert_eq!(
        fu["modes"],
        json!([{"fileTypes": ["image/png", "application/pdf"], "maxFileSizeKB": 10240}])
    );

    let v: Value = api_get(&sim, &c, &tok, &path("dep-off"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["configurationVersion"]["messenger"]["fileUpload"],
        json!({"enableAttachments": false, "modes": []})
    );

    let r = api_get(&sim, &c, &tok, &path("no-such-deployment")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(error_body(r).await["code"], "not.found");
}
