//! upload-proxy end to end: the Genesys Cloud simulator (message media, web deployments),
//! moto's S3, the API as `bootstrap::upload_runtime` builds it, and a client that PUTs
//! parts straight to S3 through the presigned URLs. moto checks no checksum
//! (moto-notes.md), so every integrity refusal here comes from our read-back, not from S3.
//! Each test ends with a delivered attachment or link and a verified object, or a clear
//! error and nothing left in S3.

use anyhow::Result;
use gc_archive_it::upload_kit::{b64_sha256, upload, Misbehave, RigOptions, UploadRig};
use genesys_sim::{DeploymentSpec, MediaStatus, UploadMethod};
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: usize = 1024 * 1024;

fn pdf(len: usize, seed: u8) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let head = b"%PDF-1.7\n";
    let n = head.len().min(len);
    bytes[..n].copy_from_slice(&head[..n]);
    bytes
}

fn sha_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Nothing of a refused or aborted upload is left: no object, no record, no open upload.
async fn assert_nothing_left(rig: &UploadRig) -> Result<()> {
    assert_eq!(rig.attachment_keys().await?, Vec::<String>::new());
    assert_eq!(rig.open_multipart_uploads().await?, 0);
    Ok(())
}

#[tokio::test]
async fn one_byte_is_verified_stored_and_attached_to_the_conversation() -> Result<()> {
    let rig = UploadRig::start().await?;
    let bytes = b"x".to_vec();
    let how = Misbehave {
        file_type: Some("text/plain".into()),
        ..Misbehave::default()
    };
    let up = upload(&rig, "note.txt", &bytes, &how).await?;
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    assert_eq!(up.completed["state"], "delivered");
    assert_eq!(up.completed["sha256Hex"], sha_hex(&bytes));
    assert_eq!(up.completed["delivery"]["kind"], "attachment");
    // Genesys got exactly these bytes, as valid media, in one message.
    let media = rig.stack.sim.messaging().all_media();
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].status, MediaStatus::Valid);
    assert_eq!(
        media[0].received_sha256.as_deref(),
        Some(sha_hex(&bytes).as_str())
    );
    let sent = rig.sent_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].media_ids, vec![media[0].id.clone()]);
    // S3 holds the object and its release record, beside the conversation's recordings.
    assert_eq!(
        rig.object_sha256(&up.upload_id).await,
        Some(sha_hex(&bytes))
    );
    let keys = rig.attachment_keys().await?;
    assert!(keys.iter().any(|k| k.ends_with("/note.txt")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.ends_with(".attachment.json")),
        "{keys:?}"
    );
    assert!(keys
        .iter()
        .all(|k| k.contains(&format!("conversation_id={}/", rig.conversation_id))));
    assert_eq!(rig.open_multipart_uploads().await?, 0);
    // The conversation's archive reference names the folder that holds it.
    let tag = rig
        .stack
        .sim
        .external_tag(&rig.conversation_id)
        .unwrap_or_default();
    assert!(tag.starts_with("s3://gc-archive-demo/recordings/"), "{tag}");
    // And an audit record says so.
    let audit = rig.stack.list_keys("recordings/_audit/").await?;
    assert!(
        audit.iter().any(|k| k.contains("attachment_delivered")),
        "{audit:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_file_of_exactly_one_part_is_one_part() -> Result<()> {
    let rig = UploadRig::start().await?;
    let bytes = pdf(8 * MIB, 1);
    let up = upload(&rig, "exact.pdf", &bytes, &Misbehave::default()).await?;
    assert_eq!(up.created["partCount"], 1);
    assert_eq!(up.created["partSize"], 8 * MIB);
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    assert_eq!(up.completed["delivery"]["kind"], "attachment");
    assert_eq!(
        rig.object_sha256(&up.upload_id).await,
        Some(sha_hex(&bytes))
    );
    Ok(())
}

#[tokio::test]
async fn five_gib_is_planned_and_200_mib_goes_to_the_conversation_as_a_link() -> Result<()> {
    let rig = UploadRig::start().await?;
    // 5 GiB declared: planned within S3's limits, then aborted without a byte sent.
    let (status, big) = rig
        .call(
            "POST",
            "/uploads",
            Some(json!({"fileName": "huge.mp4", "fileType": "video/mp4", "size": 5u64 << 30})),
        )
        .await?;
    assert_eq!(status, 201, "{big}");
    assert_eq!(big["partCount"], 640);
    let id = big["uploadId"].as_str().unwrap_or_default();
    let (status, aborted) = rig.call("DELETE", &format!("/uploads/{id}"), None).await?;
    assert_eq!((status, aborted["state"].as_str()), (200, Some("aborted")));
    assert_nothing_left(&rig).await?;

    // 200 MiB for real: above the attachment limit, so a link in a text message.
    let bytes = pdf(200 * MIB, 2);
    let up = upload(&rig, "recording export.pdf", &bytes, &Misbehave::default()).await?;
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    assert_eq!(up.created["partCount"], 25);
    assert!(up.part_statuses.iter().all(|s| *s == 200));
    assert_eq!(up.completed["delivery"]["kind"], "link");
    assert_eq!(
        rig.object_sha256(&up.upload_id).await,
        Some(sha_hex(&bytes))
    );
    // Read back and hashed, without the MD5 only Genesys' media upload would need.
    let record = rig.upload_record(&up.upload_id).await.unwrap_or_default();
    assert_eq!(record["verified"]["method"], "read");
    assert!(record["verified"]["md5B64"].is_null(), "{record}");
    let sent = rig.sent_messages();
    assert_eq!(sent.len(), 1);
    let text = sent[0].text_body.clone().unwrap_or_default();
    assert!(
        text.contains(&sha_hex(&bytes)) && text.contains("200.0 MiB"),
        "{text}"
    );
    // The link downloads the very bytes.
    let url = text.rsplit(' ').next().unwrap_or_default();
    let got = reqwest::get(url).await?.bytes().await?;
    assert_eq!(sha_hex(&got), sha_hex(&bytes));
    assert!(rig.stack.sim.messaging().all_media().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_part_whose_bytes_do_not_match_its_signed_checksum_is_refused() -> Result<()> {
    let rig = UploadRig::start().await?;
    let bytes = pdf(20 * MIB, 3);
    let how = Misbehave {
        corrupt_parts: vec![2],
        ..Misbehave::default()
    };
    let up = upload(&rig, "tampered.pdf", &bytes, &how).await?;
    // Real S3 refuses the PUT itself (BadDigest); moto takes it, and the read-back catches it.
    assert_eq!(up.complete_status, 422, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "part_checksum_mismatch");
    assert!(
        up.completed["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("part 2"),
        "{}",
        up.completed
    );
    assert_nothing_left(&rig).await?;
    assert!(rig.sent_messages().is_empty());
    // Asking again answers the same refusal.
    let (status, again) = rig
        .call(
            "POST",
            &format!("/uploads/{}/complete", up.upload_id),
            Some(json!({"parts": []})),
        )
        .await?;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (422, Some("part_checksum_mismatch"))
    );
    Ok(())
}

#[tokio::test]
async fn a_wrong_whole_file_hash_is_refused() -> Result<()> {
    let rig = UploadRig::start().await?;
    let bytes = pdf(3 * MIB, 4);
    let how = Misbehave {
        declared_sha256: Some(b64_sha256(b"something else")),
        ..Misbehave::default()
    };
    let up = upload(&rig, "claimed.pdf", &bytes, &how).await?;
    assert_eq!(up.complete_status, 422, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "file_hash_mismatch");
    assert_nothing_left(&rig).await?;
    assert!(rig.sent_messages().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_windows_executable_named_pdf_is_refused() -> Result<()> {
    let rig = UploadRig::start().await?;
    let mut bytes = vec![0u8; 64 * 1024];
    bytes[..2].copy_from_slice(b"MZ");
    let up = upload(&rig, "invoice.pdf", &bytes, &Misbehave::default()).await?;
    assert_eq!(up.complete_status, 415, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "content_mismatch");
    assert!(up.completed["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("Windows executable"));
    assert_nothing_left(&rig).await?;
    Ok(())
}

#[tokio::test]
async fn blocked_extensions_wrong_types_and_oversize_are_refused_before_signing() -> Result<()> {
    let rig = UploadRig::start_with(RigOptions {
        env: vec![
            ("UPLOAD_MAX_MIB", "100".into()),
            ("UPLOAD_DEPLOYMENT_ID", "web-deployment-1".into()),
        ],
        ..RigOptions::default()
    })
    .await?;
    rig.stack.sim.messaging().set_deployment(
        "web-deployment-1",
        DeploymentSpec {
            enable_attachments: true,
            file_types: vec!["application/pdf".into(), "image/*".into()],
            max_file_size_kb: Some(50 * 1024),
        },
    );
    let create = |name: &str, kind: &str, size: u64| json!({"fileName": name, "fileType": kind, "size": size});
    for (body, status, code) in [
        (
            create("setup.exe", "application/pdf", 10),
            400,
            "blocked_extension",
        ),
        (
            create("clip.zip", "application/zip", 10),
            415,
            "type_not_allowed",
        ),
        // The deployment's 50 MiB is stricter than our 100 MiB.
        (
            create("scan.pdf", "application/pdf", 60 << 20),
            413,
            "too_large",
        ),
        (create("scan.pdf", "application/pdf", 0), 400, "empty"),
        (create("../", "application/pdf", 10), 400, "name_invalid"),
    ] {
        let (got, answer) = rig.call("POST", "/uploads", Some(body.clone())).await?;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let (got, answer) = rig
        .call("POST", "/uploads", Some(json!({"fileName": "a.pdf"})))
        .await?;
    assert_eq!(got, 400, "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("fileType"));
    assert_nothing_left(&rig).await?;
    // An image within limits is admitted, with a safe name.
    let (got, answer) = rig
        .call(
            "POST",
            "/uploads",
            Some(create("C:\\photos\\<cat>.png", "image/png", 10)),
        )
        .await?;
    assert_eq!(
        (got, answer["fileName"].as_str()),
        (201, Some("_cat_.png")),
        "{answer}"
    );
    Ok(())
}

#[tokio::test]
async fn a_repeated_complete_or_create_answers_the_same_and_sends_once() -> Result<()> {
    let rig = UploadRig::start().await?;
    let bytes = pdf(MIB, 5);
    let up = upload(&rig, "twice.pdf", &bytes, &Misbehave::default()).await?;
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    let path = format!("/uploads/{}/complete", up.upload_id);
    let (status, again) = rig.call("POST", &path, Some(json!({"parts": []}))).await?;
    assert_eq!(status, 200);
    assert_eq!(again, up.completed);
    assert_eq!(rig.sent_messages().len(), 1);

    let body = json!({"fileName": "k.pdf", "fileType": "application/pdf", "size": 10,
        "idempotencyKey": "retry-me"});
    let (first, a) = rig.call("POST", "/uploads", Some(body.clone())).await?;
    let (second, b) = rig.call("POST", "/uploads", Some(body)).await?;
    assert_eq!((first, second), (201, 200));
    assert_eq!(a["uploadId"], b["uploadId"]);
    assert_eq!(b["replayed"], true);
    let other = json!({"fileName": "other.pdf", "fileType": "application/pdf", "size": 10,
        "idempotencyKey": "retry-me"});
    let (status, c) = rig.call("POST", "/uploads", Some(other)).await?;
    assert_eq!(
        (status, c["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_part_is_resumed_and_an_abort_leaves_nothing() -> Result<()> {
    let rig = UploadRig::start().await?;
    let bytes = pdf(20 * MIB, 6);
    let how = Misbehave {
        skip_parts: vec![2],
        ..Misbehave::default()
    };
    let up = upload(&rig, "resumed.pdf", &bytes, &how).await?;
    assert_eq!(up.complete_status, 409, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "parts_missing");
    let id = up.upload_id.clone();
    let (_, state) = rig.call("GET", &format!("/uploads/{id}"), None).await?;
    let have: Vec<u64> = state["uploadedParts"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["partNumber"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(have, vec![1, 3]);
    // The page would now send part 2 only.
    let part = &bytes[8 * MIB..16 * MIB];
    let (_, signed) = rig
        .call(
            "POST",
            &format!("/uploads/{id}/parts"),
            Some(json!({"parts": [{"partNumber": 2, "sha256": b64_sha256(part)}]})),
        )
        .await?;
    let mut put = rig
        .http
        .put(signed["parts"][0]["url"].as_str().unwrap_or_default())
        .body(part.to_vec());
    for (k, v) in signed["parts"][0]["headers"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        put = put.header(k.as_str(), v.as_str().unwrap_or_default());
    }
    assert_eq!(put.send().await?.status().as_u16(), 200);
    let parts: Vec<_> = (1..=3)
        .map(|n: usize| {
            let end = (n * 8 * MIB).min(bytes.len());
            json!({"partNumber": n, "sha256": b64_sha256(&bytes[(n - 1) * 8 * MIB..end])})
        })
        .collect();
    let (status, done) = rig
        .call(
            "POST",
            &format!("/uploads/{id}/complete"),
            Some(json!({"parts": parts})),
        )
        .await?;
    assert_eq!(status, 200, "{done}");
    assert_eq!(rig.object_sha256(&id).await, Some(sha_hex(&bytes)));
    // A delivered upload cannot be aborted.
    let (status, _) = rig.call("DELETE", &format!("/uploads/{id}"), None).await?;
    assert_eq!(status, 409);

    // An upload aborted half-way leaves nothing.
    let how = Misbehave {
        skip_parts: vec![3],
        ..Misbehave::default()
    };
    let half = upload(&rig, "abandoned.pdf", &pdf(20 * MIB, 7), &how).await?;
    assert_eq!(half.complete_status, 409);
    let (status, aborted) = rig
        .call("DELETE", &format!("/uploads/{}", half.upload_id), None)
        .await?;
    assert_eq!((status, aborted["state"].as_str()), (200, Some("aborted")));
    let keys = rig.attachment_keys().await?;
    assert!(
        keys.iter().all(|k| !k.contains(&half.upload_id)),
        "{keys:?}"
    );
    assert_eq!(rig.open_multipart_uploads().await?, 0);
    let (status, _) = rig
        .call(
            "POST",
            &format!("/uploads/{}/complete", half.upload_id),
            Some(json!({"parts": []})),
        )
        .await?;
    assert_eq!(status, 409);
    Ok(())
}

#[tokio::test]
async fn tickets_are_required_and_bound_to_their_conversation() -> Result<()> {
    let rig = UploadRig::start().await?;
    let body = json!({"fileName": "a.pdf", "fileType": "application/pdf", "size": 10});
    let (status, answer) = rig
        .call_with("POST", "/uploads", Some(body.clone()), None)
        .await?;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = rig
        .call_with("POST", "/uploads", Some(body.clone()), Some("v1.e30.AAAA"))
        .await?;
    assert_eq!(status, 401);
    let expired = rig.ticket_for(&rig.conversation_id, "agent-communication-1", -1);
    let (status, answer) = rig
        .call_with("POST", "/uploads", Some(body.clone()), Some(&expired))
        .await?;
    assert_eq!(status, 401);
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("expired"));
    // Another conversation's ticket cannot see this conversation's upload.
    let (_, created) = rig.call("POST", "/uploads", Some(body)).await?;
    let id = created["uploadId"].as_str().unwrap_or_default();
    let other = rig.ticket_for("another-conversation", "agent-communication-1", 600);
    let (status, _) = rig
        .call_with("GET", &format!("/uploads/{id}"), None, Some(&other))
        .await?;
    assert_eq!(status, 404);
    let (status, _) = rig
        .call_with("DELETE", &format!("/uploads/{id}"), None, Some(&other))
        .await?;
    assert_eq!(status, 404);
    let (status, state) = rig.call("GET", &format!("/uploads/{id}"), None).await?;
    assert_eq!((status, state["state"].as_str()), (200, Some("uploading")));
    // The page is served without a ticket, and carries no secret.
    let page = rig.http.get(&rig.base_url).send().await?;
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.headers()["content-security-policy"]
        .to_str()?
        .contains("default-src 'none'"));
    Ok(())
}

/// The upload method of Genesys' `uploadUrl` is UNCONFIRMED: the client is tested against
/// both, and a mismatch is a clear delivery error, not a lost file.
#[tokio::test]
async fn the_genesys_upload_method_is_configurable_both_ways() -> Result<()> {
    let rig = UploadRig::start().await?;
    rig.stack
        .sim
        .messaging()
        .set_upload_method(UploadMethod::Post);
    let bytes = pdf(MIB, 8);
    let up = upload(&rig, "put.pdf", &bytes, &Misbehave::default()).await?;
    assert_eq!(up.complete_status, 502, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "delivery_failed");
    assert!(rig.sent_messages().is_empty());
    drop(rig);

    let rig = UploadRig::start_with(RigOptions {
        env: vec![("GENESYS_MEDIA_UPLOAD_METHOD", "POST".into())],
        ..RigOptions::default()
    })
    .await?;
    rig.stack
        .sim
        .messaging()
        .set_upload_method(UploadMethod::Post);
    let up = upload(&rig, "post.pdf", &bytes, &Misbehave::default()).await?;
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    assert_eq!(
        rig.stack.sim.messaging().all_media()[0]
            .upload_method
            .as_deref(),
        Some("POST")
    );
    Ok(())
}

#[tokio::test]
async fn genesys_limits_and_verdicts_are_honoured() -> Result<()> {
    let rig = UploadRig::start().await?;
    // Genesys takes less than we would attach: its 400 turns the attachment into a link.
    rig.stack.sim.messaging().set_media_max_bytes(512 * 1024);
    rig.stack.sim.messaging().set_uploading_polls(3);
    let bytes = pdf(MIB, 9);
    let up = upload(&rig, "medium.pdf", &bytes, &Misbehave::default()).await?;
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    assert_eq!(up.completed["delivery"]["kind"], "link");
    assert!(up.completed["delivery"]["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("link"));
    // Small enough: attached after the status polls.
    let small = pdf(100 * 1024, 10);
    let up = upload(&rig, "small.pdf", &small, &Misbehave::default()).await?;
    assert_eq!(
        up.completed["delivery"]["kind"], "attachment",
        "{}",
        up.completed
    );
    // Genesys' own verdict (its scan) refuses the file, and it is removed.
    rig.stack.sim.messaging().set_scan_rejects_uploads(true);
    let up = upload(&rig, "flagged.pdf", &pdf(1000, 11), &Misbehave::default()).await?;
    assert_eq!(up.complete_status, 422, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "genesys_rejected");
    let keys = rig.attachment_keys().await?;
    assert!(keys.iter().all(|k| !k.contains(&up.upload_id)), "{keys:?}");
    Ok(())
}

/// `UPLOAD_VERIFY=s3` trusts S3's part checks only where S3 listed them: moto lists none,
/// so a tampered part is still caught by reading it back.
#[tokio::test]
async fn s3_verify_mode_reads_back_where_the_store_checked_nothing() -> Result<()> {
    let rig = UploadRig::start_with(RigOptions {
        env: vec![("UPLOAD_VERIFY", "s3".into())],
        ..RigOptions::default()
    })
    .await?;
    let bytes = pdf(12 * MIB, 12);
    let how = Misbehave {
        corrupt_parts: vec![1],
        declare_hashes: true,
        ..Misbehave::default()
    };
    let up = upload(&rig, "trust.pdf", &bytes, &how).await?;
    assert_eq!(up.complete_status, 422, "{}", up.completed);
    assert_eq!(up.completed["error"]["code"], "part_checksum_mismatch");
    assert_nothing_left(&rig).await?;
    let how = Misbehave {
        declare_hashes: true,
        ..Misbehave::default()
    };
    let up = upload(&rig, "fine.pdf", &bytes, &how).await?;
    assert_eq!(up.complete_status, 200, "{}", up.completed);
    let record = rig.upload_record(&up.upload_id).await.unwrap_or_default();
    assert_eq!(record["verified"]["method"], "read");
    Ok(())
}

/// The Function URL sample (events/) through the Lambda handler: the event's base64 body,
/// headers and path become the API request, the answer a Function URL response.
#[tokio::test]
async fn the_function_url_sample_creates_an_upload_through_the_handler() -> Result<()> {
    use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
    let rig = UploadRig::start().await?;
    let root = gc_archive_it::venv::workspace_root();
    let mut event: serde_json::Value = serde_json::from_slice(&std::fs::read(
        root.join("events/function-url-create-upload.json"),
    )?)?;
    event["headers"]["x-upload-ticket"] = json!(rig.ticket());
    let event: LambdaFunctionUrlRequest = serde_json::from_value(event)?;
    let env = gc_archive_it::upload_kit::rig_env(&rig.stack, &[]);
    let runtime = gc_archive::bootstrap::upload_runtime(&env, &rig.stack.sdk).await?;
    let response = gc_archive::handlers::upload_proxy::upload_proxy(&runtime, event.clone()).await;
    assert_eq!(response.status_code, 201, "{:?}", response.body);
    let body: serde_json::Value = serde_json::from_str(response.body.as_deref().unwrap_or(""))?;
    assert_eq!(body["fileName"], "quote.pdf");
    assert_eq!(body["partCount"], 3);
    assert_eq!(
        response
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    // The idempotency key header replays it.
    let again = gc_archive::handlers::upload_proxy::upload_proxy(&runtime, event).await;
    assert_eq!(again.status_code, 200);
    let replay: serde_json::Value = serde_json::from_str(again.body.as_deref().unwrap_or(""))?;
    assert_eq!(replay["uploadId"], body["uploadId"]);
    Ok(())
}

/// With custom attributes, each delivered attachment is merged into `archiveAttachments`,
/// beside what the recordings wrote, and a repeat writes nothing.
#[tokio::test]
async fn custom_attributes_list_every_attachment_without_touching_the_recordings() -> Result<()> {
    let rig = UploadRig::start_with(RigOptions {
        env: vec![
            ("ARCHIVE_WRITE_BACK", "custom-attributes".into()),
            (
                "ARCHIVE_CUSTOM_ATTRIBUTES_SCHEMA_ID",
                "gc-archive-schema".into(),
            ),
        ],
        ..RigOptions::default()
    })
    .await?;
    let first = upload(&rig, "one.pdf", &pdf(2000, 13), &Misbehave::default()).await?;
    let second = upload(&rig, "two.pdf", &pdf(3000, 14), &Misbehave::default()).await?;
    assert_eq!((first.complete_status, second.complete_status), (200, 200));
    let attrs = rig
        .stack
        .sim
        .custom_attributes(&rig.conversation_id)
        .unwrap_or_default();
    let listed: serde_json::Value = serde_json::from_str(
        attrs[0]["customAttributes"]["archiveAttachments"]
            .as_str()
            .unwrap_or("[]"),
    )?;
    let ids: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["uploadId"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        ids,
        vec![first.upload_id.as_str(), second.upload_id.as_str()]
    );
    assert_eq!(listed[1]["fileName"], "two.pdf");
    assert_eq!(listed[1]["sha256"], sha_hex(&pdf(3000, 14)), "{listed}");
    assert_eq!(second.completed["delivery"]["writeBack"], "Written");
    Ok(())
}

/// A create that fails after claiming its idempotency key (the conversation is not known
/// yet) is finished by its retry with the same key, not refused as "in progress" forever.
#[tokio::test]
async fn a_create_that_failed_half_way_is_finished_by_its_retry() -> Result<()> {
    let rig = UploadRig::start().await?;
    let later = "c0ffee00-0000-4000-8000-000000000001";
    let ticket = rig.ticket_for(later, "agent-communication-1", 600);
    let body = json!({"fileName": "late.pdf", "fileType": "application/pdf", "size": 10,
        "idempotencyKey": "first-try"});
    let (status, answer) = rig
        .call_with("POST", "/uploads", Some(body.clone()), Some(&ticket))
        .await?;
    assert_eq!(status, 404, "{answer}");
    rig.stack
        .sim
        .add_conversation(genesys_sim::ConversationSpec {
            id: Some(later.into()),
            ..Default::default()
        });
    let (status, created) = rig
        .call_with("POST", "/uploads", Some(body.clone()), Some(&ticket))
        .await?;
    assert_eq!(status, 201, "{created}");
    let (status, again) = rig
        .call_with("POST", "/uploads", Some(body), Some(&ticket))
        .await?;
    assert_eq!((status, &again["uploadId"]), (200, &created["uploadId"]));
    Ok(())
}

/// A mistyped or out-of-range setting stops the function at init, naming the variable,
/// instead of running on a default nobody chose.
#[tokio::test]
async fn bad_numeric_settings_fail_at_init_naming_them() -> Result<()> {
    let rig = UploadRig::start().await?;
    let env = gc_archive_it::upload_kit::rig_env(
        &rig.stack,
        &[
            ("UPLOAD_MAX_MIB", "5GiB".into()),
            ("UPLOAD_LINK_TTL_SECS", "2592000".into()),
        ],
    );
    let error = match gc_archive::bootstrap::upload_runtime(&env, &rig.stack.sdk).await {
        Ok(_) => anyhow::bail!("a runtime was built from bad settings"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("UPLOAD_MAX_MIB \"5GiB\""), "{error}");
    assert!(
        error.contains("UPLOAD_LINK_TTL_SECS \"2592000\""),
        "{error}"
    );
    Ok(())
}
