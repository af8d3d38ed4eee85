//! Enqueueing each conversation once, across runs and crashes.
//!
//! The enqueue journal (`{prefix}/_state/enqueued/YYYY/MM/DD/HH.json`, one file per UTC hour
//! of conversation start) lists the conversations the sweep and the backfills have put on the
//! ArchiveQueue. Messages go out in SQS batches of ten, and the journal is written after each
//! batch, before the next one is sent, so a run that dies anywhere and is run again sends each
//! conversation once — except when it dies in the instant between SQS accepting a batch and the
//! journal write, which can send that one batch (at most ten conversations) twice; archive-on-
//! event archives each recording once whatever it receives. A conversation already archived
//! (its hour folder lists a manifest for it) is not sent at all.
//!
//! event-stream sends far more often (every conversation end, within a second), so its
//! [`Offers`] write the journal at most every `journal_every` instead of after each batch: a
//! crash can then send the conversations of that interval again (duplicates that archive-on-
//! event skips, never a loss).
//!
//! The sweep and a backfill may write the same hour: a conditional write that loses
//! (`If-Match`) reads the file again and merges, since both only ever add ids.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::events::{ConversationMessage, CONVERSATION_MESSAGE_VERSION};
use crate::ids::{ConversationId, OrgId};
use crate::queue::{ArchiveQueue, MAX_BATCH};
use crate::store::{ArchiveLayout, ArchiveLocation, Conditional, ObjectKey, ObjectStore};

use super::SweepError;

pub const JOURNAL_VERSION: u32 = 1;
/// Conditional writes that lose to another writer before the journal gives up.
const MERGE_ATTEMPTS: u32 = 5;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JournalFile {
    version: u32,
    conversations: BTreeSet<String>,
}

/// One hour's journal as read, plus what this run added and has not written yet.
struct Hour {
    key: ObjectKey,
    ids: BTreeSet<String>,
    etag: Option<String>,
    unsaved: bool,
}

/// What the journal and the archive say about one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Enqueued by this or an earlier run, not archived yet.
    Enqueued,
    Archived,
    /// Neither: it is to be sent.
    New,
}

/// The journal and the archive's manifests, read an hour at a time and kept for the run.
pub struct Journal<'a> {
    store: &'a dyn ObjectStore,
    layout: &'a ArchiveLayout,
    /// Routing targets besides `store`: their hour folders are listed for manifests too.
    targets: &'a [ArchiveLocation],
    org: &'a OrgId,
    hours: HashMap<i64, Hour>,
    /// Per hour: the conversations whose folders hold a manifest.
    archived: HashMap<i64, HashSet<String>>,
}

fn hour_of(start: DateTime<Utc>) -> i64 {
    start.timestamp().div_euclid(3600)
}

/// The conversation id of an archive key `.../conversation_id={cid}/{stem}.manifest.json`.
fn manifest_conversation(key: &str) -> Option<&str> {
    if !key.ends_with(".manifest.json") {
        return None;
    }
    let (_, rest) = key.rsplit_once("/conversation_id=")?;
    rest.split_once('/').map(|(cid, _)| cid)
}

impl<'a> Journal<'a> {
    pub fn new(store: &'a dyn ObjectStore, layout: &'a ArchiveLayout, org: &'a OrgId) -> Self {
        Journal {
            store,
            layout,
            targets: &[],
            org,
            hours: HashMap::new(),
            archived: HashMap::new(),
        }
    }

    pub async fn settled(
        &mut self,
        conversation: &ConversationId,
        start: DateTime<Utc>,
    ) -> Result<Settled, SweepError> {
        let hour = hour_of(start);
        if !self.archived.contains_key(&hour) {
            let mut ids = HashSet::new();
            let places = std::iter::once((self.store, self.layout))
                .chain(self.targets.iter().map(|t| (t.store.as_ref(), &t.layout)));
            for (store, layout) in places {
                let folder = layout.hour_folder(self.org, start);
                ids.extend(
                    store
                        .list(folder.as_str())
                        .await?
                        .iter()
                        .filter_map(|k| manifest_conversation(k.as_str()).map(str::to_string)),
                );
            }
            self.archived.insert(hour, ids);
        }
        if self
            .archived
            .get(&hour)
            .is_some_and(|ids| ids.contains(conversation.as_str()))
        {
            return Ok(Settled::Archived);
        }
        if self.hour(start).await?.ids.contains(conversation.as_str()) {
            return Ok(Settled::Enqueued);
        }
        Ok(Settled::New)
    }

    async fn hour(&mut self, start: DateTime<Utc>) -> Result<&mut Hour, SweepError> {
        use std::collections::hash_map::Entry;
        let store = self.store;
        match self.hours.entry(hour_of(start)) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(v) => {
                let key = self.layout.enqueue_journal_key(start);
                let (ids, etag) = Journal::read_with(store, &key).await?;
                Ok(v.insert(Hour {
                    key,
                    ids,
                    etag,
                    unsaved: false,
                }))
            }
        }
    }

    /// Notes that `conversation` was accepted by the queue; written by [`Journal::flush`].
    pub async fn record(
        &mut self,
        conversation: &ConversationId,
        start: DateTime<Utc>,
    ) -> Result<(), SweepError> {
        let hour = self.hour(start).await?;
        hour.unsaved |= hour.ids.insert(conversation.to_string());
        Ok(())
    }

    /// Writes every hour with unsaved ids, merging with whatever another writer added.
    pub async fn flush(&mut self) -> Result<(), SweepError> {
        let store = self.store;
        for hour in self.hours.values_mut().filter(|h| h.unsaved) {
            let mut attempts = 0;
            loop {
                let body = super::state_body(
                    &hour.key,
                    &JournalFile {
                        version: JOURNAL_VERSION,
                        conversations: hour.ids.clone(),
                    },
                )?;
                let written = store
                    .put_conditionally(&hour.key, body, "application/json", hour.etag.as_deref())
                    .await?;
                match written {
                    Conditional::Written(etag) => {
                        hour.etag = Some(etag);
                        hour.unsaved = false;
                        break;
                    }
                    Conditional::PreconditionFailed if attempts + 1 < MERGE_ATTEMPTS => {
                        attempts += 1;
                        let (theirs, etag) = Journal::read_with(store, &hour.key).await?;
                        hour.ids.extend(theirs);
                        hour.etag = etag;
                    }
                    Conditional::PreconditionFailed => {
                        return Err(SweepError::Watermark {
                            key: hour.key.to_string(),
                            reason: format!(
                                "replaced by another writer {MERGE_ATTEMPTS} times in a row"
                            ),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    async fn read_with(
        store: &dyn ObjectStore,
        key: &ObjectKey,
    ) -> Result<(BTreeSet<String>, Option<String>), SweepError> {
        let found =
            super::read_state(store, key, JOURNAL_VERSION, |f: &JournalFile| f.version).await?;
        Ok(match found {
            Some((file, etag)) => (file.conversations, Some(etag)),
            None => (BTreeSet::new(), None),
        })
    }
}

/// What [`Offers`] did, for the run's report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfferCounts {
    pub enqueued: u32,
    pub already_archived: u32,
    /// Enqueued by an earlier run and not archived yet: not sent again.
    pub already_enqueued: u32,
    /// The earliest end of a conversation seen without an archive (sent now or before).
    pub oldest_unarchived_end: Option<DateTime<Utc>>,
}

/// Sends ended conversations without an archive to the ArchiveQueue in batches, each once.
pub struct Offers<'a> {
    journal: Journal<'a>,
    queue: &'a dyn ArchiveQueue,
    org: &'a OrgId,
    origin: &'static str,
    batch: Vec<(ConversationMessage, DateTime<Utc>)>,
    pub counts: OfferCounts,
    /// `None`: the journal is written after every batch (the sweep). `Some(d)`: at most every
    /// `d`, and by [`Offers::finish`].
    pub journal_every: Option<std::time::Duration>,
    /// Messages collected before they are sent (one SQS batch for the sweep, so that a crash
    /// repeats at most one; more for event-stream, sent several batches at a time).
    pub batch_limit: usize,
    journal_written: std::time::Instant,
}

impl<'a> Offers<'a> {
    pub fn new(deps: &super::SweepDeps<'a>, origin: &'static str) -> Offers<'a> {
        Offers {
            journal: Journal {
                targets: deps.targets,
                ..Journal::new(deps.store, deps.layout, deps.org)
            },
            queue: deps.queue,
            org: deps.org,
            origin,
            batch: Vec::with_capacity(MAX_BATCH),
            counts: OfferCounts::default(),
            journal_every: None,
            batch_limit: MAX_BATCH,
            journal_written: std::time::Instant::now(),
        }
    }

    /// Offers one ended conversation: sent (in a batch) unless archived or enqueued before.
    pub async fn offer(
        &mut self,
        conversation: ConversationId,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<(), SweepError> {
        if self
            .batch
            .iter()
            .any(|(m, _)| m.conversation_id == conversation)
        {
            return Ok(());
        }
        let unarchived = |c: &mut OfferCounts| {
            c.oldest_unarchived_end = Some(c.oldest_unarchived_end.map_or(end, |t| t.min(end)));
        };
        match self.journal.settled(&conversation, start).await? {
            Settled::Archived => {
                self.counts.already_archived += 1;
                return Ok(());
            }
            Settled::Enqueued => {
                self.counts.already_enqueued += 1;
                unarchived(&mut self.counts);
                return Ok(());
            }
            Settled::New => unarchived(&mut self.counts),
        }
        self.batch.push((
            ConversationMessage {
                version: CONVERSATION_MESSAGE_VERSION,
                org_id: self.org.clone(),
                conversation_id: conversation,
                origin: self.origin.into(),
                conversation_end: Some(end),
            },
            start,
        ));
        if self.batch.len() >= self.batch_limit {
            self.send().await?;
        }
        Ok(())
    }

    /// Sends what is batched and writes the journal: after this, everything offered is on the
    /// queue and recorded.
    pub async fn finish(&mut self) -> Result<(), SweepError> {
        self.send().await?;
        self.flush_journal().await
    }

    /// Sends what is batched; the journal is written when `journal_every` says so.
    pub async fn send_batched(&mut self) -> Result<(), SweepError> {
        self.send().await?;
        if self.journal_due() {
            self.flush_journal().await?;
        }
        Ok(())
    }

    fn journal_due(&self) -> bool {
        self.journal_every
            .is_none_or(|every| self.journal_written.elapsed() >= every)
    }

    async fn flush_journal(&mut self) -> Result<(), SweepError> {
        self.journal.flush().await?;
        self.journal_written = std::time::Instant::now();
        Ok(())
    }

    async fn send(&mut self) -> Result<(), SweepError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let messages: Vec<ConversationMessage> = batch.iter().map(|(m, _)| m.clone()).collect();
        let mut results = self.queue.enqueue_conversations(&messages).await;
        // A result missing for a message counts as a refusal, never as sent.
        while results.len() < messages.len() {
            results.push(Err(crate::queue::QueueError::new(
                "SendMessageBatch",
                "no result for this message",
            )));
        }
        let mut refused = None;
        for ((message, start), result) in batch.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    self.journal.record(&message.conversation_id, start).await?;
                    self.counts.enqueued += 1;
                }
                Err(source) => {
                    refused.get_or_insert(SweepError::Enqueue {
                        conversation: message.conversation_id.to_string(),
                        source,
                    });
                }
            }
        }
        // What SQS accepted is recorded before a refusal stops the run.
        if refused.is_some() || self.journal_due() {
            self.flush_journal().await?;
        }
        refused.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_name_their_conversation() {
        assert_eq!(
            manifest_conversation(
                "p/o/year=2026/month=01/day=02/hour=03/conversation_id=c-1/r-1.manifest.json"
            ),
            Some("c-1")
        );
        assert_eq!(
            manifest_conversation(
                "p/o/year=2026/month=01/day=02/hour=03/conversation_id=c-1/r-1.wav.enc"
            ),
            None
        );
        assert_eq!(manifest_conversation("p/_state/x.manifest.json"), None);
    }

    #[tokio::test]
    async fn a_lost_write_is_merged_with_the_winner_not_overwritten() {
        let store = crate::store::MemoryStore::new("b");
        let layout = ArchiveLayout::new("p");
        let org = OrgId::parse("o").unwrap();
        let start: DateTime<Utc> = "2026-01-02T03:04:05Z".parse().unwrap();
        let c = |s: &str| ConversationId::parse(s).unwrap();
        let mut ours = Journal::new(&store, &layout, &org);
        let mut theirs = Journal::new(&store, &layout, &org);
        assert_eq!(ours.settled(&c("a"), start).await.unwrap(), Settled::New);
        assert_eq!(theirs.settled(&c("b"), start).await.unwrap(), Settled::New);
        theirs.record(&c("b"), start).await.unwrap();
        theirs.flush().await.unwrap();
        ours.record(&c("a"), start).await.unwrap();
        ours.flush().await.unwrap();
        let mut fresh = Journal::new(&store, &layout, &org);
        for id in ["a", "b"] {
            assert_eq!(
                fresh.settled(&c(id), start).await.unwrap(),
                Settled::Enqueued,
                "{id}"
            );
        }
        assert_eq!(fresh.settled(&c("z"), start).await.unwrap(), Settled::New);
    }
}
