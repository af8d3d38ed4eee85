//! The resume plan: what a transfer's checkpoint says is left to do, decided before any
//! request, and checked against what the first media response says. Pure: no I/O, so every
//! resume rule is a unit test.

use super::checkpoint::UploadState;
use super::range::{plan, ByteRange};
use super::TransferError;

/// Where a transfer stands, from its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePlan {
    /// Chunk (and part) size: the checkpoint's, once an upload exists.
    pub chunk: u64,
    /// Parts already uploaded (in order, without gaps).
    pub parts_done: usize,
    /// The first plaintext byte still to fetch.
    pub resume_offset: u64,
    /// Every part is uploaded: only completion is left (no Genesys call needed).
    pub upload_complete: bool,
    /// An upload exists (this invocation continues an earlier one).
    pub resumed: bool,
}

impl ResumePlan {
    pub fn from_checkpoint(upload: Option<&UploadState>, chunk_size: u64) -> ResumePlan {
        let chunk = upload.map(|u| u.chunk_size).unwrap_or(chunk_size);
        let parts_done = upload.map_or(0, |u| u.parts.len());
        let resume_offset = parts_done as u64 * chunk;
        ResumePlan {
            chunk,
            parts_done,
            resume_offset,
            upload_complete: upload.is_some_and(|u| resume_offset >= u.total_size),
            resumed: upload.is_some(),
        }
    }

    /// The range the first request asks for.
    pub fn probe_range(&self) -> ByteRange {
        ByteRange {
            start: self.resume_offset,
            end: self.resume_offset + self.chunk - 1,
        }
    }

    /// Every chunk of media of `total` bytes, once the probe has shown it is still the media
    /// the uploaded parts were made of (same size and served type).
    pub fn chunks(
        &self,
        upload: Option<&UploadState>,
        total: u64,
        content_type: &str,
    ) -> Result<Vec<ByteRange>, TransferError> {
        if total == 0 {
            return Err(TransferError::EmptyMedia);
        }
        if let Some(up) = upload {
            if up.total_size != total || up.content_type != content_type {
                return Err(TransferError::SizeMismatch {
                    expected: up.total_size,
                    actual: total,
                });
            }
        }
        Ok(plan(total, self.chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UploadedPart;
    use crate::transfer::codec::Codec;
    use crate::transfer::hash::ResumableSha256;

    fn upload(total: u64, chunk: u64, parts: usize) -> UploadState {
        UploadState {
            object_key: "k".into(),
            upload_id: "u".into(),
            total_size: total,
            chunk_size: chunk,
            content_type: "binary/octet-stream".into(),
            declared_content_type: None,
            codec: Codec::WavPcm,
            ranged: true,
            media_host: "h".into(),
            parts: (1..=parts as i32)
                .map(|n| UploadedPart {
                    part_number: n,
                    etag: "e".into(),
                    checksum: String::new(),
                    size: chunk,
                })
                .collect(),
            plaintext_hash: ResumableSha256::new().save(),
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
        }
    }

    #[test]
    fn a_fresh_transfer_starts_at_zero_with_the_configured_chunk() {
        let p = ResumePlan::from_checkpoint(None, 8);
        assert_eq!((p.chunk, p.parts_done, p.resume_offset), (8, 0, 0));
        assert!(!p.upload_complete && !p.resumed);
        assert_eq!(p.probe_range(), ByteRange { start: 0, end: 7 });
    }

    #[test]
    fn a_resume_keeps_the_checkpoints_chunk_size_and_starts_at_the_first_missing_part() {
        let up = upload(100, 30, 2);
        let p = ResumePlan::from_checkpoint(Some(&up), 8);
        assert_eq!((p.chunk, p.parts_done, p.resume_offset), (30, 2, 60));
        assert!(p.resumed && !p.upload_complete);
        assert_eq!(p.probe_range(), ByteRange { start: 60, end: 89 });
        assert_eq!(
            p.chunks(Some(&up), 100, "binary/octet-stream")
                .unwrap()
                .len(),
            4
        );
    }

    #[test]
    fn every_part_uploaded_means_only_completion_is_left() {
        let up = upload(90, 30, 3);
        assert!(ResumePlan::from_checkpoint(Some(&up), 8).upload_complete);
    }

    #[test]
    fn media_that_changed_size_or_type_is_not_continued() {
        let up = upload(100, 30, 2);
        let p = ResumePlan::from_checkpoint(Some(&up), 8);
        assert!(matches!(
            p.chunks(Some(&up), 101, "binary/octet-stream"),
            Err(TransferError::SizeMismatch { .. })
        ));
        assert!(p.chunks(Some(&up), 100, "audio/wav").is_err());
        assert!(matches!(
            ResumePlan::from_checkpoint(None, 8).chunks(None, 0, ""),
            Err(TransferError::EmptyMedia)
        ));
    }
}
