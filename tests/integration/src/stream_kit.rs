//! What the event-stream tests share: an ArchiveQueue that records what it was sent, and a
//! simulator with queues whose conversation topics the consumer subscribes to.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use gc_archive::events::ConversationMessage;
use gc_archive::queue::{ArchiveQueue, QueueError};
use gc_archive::stream::StreamSettings;
use genesys_sim::{SimConfig, Simulator};

/// Every conversation message sent, in order (duplicates kept: tests count them).
#[derive(Default)]
pub struct RecordingQueue {
    sent: Mutex<Vec<ConversationMessage>>,
}

impl RecordingQueue {
    /// The conversation ids sent, in order.
    pub fn sent(&self) -> Vec<String> {
        self.messages()
            .iter()
            .map(|m| m.conversation_id.as_str().to_string())
            .collect()
    }

    pub fn messages(&self) -> Vec<ConversationMessage> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl ArchiveQueue for RecordingQueue {
    async fn enqueue_conversation(&self, m: &ConversationMessage) -> Result<(), QueueError> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(m.clone());
        Ok(())
    }
}

/// A simulator whose sockets beat every 100 ms, with `queues` routing queues.
pub async fn simulator(queues: usize) -> (Simulator, Vec<String>) {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    sim.notifications()
        .set_heartbeat(Duration::from_millis(100));
    let ids = (0..queues)
        .map(|i| sim.notifications().add_queue(&format!("queue-{i:03}")))
        .collect();
    (sim, ids)
}

/// Settings for a test: a dead socket is noticed within 600 ms, gaps are filled as soon as
/// they close (the simulator's analytics has no lag), reconnects wait 20–200 ms.
pub fn fast_settings(holder: &str) -> StreamSettings {
    StreamSettings {
        heartbeat_window: Duration::from_millis(600),
        ping_after: Duration::from_millis(250),
        pong_timeout: Duration::from_millis(400),
        gap_margin: Duration::from_secs(1),
        gap_settle: Duration::ZERO,
        gap_lookback: Duration::from_secs(600),
        first_lookback: Duration::ZERO,
        reconnect_base: Duration::from_millis(20),
        reconnect_cap: Duration::from_millis(200),
        breaker_failures: 6,
        short_session: Duration::from_millis(200),
        lease: Duration::from_secs(3),
        flush_every: Duration::from_millis(50),
        journal_every: Duration::from_millis(200),
        holder: holder.to_string(),
        ..StreamSettings::default()
    }
}
