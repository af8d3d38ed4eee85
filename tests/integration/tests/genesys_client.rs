//! The Genesys Cloud HTTP client (`gc_archive::genesys`) against the Genesys Cloud simulator:
//! token caching and refresh, the one-refresh-on-401 rule, retry classification, `Retry-After`
//! and deadlines, rate-limit headers, the model round-trips of every endpoint the archive uses,
//! and that no secret or token ever reaches `Debug` or error output.
//!
//! Every test starts its own simulator on a free loopback port, so tests are independent and
//! each one can read the simulator's request log to count what the client really sent.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use gc_archive::config::{CredentialSource, GenesysConfig, GenesysCredentials, GenesysEndpoints};
use gc_archive::genesys::client::{http_client, MediaQuery, MediaStatus};
use gc_archive::genesys::models::{
    ConversationDetailsQuery, CustomAttributesPatch, CustomAttributesUpdate, FileState, Paging,
};
use gc_archive::genesys::{GenesysClient, GenesysError};
use gc_archive::retry::{RetryPolicy, Retryable};
use gc_archive::{ConversationId, RecordingId};
use genesys_sim::{
    Codec, ConversationSpec, Fault, FaultRule, FaultTarget, MediaSource, ParticipantSpec,
    RateLimit, RecordingSpec, SeedSpec, SimConfig, Simulator,
};
use serde_json::json;
use tokio::time::Instant;

// ---- fixtures ---------------------------------------------------------------------------------

async fn start(cfg: SimConfig) -> Simulator {
    Simulator::start(cfg)
        .await
        .expect("start the Genesys simulator")
}

/// Retries quickly: tests measure behaviour, not the production backoff.
fn fast() -> RetryPolicy {
    RetryPolicy::default().with_base_delay(Duration::from_millis(5))
}

fn credentials(client_id: &str, secret: &str) -> GenesysCredentials {
    GenesysCredentials {
        client_id: client_id.to_string(),
        client_secret: secret.into(),
    }
}

fn client_with(sim: &Simulator, creds: GenesysCredentials, retry: RetryPolicy) -> GenesysClient {
    let endpoints = GenesysEndpoints::single(sim.base_url().parse().expect("simulator base URL"));
    GenesysClient::with_http(
        http_client(Duration::from_secs(10)).expect("http client"),
        &endpoints.api_base,
        &endpoints.login_base,
        creds,
        retry,
    )
}

/// A fresh client (empty token cache) with the simulator's credentials and a fast policy.
fn client(sim: &Simulator) -> GenesysClient {
    client_with(
        sim,
        credentials(sim.client_id(), sim.client_secret()),
        fast(),
    )
}

fn conversation(sim: &Simulator, spec: ConversationSpec) -> ConversationId {
    ConversationId::parse(sim.add_conversation(spec)).expect("simulator conversation id")
}

/// A conversation with one recording.
fn call_with(sim: &Simulator, spec: RecordingSpec) -> (ConversationId, RecordingId) {
    let cid = conversation(sim, ConversationSpec::default());
    let rid = sim.add_recording(cid.as_str(), spec);
    (
        cid,
        RecordingId::parse(rid).expect("simulator recording id"),
    )
}

fn wav() -> RecordingSpec {
    RecordingSpec::new(MediaSource::Real(Codec::WavPcm))
}

fn conv_path(cid: &ConversationId) -> String {
    format!("/api/v2/conversations/{cid}")
}

fn custom_path(cid: &ConversationId) -> String {
    format!("/api/v2/conversations/{cid}/customattributes")
}

fn api_fault(path: &str, fault: Fault, times: u32) -> FaultRule {
    FaultRule {
        target: FaultTarget::Api {
            path_contains: path.to_string(),
        },
        fault,
        skip: 0,
        times,
    }
}

fn status_fault(status: u16, retry_after_secs: Option<u64>) -> Fault {
    Fault::Status {
        status,
        retry_after_secs,
    }
}

/// `POST /oauth/token` requests the simulator received.
fn token_posts(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/oauth/token")
        .count()
}

/// Statuses of every `method path` request the simulator answered, in order.
fn attempts(sim: &Simulator, method: &str, path: &str) -> Vec<u16> {
    sim.requests()
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .map(|r| r.status)
        .collect()
}

fn api_requests(sim: &Simulator) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/"))
        .count()
}

/// The host of an absolute URL, without pulling in a URL crate.
fn host_of(uri: &str) -> &str {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let end = rest.find([':', '/', '?']).unwrap_or(rest.len());
    &rest[..end]
}

// ---- tokens -----------------------------------------------------------------------------------

#[tokio::test]
async fn token_is_reused_across_calls() {
    let sim = start(SimConfig::default()).await;
    let (cid, rid) = call_with(&sim, wav());
    let client = client(&sim);

    client.conversation(&cid).await.expect("conversation");
    client.recording_metadata(&cid).await.expect("metadata");
    client
        .recording_media(&cid, &rid, MediaQuery::Audio("WAV"))
        .await
        .expect("recording");
    client.custom_attributes(&cid).await.expect("attributes");
    client.put_external_tag(&cid, "t-1").await.expect("tag");
    // A clone with a deadline shares the same token cache.
    client
        .with_deadline(Instant::now() + Duration::from_secs(10))
        .conversation(&cid)
        .await
        .expect("conversation via clone");

    assert_eq!(token_posts(&sim), 1, "{:#?}", sim.requests());
    assert_eq!(client.auth().token_requests(), 1);
    let log = sim.requests();
    let token = log.iter().find(|r| r.path == "/oauth/token").unwrap();
    assert_eq!(token.auth.as_deref(), Some("Basic"));
    let api: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/"))
        .collect();
    assert_eq!(api.len(), 6, "{api:#?}");
    assert!(
        api.iter()
            .all(|r| r.auth.as_deref() == Some("Bearer") && (200..300).contains(&r.status)),
        "{api:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_callers_cause_one_token_request() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);

    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = client.clone();
            let cid = cid.clone();
            tokio::spawn(async move { client.conversation(&cid).await })
        })
        .collect();
    for t in tasks {
        let conv = t.await.expect("task").expect("conversation");
        assert_eq!(conv.id, cid.as_str());
    }

    assert_eq!(token_posts(&sim), 1);
    assert_eq!(client.auth().token_requests(), 1);
    assert_eq!(attempts(&sim, "GET", &conv_path(&cid)), vec![200; 10]);
}

#[tokio::test]
async fn expired_token_is_refreshed_before_use() {
    // Tokens live 2 s; the provider refreshes 10 % early, i.e. after 1.8 s.
    let sim = start(SimConfig {
        token_ttl_secs: 2,
        ..Default::default()
    })
    .await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);

    client.conversation(&cid).await.expect("first call");
    let first = client.auth().token(None).await.expect("cached token");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    client.conversation(&cid).await.expect("second call");
    assert_eq!(
        client.auth().token_requests(),
        1,
        "still inside the lifetime"
    );

    // 1.9 s after issue: past the refresh point, not yet past the real expiry.
    tokio::time::sleep(Duration::from_millis(900)).await;
    client.conversation(&cid).await.expect("third call");
    assert_eq!(client.auth().token_requests(), 2);
    assert_eq!(token_posts(&sim), 2);
    let second = client.auth().token(None).await.expect("cached token");
    assert_ne!(first.expose(), second.expose(), "a new token is in use");
    assert!(second.expires_at() > first.expires_at());
    // Refreshed proactively: the API never saw the old token fail.
    assert_eq!(attempts(&sim, "GET", &conv_path(&cid)), vec![200; 3]);
    let log: Vec<_> = sim.requests().into_iter().map(|r| r.path).collect();
    let api = conv_path(&cid);
    let api = api.as_str();
    assert_eq!(log, ["/oauth/token", api, api, "/oauth/token", api]);
}

#[tokio::test]
async fn a_401_triggers_exactly_one_refresh_and_one_retry() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);
    client.conversation(&cid).await.expect("warm-up call");

    sim.revoke_tokens();
    sim.clear_requests();
    let conv = client
        .conversation(&cid)
        .await
        .expect("call after revocation");

    assert_eq!(conv.id, cid.as_str());
    assert_eq!(client.auth().token_requests(), 2);
    let seq: Vec<(String, u16)> = sim
        .requests()
        .into_iter()
        .map(|r| (r.path, r.status))
        .collect();
    assert_eq!(
        seq,
        vec![
            (conv_path(&cid), 401),
            ("/oauth/token".to_string(), 200),
            (conv_path(&cid), 200),
        ]
    );
}

#[tokio::test]
async fn a_persistent_401_fails_after_one_refresh() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    sim.inject(api_fault(
        &conv_path(&cid),
        Fault::UnauthorizedToken,
        u32::MAX,
    ));
    let client = client(&sim);

    let err = client.conversation(&cid).await.expect_err("always 401");

    assert_eq!(err.status(), Some(401), "{err}");
    assert_eq!(err.code(), Some("bad.credentials"));
    assert!(!err.is_transient(), "a 401 after a refresh is permanent");
    assert_eq!(attempts(&sim, "GET", &conv_path(&cid)), vec![401, 401]);
    assert_eq!(client.auth().token_requests(), 2);
    assert_eq!(token_posts(&sim), 2);
}

#[tokio::test]
async fn bad_credentials_give_a_clear_permanent_error() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let wrong_secret = "wrong-secret-7f3a9c01";
    let client = client_with(&sim, credentials(sim.client_id(), wrong_secret), fast());

    let err = client.conversation(&cid).await.expect_err("wrong secret");

    assert!(
        matches!(err, GenesysError::BadCredentials { status: 401 }),
        "{err:?}"
    );
    let msg = err.to_string();
    for hint in ["client id", "secret", "region"] {
        assert!(msg.contains(hint), "{msg:?} should mention {hint:?}");
    }
    assert!(!err.is_transient());
    assert_eq!(token_posts(&sim), 1, "bad credentials are not retried");
    assert_eq!(client.auth().token_requests(), 1);
    assert_eq!(api_requests(&sim), 0, "no API call without a token");
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains(wrong_secret), "{shown}");
}

#[tokio::test]
async fn token_endpoint_outages_are_retried() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    sim.inject(FaultRule {
        target: FaultTarget::Token,
        fault: status_fault(503, None),
        skip: 0,
        times: 2,
    });
    let client = client(&sim);

    client
        .conversation(&cid)
        .await
        .expect("succeeds once the token endpoint recovers");

    assert_eq!(attempts(&sim, "POST", "/oauth/token"), vec![503, 503, 200]);
    assert_eq!(client.auth().token_requests(), 3);
    assert_eq!(attempts(&sim, "GET", &conv_path(&cid)), vec![200]);
}

#[tokio::test]
async fn a_token_endpoint_outage_is_retried_by_one_policy_not_two() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    sim.inject(FaultRule {
        target: FaultTarget::Token,
        fault: status_fault(503, None),
        skip: 0,
        times: u32::MAX,
    });
    let client = client(&sim);

    let err = client.conversation(&cid).await.expect_err("login is down");

    assert!(
        matches!(err, GenesysError::TokenEndpoint { status: 503, .. }),
        "{err:?}"
    );
    assert!(err.is_transient(), "the caller may try again later");
    // The token provider's retries are not multiplied by the API call's retries.
    assert_eq!(token_posts(&sim), 1 + fast().max_retries);
    assert_eq!(
        client.auth().token_requests(),
        1 + fast().max_retries as u64
    );
    assert_eq!(api_requests(&sim), 0);
}

// ---- retries, Retry-After and deadlines -------------------------------------------------------

#[tokio::test]
async fn retry_after_is_honoured() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);
    client.conversation(&cid).await.expect("warm-up (token)");
    sim.inject(api_fault(&conv_path(&cid), status_fault(429, Some(1)), 1));

    let started = Instant::now();
    client.conversation(&cid).await.expect("succeeds after 429");
    let elapsed = started.elapsed();

    assert!(
        elapsed >= Duration::from_millis(990),
        "waited only {elapsed:?} despite Retry-After: 1"
    );
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert_eq!(attempts(&sim, "GET", &conv_path(&cid)), vec![200, 429, 200]);
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_fails_fast() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    sim.inject(api_fault(
        &conv_path(&cid),
        status_fault(429, Some(30)),
        u32::MAX,
    ));
    let client = client(&sim).with_deadline(Instant::now() + Duration::from_secs(2));

    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), client.conversation(&cid))
        .await
        .expect("the client must not sleep 30 s past its deadline");
    let elapsed = started.elapsed();

    let err = result.expect_err("429 until the deadline");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    match &err {
        GenesysError::Api {
            status,
            retry_after,
            ..
        } => {
            assert_eq!(*status, 429);
            assert_eq!(*retry_after, Some(Duration::from_secs(30)));
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert!(err.is_transient(), "the caller may retry later");
    assert_eq!(attempts(&sim, "GET", &conv_path(&cid)), vec![429]);
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let sim = start(SimConfig::default()).await;
    let (cid, rid) = call_with(&sim, wav());
    let client = client(&sim);

    // 503 twice, then OK.
    sim.inject(api_fault(&conv_path(&cid), status_fault(503, None), 2));
    let conv = client
        .conversation(&cid)
        .await
        .expect("succeeds after two 503s");
    assert_eq!(conv.id, cid.as_str());
    assert_eq!(attempts(&sim, "GET", &conv_path(&cid)), vec![503, 503, 200]);

    // 404 from the API itself: one attempt, the simulator's code and message.
    let missing = ConversationId::parse("no-such-conversation").unwrap();
    let err = client.conversation(&missing).await.expect_err("404");
    assert_eq!(err.status(), Some(404));
    assert_eq!(err.code(), Some("not.found"));
    assert!(!err.is_transient());
    match &err {
        GenesysError::Api {
            body,
            correlation_id,
            method,
            path,
            ..
        } => {
            assert_eq!(
                body.message.as_deref(),
                Some("Conversation no-such-conversation not found")
            );
            assert_eq!(*method, "GET");
            assert_eq!(path, &conv_path(&missing));
            assert!(correlation_id.is_some(), "ININ-Correlation-Id is kept");
        }
        other => panic!("expected an API error, got {other:?}"),
    }
    assert!(err.to_string().contains("not.found"), "{err}");
    assert_eq!(attempts(&sim, "GET", &conv_path(&missing)), vec![404]);

    // 400 for a bad request: one attempt.
    let err = client
        .recording_media(&cid, &rid, MediaQuery::Audio("FLAC"))
        .await
        .expect_err("400");
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.code(), Some("bad.request"));
    assert!(err.to_string().contains("FLAC"), "{err}");
    let rec_path = format!("{}/recordings/{rid}", conv_path(&cid));
    assert_eq!(attempts(&sim, "GET", &rec_path), vec![400]);

    // A persistent 503 uses up the policy's retries and returns the last error.
    let metadata_path = format!("{}/recordingmetadata", conv_path(&cid));
    sim.inject(api_fault(&metadata_path, status_fault(503, None), u32::MAX));
    let err = client
        .recording_metadata(&cid)
        .await
        .expect_err("always 503");
    assert_eq!(err.status(), Some(503));
    assert!(err.is_transient());
    assert_eq!(
        attempts(&sim, "GET", &metadata_path).len(),
        1 + fast().max_retries
    );
}

#[tokio::test]
async fn transport_resets_are_retried() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let path = conv_path(&cid);
    let client = client(&sim);

    // Connection reset after the headers and a few body bytes.
    sim.inject(api_fault(&path, Fault::ResetMidBody { after_bytes: 16 }, 1));
    let conv = client
        .conversation(&cid)
        .await
        .expect("retried after reset");
    assert_eq!(conv.id, cid.as_str());
    assert_eq!(attempts(&sim, "GET", &path).len(), 2);

    // Body shorter than its Content-Length.
    sim.inject(api_fault(
        &path,
        Fault::TruncatedBody { after_bytes: 16 },
        1,
    ));
    client
        .conversation(&cid)
        .await
        .expect("retried after truncation");
    assert_eq!(attempts(&sim, "GET", &path).len(), 4);

    // Resets on every attempt: a transient transport error after the last retry.
    sim.inject(api_fault(
        &path,
        Fault::ResetMidBody { after_bytes: 16 },
        u32::MAX,
    ));
    let err = client.conversation(&cid).await.expect_err("always reset");
    assert!(matches!(err, GenesysError::Transport { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        !err.to_string().contains("127.0.0.1"),
        "no URL in errors: {err}"
    );
    assert_eq!(
        attempts(&sim, "GET", &path).len(),
        4 + 1 + fast().max_retries
    );
    assert_eq!(client.auth().token_requests(), 1);
}

// ---- rate limits ------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_headers_are_exposed() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);
    assert_eq!(client.rate_limit(), None, "nothing known before a call");

    client.conversation(&cid).await.expect("call");
    let rl = client.rate_limit().expect("inin-ratelimit-* headers");
    assert!(rl.allowed > 0);
    assert_eq!(
        rl.allowed, 1_000_000,
        "no limit configured: a budget nothing reaches"
    );
    assert_eq!(rl.count, 1);
    assert!(rl.reset <= Duration::from_secs(60));

    // Error responses carry the headers too.
    let missing = ConversationId::parse("missing").unwrap();
    client.conversation(&missing).await.expect_err("404");
    assert_eq!(client.rate_limit().expect("rate limit").count, 2);
    // Clones share the state.
    client.clone().conversation(&cid).await.expect("call");
    assert_eq!(client.rate_limit().expect("rate limit").count, 3);
}

#[tokio::test]
async fn a_client_at_its_limit_waits_for_the_window_instead_of_drawing_a_429() {
    let sim = start(SimConfig {
        rate_limit: Some(RateLimit {
            requests: 3,
            window_secs: 2,
        }),
        ..Default::default()
    })
    .await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);

    for _ in 0..3 {
        client.conversation(&cid).await.expect("within the limit");
    }
    let rl = client.rate_limit().expect("rate limit");
    assert_eq!((rl.count, rl.allowed), (3, 3));

    let started = Instant::now();
    let conv = client
        .conversation(&cid)
        .await
        .expect("sent once the window reset");
    let elapsed = started.elapsed();

    assert_eq!(conv.id, cid.as_str());
    assert!(
        elapsed >= Duration::from_millis(950),
        "did not wait for the window: {elapsed:?}"
    );
    assert_eq!(
        attempts(&sim, "GET", &conv_path(&cid)),
        vec![200, 200, 200, 200],
        "paced by the headers, never refused"
    );
    let rl = client.rate_limit().expect("rate limit");
    assert_eq!((rl.count, rl.allowed), (1, 3), "a new window started");
}

/// Concurrent requests of one process share one budget: a burst four times the limit, from
/// four tasks, is paced across windows and draws no 429 (without pacing, most of it would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_burst_is_paced_under_the_limit() {
    let sim = start(SimConfig {
        rate_limit: Some(RateLimit {
            requests: 10,
            window_secs: 1,
        }),
        ..Default::default()
    })
    .await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);
    // The first response tells the client the budget.
    client.conversation(&cid).await.expect("first");
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, cid) = (client.clone(), cid.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    client.conversation(&cid).await.expect("paced");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let statuses = attempts(&sim, "GET", &conv_path(&cid));
    assert_eq!(statuses.len(), 41, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no request refused: {statuses:?}"
    );
}

#[tokio::test]
async fn the_org_limits_seed_the_pacing_with_the_per_token_limit_when_they_list_it() {
    let limited = |org_limits| SimConfig {
        rate_limit: Some(RateLimit {
            requests: 50,
            window_secs: 10,
        }),
        behaviour: genesys_sim::Behaviour {
            org_limits,
            ..Default::default()
        },
        ..Default::default()
    };
    // The key is UNCONFIRMED: without it, nothing is seeded and the headers pace as always.
    let unlisted = start(limited(genesys_sim::OrgLimits::Unlisted)).await;
    let headers_only = client(&unlisted);
    assert_eq!(headers_only.prime_rate_limit().await, None);
    let cid = conversation(&unlisted, ConversationSpec::default());
    headers_only
        .conversation(&cid)
        .await
        .expect("paced by the headers");

    let sim = start(limited(genesys_sim::OrgLimits::PerTokenPerMinute)).await;
    let client = client(&sim);
    assert_eq!(client.prime_rate_limit().await, Some(300), "50 per 10 s");
    let limits = client.organization_limits("recording").await.unwrap();
    assert!(limits.is_empty(), "{limits:?}");
    // A namespace Genesys does not know is an API error, not an empty answer.
    assert!(client
        .organization_limits("no.such.namespace")
        .await
        .is_err());
    assert_eq!(
        attempts(
            &sim,
            "GET",
            "/api/v2/organizations/limits/namespaces/platform.api"
        ),
        [200]
    );
}

// ---- model round-trips ------------------------------------------------------------------------

#[tokio::test]
async fn recording_metadata_reports_uploading_then_available() {
    let sim = start(SimConfig::default()).await;
    let mut spec = wav();
    spec.unavailable_polls = 2;
    let (cid, rid) = call_with(&sim, spec);
    let client = client(&sim);

    let mut states = Vec::new();
    for _ in 0..3 {
        let list = client.recording_metadata(&cid).await.expect("metadata");
        assert_eq!(list.len(), 1, "{list:?}");
        let m = &list[0];
        assert_eq!(m.id, rid.as_str());
        assert_eq!(m.conversation_id.as_deref(), Some(cid.as_str()));
        assert_eq!(m.media.as_deref(), Some("audio"));
        assert_eq!(m.region.as_deref(), Some("us-east-1"));
        assert!(m.start_time.is_some() && m.end_time.is_some());
        assert!(m
            .self_uri
            .as_deref()
            .is_some_and(|u| u.ends_with(&format!("/recordingmetadata/{rid}"))));
        states.push(m.file_state);
    }
    assert_eq!(
        states,
        vec![
            Some(FileState::Uploading),
            Some(FileState::Uploading),
            Some(FileState::Available)
        ]
    );

    // A conversation without recordings lists none.
    let empty = conversation(&sim, ConversationSpec::default());
    assert!(client
        .recording_metadata(&empty)
        .await
        .expect("metadata")
        .is_empty());
}

#[tokio::test]
async fn recording_media_is_pending_while_transcoding_then_ready() {
    // Whether a 202 has a body is not documented: both shapes are "come back later".
    for body in [
        genesys_sim::AcceptedBody::Empty,
        genesys_sim::AcceptedBody::RecordingJson,
    ] {
        recording_media_is_pending_then_ready_when_202_is(body).await;
    }
}

async fn recording_media_is_pending_then_ready_when_202_is(body: genesys_sim::AcceptedBody) {
    let sim = start(SimConfig {
        behaviour: genesys_sim::Behaviour {
            accepted_body: body,
            ..Default::default()
        },
        ..SimConfig::default()
    })
    .await;
    let mut spec = wav();
    spec.unavailable_polls = 1;
    spec.transcoding_polls = 2;
    let (cid, rid) = call_with(&sim, spec);
    let client = client(&sim);

    let mut pending = Vec::new();
    let rec = loop {
        match client
            .recording_media(&cid, &rid, MediaQuery::Audio("WAV"))
            .await
            .expect("recording")
        {
            MediaStatus::Pending {
                file_state,
                estimated,
            } => pending.push((file_state, estimated)),
            MediaStatus::Ready(rec) => break rec,
            other => panic!("unexpected {other:?}"),
        }
        assert!(pending.len() <= 3, "never ready: {pending:?}");
    };

    let expected = match body {
        genesys_sim::AcceptedBody::RecordingJson => vec![
            (Some(FileState::Uploading), Some(Duration::from_secs(5))),
            (Some(FileState::Available), Some(Duration::from_secs(2))),
            (Some(FileState::Available), Some(Duration::from_secs(2))),
        ],
        genesys_sim::AcceptedBody::Empty => vec![(None, None); 3],
    };
    assert_eq!(pending, expected, "{body:?}");
    let rec_path = format!("{}/recordings/{rid}", conv_path(&cid));
    assert_eq!(
        attempts(&sim, "GET", &rec_path),
        vec![202, 202, 202, 200],
        "202s are answers, not retried errors"
    );
    assert_eq!(rec.id, rid.as_str());
    assert_eq!(rec.file_state, Some(FileState::Available));
    assert_eq!(rec.output_size_in_bytes, sim.media_len(rid.as_str()));
    let media = rec.media();
    assert_eq!(media.len(), 1);
    let uri = media[0].1.expose().to_string();
    assert_eq!(host_of(&uri), "127.0.0.1", "{uri}");
    let debug = format!("{rec:?}");
    assert!(debug.contains("127.0.0.1"), "{debug}");
    assert!(
        !debug.contains("sig="),
        "signed URL query in Debug: {debug}"
    );

    // The URI is a working signed URL, fetched without the bearer token.
    let resp = client.http().get(&uri).send().await.expect("media GET");
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.bytes().await.expect("media body");
    assert_eq!(Some(body.to_vec()), sim.media_bytes(rid.as_str()));
    let media_req = sim
        .requests()
        .into_iter()
        .find(|r| r.path.starts_with("/media/"))
        .expect("media request logged");
    assert_eq!(media_req.auth, None, "the token never goes to a media URL");
}

#[tokio::test]
async fn deleted_or_archived_recordings_are_unavailable() {
    let sim = start(SimConfig::default()).await;
    let client = client(&sim);

    for state in [
        genesys_sim::FileState::Archived,
        genesys_sim::FileState::Error,
    ] {
        let mut spec = wav();
        spec.file_state_override = Some(state);
        let (cid, rid) = call_with(&sim, spec);
        let expected = match state {
            genesys_sim::FileState::Archived => FileState::Archived,
            _ => FileState::Error,
        };
        match client
            .recording_media(&cid, &rid, MediaQuery::Audio("WAV"))
            .await
            .expect("recording")
        {
            MediaStatus::Unavailable { file_state } => {
                assert_eq!(file_state, Some(expected))
            }
            other => panic!("{state:?}: expected Unavailable, got {other:?}"),
        }
        let meta = client.recording_metadata(&cid).await.expect("metadata");
        assert_eq!(meta[0].file_state, Some(expected));
    }

    // Deleted: the metadata says DELETED and the recording GET is a permanent 404, tried once.
    let mut spec = wav();
    spec.file_state_override = Some(genesys_sim::FileState::Deleted);
    let (cid, rid) = call_with(&sim, spec);
    let meta = client.recording_metadata(&cid).await.expect("metadata");
    assert_eq!(meta[0].file_state, Some(FileState::Deleted));
    assert!(meta[0].delete_date.is_some());
    let err = client
        .recording_media(&cid, &rid, MediaQuery::Audio("WAV"))
        .await
        .expect_err("deleted recording");
    assert_eq!(err.status(), Some(404), "{err}");
    assert!(!err.is_transient());
    let rec_path = format!("{}/recordings/{rid}", conv_path(&cid));
    assert_eq!(attempts(&sim, "GET", &rec_path), vec![404]);
}

#[tokio::test]
async fn conversation_has_start_time_and_participants() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(
        &sim,
        ConversationSpec {
            duration_secs: 240,
            external_tag: Some("crm-42".into()),
            participants: vec![
                ParticipantSpec {
                    purpose: "customer".into(),
                    name: Some("Ada Lovelace".into()),
                    user_id: None,
                    queue_id: None,
                    ..Default::default()
                },
                ParticipantSpec {
                    purpose: "agent".into(),
                    name: Some("Grace Hopper".into()),
                    user_id: Some("user-1".into()),
                    queue_id: Some("queue-1".into()),
                    ..Default::default()
                },
            ],
            ..Default::default()
        },
    );
    let client = client(&sim);

    let conv = client.conversation(&cid).await.expect("conversation");

    let summary = sim
        .conversations()
        .into_iter()
        .find(|c| c.id == cid.as_str())
        .expect("summary");
    let start = conv.start_time.expect("startTime");
    let end = conv.end_time.expect("endTime");
    assert_eq!(
        start.timestamp_millis(),
        summary.start_time.timestamp_millis()
    );
    assert_eq!((end - start).num_seconds(), 240);
    assert_eq!(conv.id, cid.as_str());
    assert_eq!(conv.external_tag.as_deref(), Some("crm-42"));
    let people: Vec<_> = conv
        .participants
        .iter()
        .map(|p| {
            (
                p.purpose.as_deref(),
                p.name.as_deref(),
                p.user_id.as_deref(),
                p.queue_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        people,
        vec![
            (Some("customer"), Some("Ada Lovelace"), None, None),
            (
                Some("agent"),
                Some("Grace Hopper"),
                Some("user-1"),
                Some("queue-1")
            ),
        ]
    );
    assert!(conv.participants.iter().all(|p| p.id.is_some()));
    assert_eq!(conv.divisions.len(), 1);
    assert!(conv.divisions[0]
        .division
        .as_ref()
        .is_some_and(|d| d.id.is_some()));
}

#[tokio::test]
async fn external_tag_write_reaches_genesys() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let client = client(&sim);
    assert_eq!(sim.external_tag(cid.as_str()), None);

    let tag = "gc-archive:2026/11/01/conv.wav.enc";
    client.put_external_tag(&cid, tag).await.expect("put tag");
    assert_eq!(sim.external_tag(cid.as_str()).as_deref(), Some(tag));
    let conv = client.conversation(&cid).await.expect("conversation");
    assert_eq!(conv.external_tag.as_deref(), Some(tag));

    // The PUT is idempotent, so a 503 is retried.
    let tags_path = format!("{}/tags", conv_path(&cid));
    sim.inject(api_fault(&tags_path, status_fault(503, None), 1));
    client
        .put_external_tag(&cid, "second")
        .await
        .expect("put tag after 503");
    assert_eq!(sim.external_tag(cid.as_str()).as_deref(), Some("second"));
    assert_eq!(attempts(&sim, "PUT", &tags_path), vec![202, 503, 202]);
}

#[tokio::test]
async fn custom_attributes_put_then_patch_with_version_conflict() {
    let sim = start(SimConfig::default()).await;
    let cid = conversation(&sim, ConversationSpec::default());
    let path = custom_path(&cid);
    let client = client(&sim);
    assert!(client
        .custom_attributes(&cid)
        .await
        .expect("list")
        .is_empty());

    let put = CustomAttributesUpdate {
        id: None,
        schema_id: "archive-schema".into(),
        version: None,
        custom_attributes: [("archiveKey".to_string(), json!("org/2026/conv.enc"))].into(),
    };
    client.put_custom_attributes(&cid, &put).await.expect("put");
    let list = client.custom_attributes(&cid).await.expect("list");
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].version, Some(1));
    assert_eq!(
        list[0].custom_attributes.get("archiveKey"),
        Some(&json!("org/2026/conv.enc"))
    );
    let id = list[0].id.clone().expect("record id");

    let patch = |version: u64, key: &str, value: &str| CustomAttributesPatch {
        id: Some(id.clone()),
        version: Some(version),
        custom_attributes: [(key.to_string(), json!(value))].into(),
    };
    client
        .patch_custom_attributes(&cid, &patch(1, "archiveSha256", "abc123"))
        .await
        .expect("patch at the current version");
    let stored = sim.custom_attributes(cid.as_str()).expect("stored");
    assert_eq!(stored[0]["version"], 2);
    assert_eq!(stored[0]["schemaId"], "archive-schema");
    assert_eq!(
        stored[0]["customAttributes"],
        json!({"archiveKey": "org/2026/conv.enc", "archiveSha256": "abc123"})
    );

    // A stale version: 409, not retried, nothing changed.
    let err = client
        .patch_custom_attributes(&cid, &patch(1, "archiveSha256", "stale"))
        .await
        .expect_err("stale version");
    assert_eq!(err.status(), Some(409), "{err}");
    assert_eq!(err.code(), Some("conflict"));
    assert!(!err.is_transient());
    assert_eq!(attempts(&sim, "PATCH", &path), vec![204, 409]);

    let stale_put = CustomAttributesUpdate {
        id: Some(id.clone()),
        version: Some(1),
        ..put.clone()
    };
    let err = client
        .put_custom_attributes(&cid, &stale_put)
        .await
        .expect_err("stale PUT");
    assert_eq!(err.status(), Some(409));
    assert_eq!(attempts(&sim, "PUT", &path), vec![200, 409]);

    // PATCH is never retried, not even on a transient 503.
    sim.inject(api_fault(&path, status_fault(503, None), 1));
    let err = client
        .patch_custom_attributes(&cid, &patch(2, "archiveSha256", "def456"))
        .await
        .expect_err("503");
    assert_eq!(err.status(), Some(503));
    assert_eq!(attempts(&sim, "PATCH", &path), vec![204, 409, 503]);

    let list = client.custom_attributes(&cid).await.expect("list");
    assert_eq!(list[0].version, Some(2));
    assert_eq!(
        list[0].custom_attributes.get("archiveSha256"),
        Some(&json!("abc123"))
    );
}

#[tokio::test]
async fn analytics_query_pages_through_seeded_conversations() {
    let sim = start(SimConfig::default()).await;
    sim.seed(SeedSpec {
        conversations: 60,
        days: 6,
        rng_seed: 20_261_101,
    });
    let client = client(&sim);
    let all = sim.conversations();
    let latest = all.iter().map(|c| c.start_time).max().expect("seeded");
    let end = latest + Duration::from_secs(1);
    let start = end - Duration::from_secs(3 * 86_400);

    let mut expected: Vec<_> = all
        .iter()
        .filter(|c| c.start_time >= start && c.start_time < end && !c.recordings.is_empty())
        .map(|c| (c.start_time, c.id.clone()))
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    assert!(
        expected.len() > 10,
        "the seed should give several pages, got {}",
        expected.len()
    );
    let outside = all.len() - expected.len();
    assert!(
        outside > 0,
        "some seeded conversations are outside the query"
    );

    let mut seen = Vec::new();
    let mut pages = 0;
    for page_number in 1.. {
        let query = ConversationDetailsQuery::with_recordings(
            start,
            end,
            Paging {
                page_size: 5,
                page_number,
            },
        );
        let page = client
            .conversation_details_query(&query)
            .await
            .expect("query");
        pages += 1;
        assert_eq!(page.total_hits, Some(expected.len() as u64));
        assert!(page.conversations.len() <= 5);
        for c in &page.conversations {
            let s = c.conversation_start.expect("conversationStart");
            assert!(s >= start && s < end, "{c:?} outside the interval");
            assert!(c.conversation_end.is_some_and(|e| e > s));
            assert!(!c.division_ids.is_empty());
        }
        let full = page.conversations.len() == 5;
        seen.extend(page.conversations.into_iter().map(|c| c.conversation_id));
        if !full {
            break;
        }
        assert!(pages < 100, "paging does not end");
    }

    assert_eq!(seen, expected, "pages in order, each conversation once");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len());
    assert_eq!(pages, expected.len() / 5 + 1);

    // Seven days is the maximum interval; eight is a 400, not retried.
    let week = ConversationDetailsQuery::with_recordings(
        end - Duration::from_secs(7 * 86_400),
        end,
        Paging {
            page_size: 100,
            page_number: 1,
        },
    );
    client
        .conversation_details_query(&week)
        .await
        .expect("7-day interval");
    let query = ConversationDetailsQuery::with_recordings(
        end - Duration::from_secs(8 * 86_400),
        end,
        Paging {
            page_size: 5,
            page_number: 1,
        },
    );
    let before = api_requests(&sim);
    let err = client
        .conversation_details_query(&query)
        .await
        .expect_err("8-day interval");
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(err.code(), Some("bad.request"));
    assert!(err.to_string().contains("7 days"), "{err}");
    assert_eq!(api_requests(&sim), before + 1);
}

// ---- secrets ----------------------------------------------------------------------------------

#[tokio::test]
async fn no_secret_or_token_in_debug_output() {
    let secret = "s3cr3t-0f-the-oauth-client-a7c4e1";
    let sim = start(SimConfig {
        client_secret: secret.into(),
        ..Default::default()
    })
    .await;
    let cid = conversation(&sim, ConversationSpec::default());

    // Configuration as production reads it, with the secret given inline.
    let env: HashMap<String, String> = [
        ("GENESYS_API_BASE_URL", sim.base_url()),
        ("GENESYS_CLIENT_ID", sim.client_id().to_string()),
        ("GENESYS_CLIENT_SECRET", secret.to_string()),
        ("GENESYS_ORG_ID", sim.org_id().to_string()),
        ("GENESYS_REQUEST_TIMEOUT_SECS", "10".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut problems = Vec::new();
    let config = GenesysConfig::from_map(&env, &mut problems).expect("config");
    assert!(problems.is_empty(), "{problems:?}");
    let CredentialSource::Inline(creds) = config.credentials.clone() else {
        panic!("inline credentials expected: {:?}", config.credentials);
    };
    let client = GenesysClient::new(&config, creds.clone()).expect("client");

    client.conversation(&cid).await.expect("call");
    let token = client.auth().token(None).await.expect("cached token");
    let token_value = token.expose().to_string();
    assert!(
        token_value.len() >= 16,
        "a real token: {}",
        token_value.len()
    );
    assert_eq!(client.auth().token_requests(), 1, "the cached token");

    // The token endpoint answers raw requests with that kind of token (sanity check of the
    // search strings: a raw token looks like the client's).
    let raw: serde_json::Value = client
        .http()
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth(sim.client_id(), Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .expect("raw token request")
        .json()
        .await
        .expect("token JSON");
    let raw_token = raw["access_token"].as_str().expect("access_token");
    assert_eq!(raw_token.len(), token_value.len());

    let mut texts = vec![
        format!("{client:?}"),
        format!("{:?}", client.auth()),
        format!("{config:?}"),
        format!("{creds:?}"),
        format!("{token:?}"),
    ];
    // Errors of every kind the client produces.
    let missing = ConversationId::parse("missing").unwrap();
    let e404 = client.conversation(&missing).await.expect_err("404");
    sim.inject(api_fault(
        &conv_path(&cid),
        Fault::UnauthorizedToken,
        u32::MAX,
    ));
    let e401 = client.conversation(&cid).await.expect_err("401");
    sim.clear_faults();
    let fast_client = client_with(&sim, creds.clone(), fast());
    sim.inject(api_fault(
        &conv_path(&cid),
        Fault::ResetMidBody { after_bytes: 8 },
        u32::MAX,
    ));
    let transport = fast_client.conversation(&cid).await.expect_err("transport");
    sim.clear_faults();
    let bad = client_with(
        &sim,
        credentials(sim.client_id(), "other-secret-9d2b"),
        fast(),
    );
    let bad_creds = bad.conversation(&cid).await.expect_err("bad credentials");
    for e in [&e404, &e401, &transport, &bad_creds] {
        texts.push(format!("{e} {e:?}"));
    }
    texts.push(format!("{bad:?} {fast_client:?}"));
    let current = client.auth().token(None).await.expect("token");
    let current_value = current.expose().to_string();

    assert!(
        format!("{client:?}").contains(sim.client_id()),
        "useful Debug"
    );
    for text in &texts {
        for needle in [
            secret,
            "other-secret-9d2b",
            token_value.as_str(),
            current_value.as_str(),
            raw_token,
        ] {
            assert!(!text.contains(needle), "{needle:?} leaked into {text}");
        }
    }
}
