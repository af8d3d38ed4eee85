//! event-stream against the simulator's Notifications API: sockets killed, stalled, warned
//! with `socket_closing`, channels expired, topics rejected, tokens revoked, invocations
//! handing off. Each burst's enqueued set is compared with the set the simulator generated:
//! nothing missed, nothing twice. The simulator publishes to a channel without a socket into
//! the void (no replay, as documented), and counts what it lost, so a test can tell that the
//! gap fill, not luck, found those conversations.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use gc_archive::genesys::GenesysClient;
use gc_archive::ids::OrgId;
use gc_archive::store::{ArchiveLayout, MemoryStore};
use gc_archive::stream::{run, StreamDeps, StreamError, StreamReport, StreamSettings};
use gc_archive_it::stream_kit::{fast_settings, simulator, RecordingQueue};
use gc_archive_it::transfer_kit::genesys_client;
use genesys_sim::{GeneratorSpec, Simulator};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

struct Harness {
    sim: Simulator,
    queues: Vec<String>,
    genesys: GenesysClient,
    store: MemoryStore,
    layout: ArchiveLayout,
    queue: RecordingQueue,
    org: OrgId,
}

impl Harness {
    async fn start(queues: usize) -> Arc<Harness> {
        let (sim, queues) = simulator(queues).await;
        let genesys = genesys_client(&sim);
        let org = OrgId::parse(sim.org_id()).unwrap();
        Arc::new(Harness {
            sim,
            queues,
            genesys,
            store: MemoryStore::new("archive"),
            layout: ArchiveLayout::new("gc"),
            queue: RecordingQueue::default(),
            org,
        })
    }

    /// Runs a consumer until the token is cancelled or the deadline passes.
    fn consume(
        self: &Arc<Self>,
        settings: StreamSettings,
        stop: CancellationToken,
        deadline: Option<Instant>,
    ) -> JoinHandle<Result<StreamReport, StreamError>> {
        let h = self.clone();
        tokio::spawn(async move {
            let deps = StreamDeps {
                genesys: &h.genesys,
                store: &h.store,
                layout: &h.layout,
                targets: &[],
                queue: &h.queue,
                org: &h.org,
            };
            run(&deps, &settings, stop, deadline).await
        })
    }

    /// [`Harness::consume`] until stopped, once its socket is open.
    async fn running(
        self: &Arc<Self>,
        settings: StreamSettings,
    ) -> (
        CancellationToken,
        JoinHandle<Result<StreamReport, StreamError>>,
    ) {
        let stop = CancellationToken::new();
        let consumer = self.consume(settings, stop.clone(), None);
        self.socket_open().await;
        (stop, consumer)
    }

    /// The stream state object as stored.
    async fn stored_state(&self) -> serde_json::Value {
        let found =
            gc_archive::store::ObjectStore::get(&self.store, &self.layout.stream_state_key())
                .await
                .unwrap()
                .expect("a stream state");
        serde_json::from_slice(&found.body).unwrap()
    }

    fn generate(&self, count: usize, per_second: f64) -> JoinHandle<Vec<String>> {
        self.sim.generate_conversations(GeneratorSpec {
            count,
            per_second,
            queue_ids: self.queues.clone(),
            duration_secs: 90,
            recording_bytes: 2_000,
        })
    }

    async fn until(&self, what: &str, mut done: impl FnMut(&Harness) -> bool) {
        let give_up = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < give_up, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn socket_open(&self) {
        self.until("a socket", |h| h.sim.notifications().open_sockets() == 1)
            .await;
    }

    /// Waits until every id was sent, then a little longer for any duplicate.
    async fn all_sent(&self, ids: &[String]) {
        let want: BTreeSet<&String> = ids.iter().collect();
        self.until("every generated conversation to be enqueued", |h| {
            let sent = h.queue.sent();
            want.iter().all(|id| sent.contains(id))
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Every generated conversation was sent exactly once, and nothing else.
    fn assert_exactly_once(&self, ids: &[String]) {
        let sent = self.queue.sent();
        let unique: BTreeSet<&String> = sent.iter().collect();
        assert_eq!(unique.len(), sent.len(), "a conversation was sent twice");
        assert_eq!(
            unique,
            ids.iter().collect::<BTreeSet<_>>(),
            "the sent set is the generated set"
        );
        assert!(self
            .queue
            .messages()
            .iter()
            .all(|m| m.origin == "stream" && m.conversation_end.is_some()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_killed_mid_burst_loses_nothing_the_gap_is_filled() {
    let h = Harness::start(3).await;
    let (stop, consumer) = h.running(fast_settings("a")).await;
    let burst = h.generate(400, 200.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Killed without a close frame, and the next connects refused for a while.
    h.sim.notifications().refuse_connections(3);
    h.sim.notifications().drop_sockets();
    let ids = burst.await.unwrap();
    h.all_sent(&ids).await;
    stop.cancel();
    let report = consumer.await.unwrap().unwrap();
    let lost = h.sim.notifications().stats().lost;
    assert!(lost > 0, "events were published into the void while down");
    h.assert_exactly_once(&ids);
    assert!(report.gap_filled > 0, "{report:?}");
    assert!(
        report.gap_filled as u64 <= lost / 2 + 1,
        "only what the socket missed came from the gap fill: filled {} of {} lost events (2 per conversation)",
        report.gap_filled,
        lost
    );
    assert_eq!(report.reconnects.get("disconnect"), Some(&1), "{report:?}");
    assert_eq!(report.connect_failures, 3);
    assert!(report.gaps.iter().any(|g| g.cause.name() == "disconnect"));
    assert!(report.lag_p99_ms.is_some());
    assert_eq!(report.stopped, "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_socket_is_noticed_by_the_heartbeat_watchdog() {
    let h = Harness::start(2).await;
    let (stop, consumer) = h.running(fast_settings("a")).await;
    let burst = h.generate(200, 100.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Half-open: the connection stays up, nothing comes through, pings go unanswered.
    h.sim.notifications().stall_sockets();
    tokio::time::sleep(Duration::from_millis(900)).await;
    h.sim.notifications().resume_sockets();
    let ids = burst.await.unwrap();
    h.all_sent(&ids).await;
    stop.cancel();
    let report = consumer.await.unwrap().unwrap();
    assert!(h.sim.notifications().stats().lost > 0);
    h.assert_exactly_once(&ids);
    assert!(report.heartbeat_misses >= 1, "{report:?}");
    assert!(report.gap_filled > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_closing_opens_the_next_socket_before_the_old_one_goes() {
    let h = Harness::start(2).await;
    let (stop, consumer) = h.running(fast_settings("a")).await;
    let connections = h.sim.notifications().stats().connections;
    let burst = h.generate(300, 150.0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    h.sim
        .notifications()
        .socket_closing(Duration::from_millis(500));
    let ids = burst.await.unwrap();
    h.all_sent(&ids).await;
    stop.cancel();
    let report = consumer.await.unwrap().unwrap();
    h.assert_exactly_once(&ids);
    let stats = h.sim.notifications().stats();
    assert_eq!(stats.lost, 0, "a socket was open all along");
    assert_eq!(stats.connections, connections + 1, "one new socket");
    assert_eq!(stats.kicked, 1, "the new socket replaced the old one");
    assert_eq!(report.reconnects.get("socketClosing"), Some(&1));
    let closing: Vec<_> = report
        .gaps
        .iter()
        .filter(|g| g.cause.name() == "socketClosing")
        .collect();
    assert_eq!(closing.len(), 1);
    assert!(
        closing[0].seconds() < 0.5,
        "no gap longer than the overlap: {closing:?}"
    );
    assert_eq!(report.reconnects.get("disconnect"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_channel_is_recreated_and_resubscribed() {
    let h = Harness::start(3).await;
    let (stop, consumer) = h.running(fast_settings("a")).await;
    let first = h.sim.notifications().channels();
    assert_eq!(first.len(), 1);
    let topics = h.sim.notifications().topics(&first[0]);
    assert_eq!(topics.len(), 3);
    assert!(topics
        .iter()
        .all(|t| t.starts_with("v2.routing.queues.") && t.ends_with(".conversations")));
    let burst = h.generate(200, 100.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.sim.notifications().expire_channel(&first[0]));
    let ids = burst.await.unwrap();
    h.all_sent(&ids).await;
    stop.cancel();
    let report = consumer.await.unwrap().unwrap();
    h.assert_exactly_once(&ids);
    let now = h.sim.notifications().channels();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], first[0]);
    assert_eq!(h.sim.notifications().topics(&now[0]), topics);
    assert_eq!(report.channels_created, 2);
    assert!(report
        .gaps
        .iter()
        .any(|g| g.cause.name() == "channelRecreated"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_topic_stops_start_up_naming_it_and_the_permission() {
    let h = Harness::start(2).await;
    h.sim.notifications().reject_topics(
        &format!("v2.routing.queues.{}", h.queues[1]),
        &["conversation:communication:view"],
    );
    let err = h
        .consume(fast_settings("a"), CancellationToken::new(), None)
        .await
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StreamError::TopicsRejected(ref t) if t.len() == 1));
    assert!(
        text.contains(&format!("v2.routing.queues.{}.conversations", h.queues[1])),
        "{text}"
    );
    assert!(text.contains("conversation:communication:view"), "{text}");
    assert!(!text.contains(&h.queues[0]), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_topics_than_a_channel_takes_are_refused_before_anything_is_created() {
    let h = Harness::start(1_001).await;
    let err = h
        .consume(fast_settings("a"), CancellationToken::new(), None)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, StreamError::TooManyTopics { count: 1_001 }),
        "{err}"
    );
    assert!(err.to_string().contains("at most 1000"));
    assert_eq!(h.sim.notifications().stats().channels_created, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_tokens_are_refreshed_and_the_socket_reopened() {
    let h = Harness::start(2).await;
    let (stop, consumer) = h.running(fast_settings("a")).await;
    let tokens_before = h.sim.issued_tokens().len();
    let burst = h.generate(200, 100.0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.sim.revoke_tokens();
    // The socket stays down for the reconnect waits of the refused attempts (full jitter
    // from 20 ms, doubling): with two, both waits fell under one event's 10 ms often enough
    // (about 1 run in 8) that nothing was lost and the test proved no gap fill; four stay
    // below fast_settings' breaker (6) and make that about 1 in 1,000.
    h.sim.notifications().refuse_connections(4);
    h.sim.notifications().drop_sockets();
    let ids = burst.await.unwrap();
    h.all_sent(&ids).await;
    stop.cancel();
    let report = consumer.await.unwrap().unwrap();
    h.assert_exactly_once(&ids);
    assert!(h.sim.notifications().stats().lost > 0);
    assert_eq!(tokens_before, 1);
    assert_eq!(
        h.sim.issued_tokens().len(),
        1,
        "a new token replaced the revoked one"
    );
    assert_eq!(report.channels_created, 1, "the channel outlived the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocations_hand_off_and_the_gap_between_them_is_filled() {
    let h = Harness::start(2).await;
    let first = h.consume(
        fast_settings("invocation-1"),
        CancellationToken::new(),
        Some(Instant::now() + Duration::from_millis(1_500)),
    );
    h.socket_open().await;
    // A second consumer while the first holds the lease is refused.
    let busy = h
        .consume(fast_settings("intruder"), CancellationToken::new(), None)
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(busy, StreamError::Busy { ref holder, .. } if holder == "invocation-1"));
    let burst = h.generate(300, 100.0);
    let report1 = first.await.unwrap().unwrap();
    assert_eq!(report1.stopped, "deadline");
    // Between the invocations nothing is receiving.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stop = CancellationToken::new();
    let second = h.consume(fast_settings("invocation-2"), stop.clone(), None);
    let ids = burst.await.unwrap();
    h.all_sent(&ids).await;
    stop.cancel();
    let report2 = second.await.unwrap().unwrap();
    h.assert_exactly_once(&ids);
    assert!(h.sim.notifications().stats().lost > 0);
    assert_eq!(report2.channels_created, 0, "the second reused the channel");
    assert!(report2.gaps.iter().any(|g| g.cause.name() == "handoff"));
    assert!(report2.gap_filled > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_refusing_opens_the_circuit_within_the_backoff_bounds() {
    let h = Harness::start(1).await;
    h.sim.notifications().refuse_connections(1_000);
    let settings = fast_settings("a");
    let err = h
        .consume(settings.clone(), CancellationToken::new(), None)
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, StreamError::CircuitOpen { attempts: 6, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 503"), "{err}");
    // Nothing is left holding the channel: the next consumer may start at once.
    h.sim.notifications().refuse_connections(0);
    let (stop, next) = h.running(fast_settings("b")).await;
    stop.cancel();
    next.await.unwrap().unwrap();
}

/// A consumer that dies (no hand-off: its lease stays, its last journal write may be behind)
/// loses nothing: the next one waits for the lease to run out, records the whole interval
/// since the dead one was last known receiving as a gap, and fills it. What the dead one sent
/// after its last journal write may be sent again (archive-on-event skips those), nothing
/// else is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_dies_mid_burst_is_replaced_and_nothing_is_lost() {
    let h = Harness::start(2).await;
    let dead = h.consume(fast_settings("dies"), CancellationToken::new(), None);
    h.socket_open().await;
    let burst = h.generate(300, 100.0);
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    dead.abort();
    let _ = dead.await;
    let sent_by_the_dead = h.queue.sent().len();
    assert!(sent_by_the_dead > 0);
    // The successor is refused while the dead one's lease (3 s) lasts, then takes over.
    let stop = CancellationToken::new();
    let started = Instant::now();
    let successor = loop {
        let attempt = h.consume(fast_settings("successor"), stop.clone(), None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        if !attempt.is_finished() {
            break attempt;
        }
        match attempt.await.unwrap() {
            Err(StreamError::Busy { holder, .. }) => assert_eq!(holder, "dies"),
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the lease never ran out"
        );
    };
    let ids = burst.await.unwrap();
    h.all_sent(&ids).await;
    stop.cancel();
    let report = successor.await.unwrap().unwrap();
    let sent = h.queue.sent();
    let unique: BTreeSet<&String> = sent.iter().collect();
    assert_eq!(unique, ids.iter().collect::<BTreeSet<_>>(), "none missed");
    let again = sent.len() - unique.len();
    assert!(
        again <= sent_by_the_dead,
        "only what the dead one sent can be sent again: {again} of {sent_by_the_dead}"
    );
    assert!(report.gaps.iter().any(|g| g.cause.name() == "startup"));
    assert!(report.gap_filled > 0, "{report:?}");
}

/// Something else connecting to our channel (its id is the capability) kicks our socket: one
/// socket per channel. If it keeps doing so, our sessions keep ending right after they start,
/// and the circuit opens naming the likely cause instead of fighting it for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_that_keeps_kicking_ours_is_reported() {
    let h = Harness::start(1).await;
    let consumer = h.consume(fast_settings("ours"), CancellationToken::new(), None);
    h.socket_open().await;
    let state = h.stored_state().await;
    let uri = state["channel"]["connectUri"].as_str().unwrap().to_string();
    let intruder = tokio::spawn(async move {
        loop {
            if let Ok((mut ws, _)) = tokio_tungstenite::connect_async(uri.as_str()).await {
                use futures::StreamExt;
                while let Some(Ok(_)) = ws.next().await {}
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let outcome = tokio::time::timeout(Duration::from_secs(20), consumer)
        .await
        .expect("the consumer gave up")
        .unwrap();
    intruder.abort();
    let err = outcome.unwrap_err();
    assert!(matches!(err, StreamError::CircuitOpen { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("another connection to the channel"),
        "{err}"
    );
    assert!(h.sim.notifications().stats().kicked >= 6);
}

/// Another consumer's lease in the state (it took over after ours was presumed dead) makes
/// ours stop at its next reconnect instead of kicking the new holder off the channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_was_taken_over_stops() {
    use gc_archive::store::ObjectStore;
    let h = Harness::start(1).await;
    let consumer = h.consume(fast_settings("old"), CancellationToken::new(), None);
    h.socket_open().await;
    let key = h.layout.stream_state_key();
    let found = h.store.get(&key).await.unwrap().unwrap();
    let mut state: serde_json::Value = serde_json::from_slice(&found.body).unwrap();
    state["lease"] = serde_json::json!({"holder": "new", "until": (chrono::Utc::now() + chrono::Duration::minutes(5)).to_rfc3339()});
    h.store
        .put_if_match(
            &key,
            serde_json::to_vec(&state).unwrap().into(),
            "application/json",
            &found.etag,
        )
        .await
        .unwrap();
    h.sim.notifications().drop_sockets();
    let err = tokio::time::timeout(Duration::from_secs(20), consumer)
        .await
        .expect("the consumer stopped")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, StreamError::Superseded { ref holder } if holder == "new"),
        "{err}"
    );
    let after: serde_json::Value =
        serde_json::from_slice(&h.store.get(&key).await.unwrap().unwrap().body).unwrap();
    assert_eq!(
        after["lease"]["holder"], "new",
        "the new holder's lease is left alone"
    );
}

/// Detail-event topics (per conversation, as `STREAM_EXTRA_TOPICS`) are ends by definition;
/// their bodies carry no start, so the conversation's start is read for the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detail_end_topics_are_delivered_too() {
    let h = Harness::start(0).await;
    let cid = h
        .sim
        .add_conversation(genesys_sim::ConversationSpec::default());
    let topic = format!("v2.detail.events.conversation.{cid}.customer.end");
    let settings = StreamSettings {
        queue_topics: false,
        extra_topics: vec![
            topic.clone(),
            format!("v2.detail.events.conversation.{cid}.customer.start"),
        ],
        ..fast_settings("a")
    };
    let stop = CancellationToken::new();
    let consumer = h.consume(settings, stop.clone(), None);
    h.socket_open().await;
    let end = chrono::Utc::now();
    h.sim.notifications().publish(
        &topic,
        serde_json::json!({"eventTime": end.timestamp_millis(), "conversationId": cid,
            "participantId": "p", "sessionId": "s", "mediaType": "VOICE", "direction": "INBOUND",
            "disconnectType": "CLIENT"}),
    );
    h.sim.notifications().publish(
        &format!("v2.detail.events.conversation.{cid}.customer.start"),
        serde_json::json!({"conversationId": cid}),
    );
    h.until("the end to be sent", |h| h.queue.sent().len() == 1)
        .await;
    stop.cancel();
    let report = consumer.await.unwrap().unwrap();
    assert_eq!(h.queue.sent(), vec![cid.clone()]);
    assert_eq!(report.conversation_ends, 1);
    assert_eq!(report.ignored, 1, "customer.start is counted and dropped");
    let start = h
        .sim
        .conversations()
        .into_iter()
        .find(|c| c.id == cid)
        .unwrap()
        .start_time;
    let journal = h.layout.enqueue_journal_key(start);
    assert!(
        gc_archive::store::ObjectStore::get(&h.store, &journal)
            .await
            .unwrap()
            .is_some(),
        "journaled under the conversation's start hour"
    );
}

/// A run that ends while no socket is open (its circuit opened) hands off where receiving
/// really ended, not at the time it stopped: the next run's gap covers the whole outage and
/// its fill finds every conversation that ended during it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_ends_while_down_leaves_the_outage_to_the_next_gap() {
    let h = Harness::start(1).await;
    let first = h.consume(fast_settings("a"), CancellationToken::new(), None);
    h.socket_open().await;
    let dropped_at = chrono::Utc::now();
    h.sim.notifications().refuse_connections(1_000);
    h.sim.notifications().drop_sockets();
    let during = h.generate(40, 100.0).await.unwrap();
    let err = first.await.unwrap().unwrap_err();
    assert!(matches!(err, StreamError::CircuitOpen { .. }), "{err}");
    assert!(h.queue.sent().is_empty(), "nothing reached the socket");
    let state = h.stored_state().await;
    let until: chrono::DateTime<chrono::Utc> =
        state["receivingUntil"].as_str().unwrap().parse().unwrap();
    assert!(
        until <= dropped_at,
        "receiving_until {until} is not after the drop {dropped_at}"
    );
    h.sim.notifications().refuse_connections(0);
    let stop = CancellationToken::new();
    let second = h.consume(fast_settings("a"), stop.clone(), None);
    h.all_sent(&during).await;
    stop.cancel();
    second.await.unwrap().unwrap();
    h.assert_exactly_once(&during);
}
