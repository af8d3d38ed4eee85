//! The S3 side of an upload: a multipart upload with SHA-256 part checksums whose parts the
//! client PUTs directly to S3 through presigned URLs (the bytes never pass through Lambda),
//! and what completion and verification read back.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};

use crate::store::s3::{is_precondition_failed, request_error, status};
use crate::store::{ObjectKey, ObjectStore, S3Store, StoreError};

/// A presigned request: its URL (a bearer credential until it expires: never logged) and
/// the headers the client must send with it, which the signature covers.
#[derive(Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignedRequest {
    pub url: String,
    pub headers: BTreeMap<String, String>,
}

impl std::fmt::Debug for SignedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRequest")
            .field("url", &"<presigned>")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A part S3 holds for an upload (ListParts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    /// What S3 recorded and verified; moto records none (moto-notes.md).
    pub sha256: Option<String>,
}

#[derive(Clone)]
pub struct MultipartStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// What the archive's store already does the same way (abort, delete).
    objects: S3Store,
}

impl MultipartStore {
    /// `client` must not add checksums of its own to requests (see `bootstrap::s3_client`):
    /// a presigned part carries exactly the SHA-256 the client declared.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> MultipartStore {
        let bucket = bucket.into();
        MultipartStore {
            objects: S3Store::new(client.clone(), bucket.clone()),
            client,
            bucket,
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub async fn create(&self, key: &ObjectKey, content_type: &str) -> Result<String, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .send()
            .await
            .map_err(|e| request_error("CreateMultipartUpload", key, &e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Request {
                operation: "CreateMultipartUpload",
                key: key.to_string(),
                reason: "no upload id in the response".into(),
                transient: true,
            })
    }

    /// A presigned UploadPart whose signature binds `x-amz-checksum-sha256`: S3 refuses
    /// (400 BadDigest) a body that does not hash to it, and the header cannot be changed
    /// without breaking the signature.
    pub async fn presign_part(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        part_number: u32,
        sha256_b64: &str,
        ttl: Duration,
    ) -> Result<SignedRequest, StoreError> {
        let config = presigning(ttl, "UploadPart", key)?;
        let presigned = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(part_number as i32)
            .checksum_sha256(sha256_b64)
            .presigned(config)
            .await
            .map_err(|e| request_error("UploadPart", key, &e))?;
        Ok(signed(&presigned))
    }

    /// A presigned GetObject that downloads as `file_name`.
    pub async fn presign_get(
        &self,
        key: &ObjectKey,
        file_name: &str,
        ttl: Duration,
    ) -> Result<SignedRequest, StoreError> {
        let config = presigning(ttl, "GetObject", key)?;
        let quoted: String = file_name
            .chars()
            .map(|c| if c == '"' || c.is_control() { '_' } else { c })
            .collect();
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .response_content_disposition(format!("attachment; filename=\"{quoted}\""))
            .presigned(config)
            .await
            .map_err(|e| request_error("GetObject", key, &e))?;
        Ok(signed(&presigned))
    }

    /// Every part S3 holds for the upload; `None` when the upload is gone.
    pub async fn list_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<Option<Vec<ListedPart>>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = match self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key.as_str())
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
            {
                Ok(out) => PartsPage {
                    parts: out
                        .parts()
                        .iter()
                        .map(|p| ListedPart {
                            part_number: p.part_number().unwrap_or_default().max(0) as u32,
                            etag: p.e_tag().unwrap_or_default().to_string(),
                            size: p.size().unwrap_or_default().max(0) as u64,
                            sha256: p.checksum_sha256().map(str::to_string),
                        })
                        .collect(),
                    truncated: out.is_truncated() == Some(true),
                    next_marker: out.next_part_number_marker().map(str::to_string),
                },
                Err(e) if status(&e) == Some(404) => return Ok(None),
                // moto answers 200 with a `ListPartsResponse` root where S3 sends
                // `ListPartsResult`, which the SDK's deserializer refuses: the raw body is
                // parsed here instead (the same fields).
                Err(e) if status(&e) == Some(200) => {
                    let body = e
                        .raw_response()
                        .and_then(|r| r.body().bytes())
                        .and_then(|b| std::str::from_utf8(b).ok())
                        .unwrap_or_default();
                    parse_list_parts(body).map_err(|reason| StoreError::Request {
                        operation: "ListParts",
                        key: key.to_string(),
                        reason,
                        transient: false,
                    })?
                }
                Err(e) => return Err(request_error("ListParts", key, &e)),
            };
            parts.extend(page.parts);
            match page.next_marker {
                Some(next) if page.truncated => marker = Some(next),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.part_number);
        Ok(Some(parts))
    }

    /// CompleteMultipartUpload with `If-None-Match: *` and each part's SHA-256, which S3
    /// checks against what it recorded for the part. Something already at the key (412) is
    /// success: the key is the upload's own, so only an earlier completion of it put it there.
    pub async fn complete(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        parts: &[(u32, String, String)],
    ) -> Result<(), StoreError> {
        let completed: Vec<CompletedPart> = parts
            .iter()
            .map(|(n, etag, sha)| {
                CompletedPart::builder()
                    .part_number(*n as i32)
                    .e_tag(etag)
                    .checksum_sha256(sha)
                    .build()
            })
            .collect();
        match self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key.as_str())
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_precondition_failed(&e) => Ok(()),
            Err(e) if status(&e) == Some(404) => Err(StoreError::NoSuchUpload {
                operation: "CompleteMultipartUpload",
                key: key.to_string(),
                upload_id: upload_id.to_string(),
            }),
            Err(e) => Err(request_error("CompleteMultipartUpload", key, &e)),
        }
    }

    /// Aborts; an upload already gone is not an error.
    pub async fn abort(&self, key: &ObjectKey, upload_id: &str) -> Result<(), StoreError> {
        self.objects.abort_multipart(key, upload_id).await
    }

    /// The object's size and the SHA-256 checksum S3 reports for it (composite for a
    /// multipart object); `None` when there is no object.
    pub async fn head(&self, key: &ObjectKey) -> Result<Option<(u64, Option<String>)>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or_default().max(0) as u64,
                out.checksum_sha256().map(str::to_string),
            ))),
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(request_error("HeadObject", key, &e)),
        }
    }

    /// The object's bytes in `[start, end)` (`end = None`: to the end), as a stream.
    pub async fn read(
        &self,
        key: &ObjectKey,
        start: u64,
        end: Option<u64>,
    ) -> Result<ByteStream, StoreError> {
        let range = match end {
            Some(end) => format!("bytes={start}-{}", end.saturating_sub(1)),
            None => format!("bytes={start}-"),
        };
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .range(range)
            .send()
            .await
            .map_err(|e| request_error("GetObject", key, &e))?;
        Ok(out.body)
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.objects.delete(key).await
    }
}

fn presigning(
    ttl: Duration,
    operation: &'static str,
    key: &ObjectKey,
) -> Result<PresigningConfig, StoreError> {
    PresigningConfig::expires_in(ttl).map_err(|e| StoreError::Request {
        operation,
        key: key.to_string(),
        reason: format!("presigning: {e}"),
        transient: false,
    })
}

fn signed(p: &aws_sdk_s3::presigning::PresignedRequest) -> SignedRequest {
    SignedRequest {
        url: p.uri().to_string(),
        headers: p
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

struct PartsPage {
    parts: Vec<ListedPart>,
    truncated: bool,
    next_marker: Option<String>,
}

fn parse_list_parts(body: &str) -> Result<PartsPage, String> {
    let mut doc = aws_smithy_xml::decode::Document::new(body);
    let mut root = doc
        .root_element()
        .map_err(|e| format!("ListParts answer is not XML: {e}"))?;
    let mut page = PartsPage {
        parts: Vec::new(),
        truncated: false,
        next_marker: None,
    };
    let text = |tag: &mut aws_smithy_xml::decode::ScopedDecoder| {
        aws_smithy_xml::decode::try_data(tag)
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    };
    while let Some(mut tag) = root.next_tag() {
        match tag.start_el().local() {
            "IsTruncated" => page.truncated = text(&mut tag) == "true",
            "NextPartNumberMarker" => page.next_marker = Some(text(&mut tag)),
            "Part" => {
                let mut part = ListedPart {
                    part_number: 0,
                    etag: String::new(),
                    size: 0,
                    sha256: None,
                };
                while let Some(mut field) = tag.next_tag() {
                    match field.start_el().local() {
                        "PartNumber" => part.part_number = text(&mut field).parse().unwrap_or(0),
                        "ETag" => part.etag = text(&mut field),
                        "Size" => part.size = text(&mut field).parse().unwrap_or(0),
                        "ChecksumSHA256" => part.sha256 = Some(text(&mut field)),
                        _ => {}
                    }
                }
                if part.part_number == 0 {
                    return Err("ListParts listed a part without a number".into());
                }
                page.parts.push(part);
            }
            _ => {}
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parts_parses_s3s_answer_and_motos() {
        let s3 = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key>
<UploadId>u</UploadId><NextPartNumberMarker>2</NextPartNumberMarker><IsTruncated>true</IsTruncated>
<Part><ChecksumSHA256>abc=</ChecksumSHA256><ETag>"e1"</ETag><PartNumber>1</PartNumber><Size>5242880</Size></Part>
<Part><ETag>"e2"</ETag><PartNumber>2</PartNumber><Size>7</Size></Part></ListPartsResult>"#;
        let page = parse_list_parts(s3).unwrap();
        assert!(page.truncated);
        assert_eq!(page.next_marker.as_deref(), Some("2"));
        assert_eq!(page.parts[0].sha256.as_deref(), Some("abc="));
        assert_eq!(page.parts[0].etag, "\"e1\"");
        assert_eq!((page.parts[1].part_number, page.parts[1].size), (2, 7));
        let moto = r#"<ListPartsResponse xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><IsTruncated>false</IsTruncated>
<Part><PartNumber>1</PartNumber><ETag>"x"</ETag><Size>10</Size></Part><Initiator><ID>i</ID></Initiator></ListPartsResponse>"#;
        let page = parse_list_parts(moto).unwrap();
        assert!(!page.truncated);
        assert_eq!(page.parts.len(), 1);
        assert_eq!(page.parts[0].sha256, None);
        assert!(parse_list_parts("<a><Part><Size>1</Size></Part></a>").is_err());
    }
}
