//! The archive's key layout, in one place. Hive-style partitions by the UTC hour the
//! conversation started, compatible in spirit with Genesys Cloud's own S3 export so the same
//! Athena/Glue tables work:
//! `{prefix}/{orgId}/year=YYYY/month=MM/day=DD/hour=HH/conversation_id={cid}/{rid}.{ext}.enc`.

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::ids::{ConversationId, MediaKey, OrgId, RecordingId};

/// A full S3 object key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For keys read back from S3 listings or configuration.
    pub fn new(key: impl Into<String>) -> ObjectKey {
        ObjectKey(key.into())
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `{rid}` or, for one of several media streams, `{rid}.{key}` (ids never contain '.').
fn stem(recording: &RecordingId, media: Option<&MediaKey>) -> String {
    match media {
        Some(k) => format!("{recording}.{k}"),
        None => recording.to_string(),
    }
}

/// A range bound in a state or report name (`20260102T030405Z`).
fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Everything that names one archived recording's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveLayout {
    prefix: String,
}

fn join(prefix: &str, rest: String) -> ObjectKey {
    if prefix.is_empty() {
        ObjectKey(rest)
    } else {
        ObjectKey(format!("{prefix}/{rest}"))
    }
}

impl ArchiveLayout {
    /// `prefix` without leading/trailing slashes (may be empty).
    pub fn new(prefix: &str) -> ArchiveLayout {
        ArchiveLayout {
            prefix: prefix.trim_matches('/').to_string(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn hour_partition(org: &OrgId, start: DateTime<Utc>) -> String {
        format!(
            "{org}/year={:04}/month={:02}/day={:02}/hour={:02}",
            start.year(),
            start.month(),
            start.day(),
            start.hour()
        )
    }

    fn partition(
        &self,
        org: &OrgId,
        conversation: &ConversationId,
        start: DateTime<Utc>,
    ) -> String {
        format!(
            "{}/conversation_id={conversation}",
            Self::hour_partition(org, start)
        )
    }

    pub fn conversation_folder(
        &self,
        org: &OrgId,
        conversation: &ConversationId,
        start: DateTime<Utc>,
    ) -> ObjectKey {
        join(
            &self.prefix,
            format!("{}/", self.partition(org, conversation, start)),
        )
    }

    /// The encrypted media object. `media` names one stream of a recording that has several.
    pub fn object_key(
        &self,
        org: &OrgId,
        conversation: &ConversationId,
        recording: &RecordingId,
        media: Option<&MediaKey>,
        start: DateTime<Utc>,
        extension: &str,
    ) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "{}/{}.{extension}.enc",
                self.partition(org, conversation, start),
                stem(recording, media)
            ),
        )
    }

    /// The manifest beside it. Its existence is what "archived" means.
    pub fn manifest_key(
        &self,
        org: &OrgId,
        conversation: &ConversationId,
        recording: &RecordingId,
        media: Option<&MediaKey>,
        start: DateTime<Utc>,
    ) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "{}/{}.manifest.json",
                self.partition(org, conversation, start),
                stem(recording, media)
            ),
        )
    }

    /// The recording sweep's watermark (how far every conversation has been enqueued).
    pub fn sweep_watermark_key(&self) -> ObjectKey {
        join(&self.prefix, "_state/sweep/watermark.json".to_string())
    }

    /// An attachment upload's record (upload-proxy): its plan, signed part checksums,
    /// phase, verification and delivery.
    pub fn upload_state_key(&self, upload_id: &str) -> ObjectKey {
        join(&self.prefix, format!("_state/uploads/{upload_id}.json"))
    }

    /// The upload an idempotency key (hashed with its caller) created.
    pub fn upload_idempotency_key(&self, digest_hex: &str) -> ObjectKey {
        join(
            &self.prefix,
            format!("_state/uploads/idempotency/{digest_hex}.json"),
        )
    }

    /// Where uploads counted against `scope` (a conversation or a caller, hashed) in the
    /// UTC hour of `at` are marked, one empty object per upload.
    pub fn upload_rate_prefix(&self, scope_hex: &str, at: DateTime<Utc>) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "_state/uploads/rate/{scope_hex}/{}/",
                at.format("%Y%m%dT%H")
            ),
        )
    }

    /// An attachment: in its conversation's folder, under `attachments/{uploadId}/`, so the
    /// conversation's archive reference covers it too.
    pub fn attachment_key(
        &self,
        org: &OrgId,
        conversation: &ConversationId,
        start: DateTime<Utc>,
        upload_id: &str,
        file_name: &str,
    ) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "{}/attachments/{upload_id}/{file_name}",
                self.partition(org, conversation, start)
            ),
        )
    }

    /// The record beside an attachment that says it was verified and released (not a
    /// `.manifest.json`: those are recordings' and the sweep and reconcile read them).
    pub fn attachment_record_key(
        &self,
        org: &OrgId,
        conversation: &ConversationId,
        start: DateTime<Utc>,
        upload_id: &str,
    ) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "{}/attachments/{upload_id}.attachment.json",
                self.partition(org, conversation, start)
            ),
        )
    }

    /// event-stream's channel, lease and unfilled gaps.
    pub fn stream_state_key(&self) -> ObjectKey {
        join(&self.prefix, "_state/stream/state.json".to_string())
    }

    /// The folder of every conversation of `org` that started in `start`'s UTC hour.
    pub fn hour_folder(&self, org: &OrgId, start: DateTime<Utc>) -> ObjectKey {
        join(
            &self.prefix,
            format!("{}/", Self::hour_partition(org, start)),
        )
    }

    /// The conversations the sweep and the backfills have settled (enqueued, or found
    /// archived) among those that started in `start`'s UTC hour.
    pub fn enqueue_journal_key(&self, start: DateTime<Utc>) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "_state/enqueued/{:04}/{:02}/{:02}/{:02}.json",
                start.year(),
                start.month(),
                start.day(),
                start.hour()
            ),
        )
    }

    /// Where the backfills keep their progress.
    pub fn backfill_state_prefix(&self) -> ObjectKey {
        join(&self.prefix, "_state/backfill/".to_string())
    }

    /// One backfill's progress, named by its range.
    pub fn backfill_state_key(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> ObjectKey {
        join(
            &self.prefix,
            format!("_state/backfill/{}_{}.json", stamp(from), stamp(to)),
        )
    }

    /// A reconciliation report of the conversations that started in `[from, to)`.
    pub fn reconcile_report_key(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> ObjectKey {
        join(
            &self.prefix,
            format!("_reports/reconcile/{}_{}.json", stamp(from), stamp(to)),
        )
    }

    /// The routing decision of a recording (in the deployment's own bucket): made once, so a
    /// resumed or redelivered transfer goes where the first one went.
    pub fn route_record_key(
        &self,
        conversation: &ConversationId,
        recording: &RecordingId,
    ) -> ObjectKey {
        join(
            &self.prefix,
            format!("_state/routes/{conversation}/{recording}.json"),
        )
    }

    /// The latest compliance report of the storage targets (storage-router).
    pub fn compliance_report_key(&self) -> ObjectKey {
        join(&self.prefix, "_reports/compliance/latest.json".into())
    }

    /// The audit report of one period (`kind` is `json`, `md` or `html`).
    pub fn audit_report_key(&self, from: DateTime<Utc>, to: DateTime<Utc>, ext: &str) -> ObjectKey {
        join(
            &self.prefix,
            format!("_reports/audit/{}_{}.{ext}", stamp(from), stamp(to)),
        )
    }

    /// The resumable transfer's checkpoint.
    pub fn checkpoint_key(&self, recording: &RecordingId, media: Option<&MediaKey>) -> ObjectKey {
        join(
            &self.prefix,
            format!("_state/transfers/{}.json", stem(recording, media)),
        )
    }

    /// The folder of the audit records written on `day`.
    pub fn audit_day_prefix(&self, day: chrono::NaiveDate) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "_audit/year={:04}/month={:02}/day={:02}/",
                day.year(),
                day.month(),
                day.day()
            ),
        )
    }

    /// One audit record per transfer attempt outcome, partitioned by the day it was written.
    pub fn audit_key(
        &self,
        at: DateTime<Utc>,
        recording: &RecordingId,
        outcome: &str,
    ) -> ObjectKey {
        join(
            &self.prefix,
            format!(
                "_audit/year={:04}/month={:02}/day={:02}/{}-{recording}-{outcome}.json",
                at.year(),
                at.month(),
                at.day(),
                at.format("%H%M%S%3f")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ids() -> (OrgId, ConversationId, RecordingId) {
        (
            OrgId::parse("org-1").unwrap(),
            ConversationId::parse("c-1").unwrap(),
            RecordingId::parse("r-1").unwrap(),
        )
    }

    #[test]
    fn object_key_is_hive_partitioned_by_conversation_start_hour() {
        let (o, c, r) = ids();
        let start = DateTime::parse_from_rfc3339("2026-03-04T05:59:59.999+02:00")
            .unwrap()
            .to_utc();
        let layout = ArchiveLayout::new("/recordings/");
        assert_eq!(
            layout.object_key(&o, &c, &r, None, start, "wav").as_str(),
            "recordings/org-1/year=2026/month=03/day=04/hour=03/conversation_id=c-1/r-1.wav.enc"
        );
        assert_eq!(
            layout.manifest_key(&o, &c, &r, None, start).as_str(),
            "recordings/org-1/year=2026/month=03/day=04/hour=03/conversation_id=c-1/r-1.manifest.json"
        );
        assert_eq!(
            layout.checkpoint_key(&r, None).as_str(),
            "recordings/_state/transfers/r-1.json"
        );
        let k = MediaKey::from_api("1");
        assert_eq!(
            layout
                .object_key(&o, &c, &r, Some(&k), start, "wav")
                .as_str(),
            "recordings/org-1/year=2026/month=03/day=04/hour=03/conversation_id=c-1/r-1.1.wav.enc"
        );
        assert_eq!(
            layout.conversation_folder(&o, &c, start).as_str(),
            "recordings/org-1/year=2026/month=03/day=04/hour=03/conversation_id=c-1/"
        );
    }

    #[test]
    fn empty_prefix_has_no_leading_slash() {
        let (o, c, r) = ids();
        let k = ArchiveLayout::new("").object_key(&o, &c, &r, None, Utc::now(), "ogg");
        assert!(k.as_str().starts_with("org-1/year="));
    }

    proptest! {
        #[test]
        fn keys_never_contain_empty_or_relative_segments(
            prefix in "[a-z0-9/]{0,20}", secs in 0i64..4_000_000_000i64,
            cid in "[A-Za-z0-9_-]{1,64}", rid in "[A-Za-z0-9_-]{1,64}")
        {
            let layout = ArchiveLayout::new(&prefix);
            prop_assume!(!layout.prefix().contains("//"));
            let start = DateTime::from_timestamp(secs, 0).unwrap();
            let (o, _, _) = ids();
            let c = ConversationId::parse(cid).unwrap();
            let r = RecordingId::parse(rid).unwrap();
            for key in [layout.object_key(&o, &c, &r, None, start, "wav"), layout.manifest_key(&o, &c, &r, None, start), layout.checkpoint_key(&r, None)] {
                for seg in key.as_str().split('/') {
                    prop_assert!(!seg.is_empty() && seg != "." && seg != "..", "{}", key);
                }
            }
            // Deterministic: the same inputs give the same key (exactly-once relies on it).
            prop_assert_eq!(layout.object_key(&o, &c, &r, None, start, "wav"), layout.object_key(&o, &c, &r, None, start, "wav"));
        }
    }
}
