//! A whole archive run at TRACE, with the log filter the Lambdas use, and then a search of
//! everything it produced (every log line, audit record, manifest, DLQ message and attribute,
//! result event) for a secret: the Genesys client secret, an access token, a data key (hex or
//! base64), or a signed URL's signature. One test per binary: it installs the global
//! subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use gc_archive::crypto::{CryptoError, DataKey, EncryptedDataKey, EncryptionContext, Keyring};
use gc_archive_it::stack::{LocalStack, StackOptions, PREFIX};
use genesys_sim::{
    Codec, ConversationSpec, Fault, FaultRule, FaultTarget, MediaSource, RecordingSpec,
};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Passes through to the real keyring and remembers every data key it handed out.
struct Recording {
    inner: Arc<dyn Keyring>,
    keys: Mutex<Vec<[u8; 32]>>,
}

#[async_trait]
impl Keyring for Recording {
    async fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), CryptoError> {
        let (key, edks) = self.inner.generate_data_key(ctx).await?;
        self.keys.lock().unwrap().push(*key.as_bytes());
        Ok((key, edks))
    }
    async fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, CryptoError> {
        let key = self.inner.decrypt_data_key(edks, ctx).await?;
        self.keys.lock().unwrap().push(*key.as_bytes());
        Ok(key)
    }
}

fn findings(haystack: &str, secrets: &[(String, String)]) -> Vec<String> {
    secrets
        .iter()
        .filter(|(_, s)| s.len() >= 8 && haystack.contains(s.as_str()))
        .map(|(what, _)| what.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_archive_at_trace_leaks_no_secret_anywhere() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(gc_archive::logging::filter("trace"))
        .with_writer(logs.clone())
        .init();

    let stack = LocalStack::start(StackOptions {
        env: vec![("ARCHIVE_INLINE_MAX_MIB".into(), "1".into())],
        ..StackOptions::default()
    })
    .await
    .unwrap();
    // Result events go to a bus whose rule delivers them to a queue we read.
    let (capture_url, capture_arn) =
        gc_archive_it::stack::create_queue_with(&stack.sqs, "results-capture", &[])
            .await
            .unwrap();
    stack
        .eventbridge
        .create_event_bus()
        .name("results")
        .send()
        .await
        .unwrap();
    stack
        .eventbridge
        .put_rule()
        .name("all-results")
        .event_bus_name("results")
        .event_pattern(r#"{"source":["gc-archive"]}"#)
        .send()
        .await
        .unwrap();
    stack
        .eventbridge
        .put_targets()
        .rule("all-results")
        .event_bus_name("results")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("capture")
                .arn(&capture_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // Small (inline), large (TransferQueue), refused (DLQ with reason), and a poison event.
    let conv = stack.sim.add_conversation(ConversationSpec::default());
    stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::OggOpus)));
    stack.sim.add_recording(
        &conv,
        RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: 3 * 1024 * 1024,
        }),
    );
    let refused = stack
        .sim
        .add_recording(&conv, RecordingSpec::new(MediaSource::Real(Codec::Mp3)));
    stack.sim.inject(FaultRule {
        target: FaultTarget::Media {
            recording_id: Some(refused),
        },
        fault: Fault::Status {
            status: 404,
            retry_after_secs: None,
        },
        skip: 0,
        times: u32::MAX,
    });
    stack
        .publish_conversation_ends(std::slice::from_ref(&conv), "customer.end")
        .await
        .unwrap();
    stack
        .sqs
        .send_message()
        .queue_url(&stack.archive_queue.url)
        .message_body("{\"not\": \"an event\"}")
        .send()
        .await
        .unwrap();

    let mut archive_env = stack.function_env("archive-on-event");
    archive_env.insert("RESULT_EVENT_BUS".into(), "results".into());
    let mut transfer_env = stack.function_env("chunk-recording");
    transfer_env.insert("RESULT_EVENT_BUS".into(), "results".into());
    let mut archive =
        gc_archive::bootstrap::handler_deps("archive-on-event", &archive_env, &stack.sdk)
            .await
            .unwrap();
    let mut transfer =
        gc_archive::bootstrap::handler_deps("chunk-recording", &transfer_env, &stack.sdk)
            .await
            .unwrap();
    let recorder = Arc::new(Recording {
        inner: archive.service.keyring.clone(),
        keys: Mutex::new(Vec::new()),
    });
    archive.service.keyring = recorder.clone();
    transfer.service.keyring = recorder.clone();
    tracing::trace!(target: "gc_archive", "leak test: archiving at trace");
    stack
        .drain(&archive, &transfer, Duration::from_secs(90), |_| {})
        .await
        .unwrap();

    // What must never appear.
    let mut secrets: Vec<(String, String)> = vec![(
        "the Genesys client secret".into(),
        stack.sim.client_secret().to_string(),
    )];
    for t in stack.sim.issued_tokens() {
        secrets.push(("an access token".into(), t));
    }
    let keys = recorder.keys.lock().unwrap().clone();
    assert!(!keys.is_empty(), "the run encrypted something");
    for k in &keys {
        secrets.push(("a data key (hex)".into(), hex::encode(k)));
        secrets.push((
            "a data key (base64)".into(),
            base64::engine::general_purpose::STANDARD.encode(k),
        ));
    }
    let signatures: Vec<String> = stack
        .sim
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/media/"))
        .filter_map(|r| r.query.clone())
        .flat_map(|q| {
            q.split('&')
                .filter_map(|kv| kv.strip_prefix("sig=").map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        !signatures.is_empty(),
        "media was fetched through signed URLs"
    );
    for s in signatures {
        secrets.push(("a signed URL's signature".into(), s));
    }

    // Everything the run produced.
    let log_text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        log_text.contains("leak test: archiving at trace")
            && (log_text.contains("\"level\":\"DEBUG\"")
                || log_text.contains("\"level\":\"TRACE\"")),
        "the capture sees our own trace/debug lines"
    );
    let mut produced = vec![("logs".to_string(), log_text)];
    for key in stack.list_keys(&format!("{PREFIX}/")).await.unwrap() {
        if key.ends_with(".json") {
            let body = stack.get_bytes(&key).await.unwrap();
            produced.push((key, String::from_utf8_lossy(&body).into_owned()));
        }
    }
    for (name, url) in [
        ("archive DLQ", &stack.archive_queue.dlq_url),
        ("transfer DLQ", &stack.transfer_queue.dlq_url),
        ("result events", &capture_url),
    ] {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in out.messages() {
            produced.push((
                format!("{name} body"),
                m.body().unwrap_or_default().to_string(),
            ));
            for (k, v) in m.message_attributes().into_iter().flatten() {
                produced.push((
                    format!("{name} attribute {k}"),
                    v.string_value().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    assert!(
        produced.iter().any(|(n, _)| n.starts_with("result events")),
        "result events were captured"
    );
    assert!(
        produced
            .iter()
            .any(|(n, _)| n.starts_with("archive DLQ attribute")),
        "dead-lettered messages carry their reason"
    );

    // The search itself finds a secret that is there.
    assert_eq!(
        findings(&format!("x{}x", stack.sim.client_secret()), &secrets),
        vec!["the Genesys client secret".to_string()]
    );
    let leaks: Vec<String> = produced
        .iter()
        .flat_map(|(where_, text)| {
            findings(text, &secrets)
                .into_iter()
                .map(move |what| format!("{what} in {where_}"))
        })
        .collect();
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}
