//! A transfer's resumable state, stored in S3 at `{prefix}/_state/transfers/{rid}.json`.
//!
//! Ownership: a worker creates the checkpoint with `If-None-Match: *` before doing any work,
//! and every later write uses `If-Match` on the ETag it last wrote. A worker whose write gets
//! 412 has lost the transfer and stops. A checkpoint carries a lease; a worker that finds a
//! checkpoint whose lease has run out (its owner crashed or timed out) takes it over with
//! `If-Match`, and resumes from the first part not yet uploaded.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::codec::Codec;
use super::hash::Sha256State;
use super::TransferError;
use crate::crypto::EncryptorCheckpoint;
use crate::store::{Conditional, ObjectKey, ObjectStore, UploadedPart};

/// 2: parts carry CRC64NVME checksums of a FULL_OBJECT upload. A version-1 checkpoint (SHA-256
/// parts) is still taken over, but its upload is aborted and the transfer starts over: its
/// parts cannot be completed under the new checksum type.
pub const CHECKPOINT_VERSION: u32 = 2;
const OLDEST_READABLE_VERSION: u32 = 1;

/// The multipart upload in progress and everything needed to continue it byte-identically.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadState {
    pub object_key: String,
    pub upload_id: String,
    pub total_size: u64,
    pub chunk_size: u64,
    /// `Content-Type` the media host served (advisory).
    pub content_type: String,
    /// `contentType` Genesys stated for the media (batch result), if any.
    #[serde(default)]
    pub declared_content_type: Option<String>,
    pub codec: Codec,
    pub ranged: bool,
    pub media_host: String,
    /// Parts uploaded, in order, without gaps: part `n` covers chunk `n - 1`.
    pub parts: Vec<UploadedPart>,
    /// Plaintext SHA-256 state after the last part's chunk.
    pub plaintext_hash: Sha256State,
    /// Encryptor state after the last part (header, next frame sequence number).
    pub encryptor: EncryptorCheckpoint,
    pub ciphertext_size: u64,
    pub frame_len: u32,
    pub message_id: String,
    /// `outputDurationMs` from Genesys, for the manifest.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// What the media host stated about the whole object (checked before completion).
    #[serde(default)]
    pub source_checksums: super::integrity::SourceChecksums,
    /// CRC-32 of each completed chunk's plaintext: after a resume or a URL refresh a chunk is
    /// fetched again and compared, so two encodes are never spliced into one archive.
    #[serde(default)]
    pub chunk_crc32: Vec<u32>,
    /// CRC64NVME of the ciphertext of every part so far (base64): the object's full-object
    /// checksum once all parts are in.
    #[serde(default)]
    pub ciphertext_crc64nvme: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    pub version: u32,
    pub owner: String,
    pub lease_until: DateTime<Utc>,
    pub org_id: String,
    pub conversation_id: String,
    pub recording_id: String,
    pub started_at: DateTime<Utc>,
    pub invocations: u32,
    pub chunk_retries: u32,
    pub url_refreshes: u32,
    /// A batch download job submitted for this recording and not finished yet.
    #[serde(default)]
    pub batch_job: Option<String>,
    pub upload: Option<UploadState>,
}

/// A checkpoint this worker owns, with the ETag of its last write.
pub struct OwnedCheckpoint {
    pub key: ObjectKey,
    pub etag: String,
    pub state: Checkpoint,
}

pub enum Claim {
    Owned(Box<OwnedCheckpoint>),
    Busy { until: DateTime<Utc> },
}

fn encode(cp: &Checkpoint) -> Result<Bytes, TransferError> {
    serde_json::to_vec(cp)
        .map(Bytes::from)
        .map_err(|e| TransferError::Encode {
            what: "checkpoint",
            reason: e.to_string(),
        })
}

/// Creates the checkpoint, or takes over one whose lease ran out.
pub async fn claim(
    store: &dyn ObjectStore,
    key: ObjectKey,
    fresh: Checkpoint,
    lease: chrono::Duration,
) -> Result<Claim, TransferError> {
    match store.get(&key).await? {
        None => match store
            .put_if_absent(&key, encode(&fresh)?, "application/json")
            .await?
        {
            Conditional::Written(etag) => Ok(Claim::Owned(Box::new(OwnedCheckpoint {
                key,
                etag,
                state: fresh,
            }))),
            Conditional::PreconditionFailed => Ok(Claim::Busy {
                until: Utc::now() + lease,
            }),
        },
        Some(existing) => {
            let mut state: Checkpoint = serde_json::from_slice(&existing.body).map_err(|e| {
                TransferError::BadCheckpoint {
                    key: key.to_string(),
                    reason: e.to_string(),
                }
            })?;
            if !(OLDEST_READABLE_VERSION..=CHECKPOINT_VERSION).contains(&state.version) {
                return Err(TransferError::BadCheckpoint {
                    key: key.to_string(),
                    reason: format!(
                        "version {} is not {OLDEST_READABLE_VERSION}..={CHECKPOINT_VERSION}",
                        state.version
                    ),
                });
            }
            let now = Utc::now();
            if state.lease_until > now && state.owner != fresh.owner {
                return Ok(Claim::Busy {
                    until: state.lease_until,
                });
            }
            state.owner = fresh.owner;
            state.lease_until = fresh.lease_until;
            state.invocations += 1;
            match store
                .put_if_match(&key, encode(&state)?, "application/json", &existing.etag)
                .await?
            {
                Conditional::Written(etag) => {
                    Ok(Claim::Owned(Box::new(OwnedCheckpoint { key, etag, state })))
                }
                Conditional::PreconditionFailed => Ok(Claim::Busy { until: now + lease }),
            }
        }
    }
}

impl OwnedCheckpoint {
    /// Writes the current state; 412 means another worker took over.
    pub async fn save(&mut self, store: &dyn ObjectStore) -> Result<(), TransferError> {
        match store
            .put_if_match(
                &self.key,
                encode(&self.state)?,
                "application/json",
                &self.etag,
            )
            .await?
        {
            Conditional::Written(etag) => {
                self.etag = etag;
                Ok(())
            }
            Conditional::PreconditionFailed => Err(TransferError::LostOwnership),
        }
    }

    /// Ends the lease now so the next invocation can continue at once.
    pub async fn release(&mut self, store: &dyn ObjectStore) -> Result<(), TransferError> {
        self.state.lease_until = Utc::now();
        self.save(store).await
    }

    /// Deletes the checkpoint, only while it is still ours (`If-Match` on the ETag of our last
    /// write): a worker that lost the transfer never deletes the new owner's state.
    pub async fn delete(&self, store: &dyn ObjectStore) -> Result<(), TransferError> {
        match store.delete_if_match(&self.key, &self.etag).await? {
            Conditional::Written(()) => Ok(()),
            Conditional::PreconditionFailed => Err(TransferError::LostOwnership),
        }
    }

    /// Aborts the multipart upload this checkpoint records, after proving with a conditional
    /// write that the transfer is still ours (S3 has no conditional abort).
    pub async fn abort_upload(&mut self, store: &dyn ObjectStore) -> Result<(), TransferError> {
        let Some(up) = self.state.upload.clone() else {
            return Ok(());
        };
        self.save(store).await?;
        store
            .abort_multipart(&ObjectKey::new(up.object_key.clone()), &up.upload_id)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn state(owner: &str) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            owner: owner.into(),
            lease_until: Utc::now() + chrono::Duration::seconds(60),
            org_id: "o".into(),
            conversation_id: "c".into(),
            recording_id: "r".into(),
            started_at: Utc::now(),
            invocations: 1,
            chunk_retries: 0,
            url_refreshes: 0,
            batch_job: None,
            upload: None,
        }
    }

    /// Scenario 2: a worker stalls (429 Retry-After before its first part), its lease runs out,
    /// another worker takes the transfer over; the stale one then fails and cleans up.
    #[tokio::test]
    async fn a_stale_worker_neither_deletes_the_checkpoint_nor_aborts_the_new_owners_upload() {
        let store = MemoryStore::new("b");
        let key = ObjectKey::new("p/_state/transfers/r.json");
        let lease = chrono::Duration::seconds(60);
        let Claim::Owned(stale) = claim(&store, key.clone(), state("a"), lease).await.unwrap()
        else {
            panic!("a claims first")
        };
        let mut stale = *stale;
        // The new owner (its claim after the lease ran out is a conditional write too).
        let upload_id = store
            .create_multipart(&ObjectKey::new("p/x.wav.enc"), "x")
            .await
            .unwrap();
        let mut taken = state("b");
        taken.upload = Some(UploadState {
            object_key: "p/x.wav.enc".into(),
            upload_id: upload_id.clone(),
            total_size: 1,
            chunk_size: 1,
            content_type: String::new(),
            declared_content_type: None,
            codec: Codec::WavPcm,
            ranged: true,
            media_host: "h".into(),
            parts: Vec::new(),
            plaintext_hash: crate::transfer::hash::ResumableSha256::new().save(),
            encryptor: crate::crypto::EncryptorCheckpoint {
                header: String::new(),
                frame_len: 4096,
                next_sequence: 1,
            },
            ciphertext_size: 0,
            frame_len: 4096,
            message_id: String::new(),
            duration_ms: None,
            source_checksums: Default::default(),
            chunk_crc32: Vec::new(),
            ciphertext_crc64nvme: None,
        });
        let written = store
            .put_if_match(
                &key,
                encode(&taken).unwrap(),
                "application/json",
                &stale.etag,
            )
            .await
            .unwrap();
        assert!(matches!(written, Conditional::Written(_)));

        // The stale worker believes the upload is its own.
        stale.state.upload = taken.upload.clone();
        assert!(matches!(
            stale.abort_upload(&store).await,
            Err(TransferError::LostOwnership)
        ));
        assert!(matches!(
            stale.delete(&store).await,
            Err(TransferError::LostOwnership)
        ));
        assert_eq!(
            store.open_uploads(),
            1,
            "the new owner's upload is untouched"
        );
        assert!(
            store.get(&key).await.unwrap().is_some(),
            "its checkpoint too"
        );
    }
}
