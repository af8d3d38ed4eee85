//! A reusable end-to-end harness for the resumable transfer engine: a Genesys Cloud simulator,
//! a moto server (S3 + KMS) with a fresh bucket and KMS key, a Genesys client, and helpers to
//! run [`transfer_recording`], decrypt what landed in S3 and compare it with the simulator's
//! media, and find anything a transfer left behind (open multipart uploads, checkpoints).
//!
//! The kit deliberately needs no crates beyond what `gc-archive-it` already depends on: dates,
//! URLs and secrets are built through `FromStr`/`From` inference, SHA-256 comes from
//! `gc_archive::transfer::hash`.

use std::sync::Arc;
use std::time::Duration;

use gc_archive::config::GenesysCredentials;
use gc_archive::crypto::{
    decrypt_bytes, CryptoError, DecryptOptions, DecryptedInfo, EncryptionContext, Keyring,
    KmsKeyring, RawAesKeyring,
};
use gc_archive::genesys::GenesysClient;
use gc_archive::retry::RetryPolicy;
use gc_archive::store::manifest::Manifest;
use gc_archive::store::{ArchiveLayout, Crc64Nvme, ObjectStore, S3Store};
use gc_archive::transfer::engine::{TransferDeps, TransferJob, TransferSettings};
use gc_archive::transfer::hash::ResumableSha256;
use gc_archive::transfer::{transfer_recording, TransferError, TransferOutcome};
use gc_archive::{ConversationId, OrgId, RecordingId};
use genesys_sim::{ConversationSpec, RecordingSpec, SimConfig, Simulator};

use crate::MotoServer;

/// Conversation start used by [`Kit::add_recording`]: the key must say
/// `year=2026/month=03/day=04/hour=05`.
pub const CONVERSATION_START: &str = "2026-03-04T05:06:07Z";
/// The partition [`CONVERSATION_START`] maps to.
pub const PARTITION: &str = "year=2026/month=03/day=04/hour=05";
/// Object key prefix of the archive.
pub const PREFIX: &str = "recordings";
/// Small parts: moto is told to accept them (`S3_UPLOAD_PART_MIN_SIZE`).
pub const SMALL_CHUNK: u64 = 256 * 1024;
pub const SMALL_FRAME: u32 = 4096;
pub const MIB: u64 = 1024 * 1024;

/// Which keyring encrypts the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    /// A fresh KMS key in moto (the production path).
    Kms,
    /// A raw AES-256 key (air-gapped use); the bytes are fixed per kit.
    Raw,
}

#[derive(Debug, Clone)]
pub struct KitOptions {
    /// `S3_UPLOAD_PART_MIN_SIZE` for moto; `None` keeps S3's real 5 MiB limit.
    pub min_part_size: Option<u64>,
    pub key: KeyChoice,
    pub sim: SimConfig,
}

impl Default for KitOptions {
    fn default() -> Self {
        KitOptions {
            min_part_size: Some(SMALL_CHUNK),
            key: KeyChoice::Kms,
            // Ranged transfers by default here (the tests of resumes count ranges); the
            // simulator's own default, Range ignored, is tested explicitly.
            sim: SimConfig {
                behaviour: genesys_sim::Behaviour {
                    range: genesys_sim::RangeSupport::Honoured,
                    ..Default::default()
                },
                ..SimConfig::default()
            },
        }
    }
}

/// Everything one transfer test needs; dropping it stops the simulator and moto.
pub struct Kit {
    pub sim: Simulator,
    pub moto: MotoServer,
    pub s3: aws_sdk_s3::Client,
    pub kms: aws_sdk_kms::Client,
    pub bucket: String,
    /// ARN of the KMS key (also created for [`KeyChoice::Raw`] kits, for wrong-key tests).
    pub kms_key_arn: String,
    pub genesys: GenesysClient,
    pub store: Arc<S3Store>,
    pub keyring: Arc<dyn Keyring>,
    pub key_providers: Vec<String>,
}

/// A recording added to the simulator, with the job that archives it.
#[derive(Debug, Clone)]
pub struct Added {
    pub job: TransferJob,
    pub recording_id: String,
    pub conversation_id: String,
}

/// The raw AES key of [`KeyChoice::Raw`] kits.
pub const RAW_KEY: [u8; 32] = [7u8; 32];
pub const RAW_NAMESPACE: &str = "gc-archive-test";
pub const RAW_NAME: &str = "transfer-kit";

/// A Genesys client for `sim` with fast retries (5 ms base delay) and a 10 s read timeout.
pub fn genesys_client(sim: &Simulator) -> GenesysClient {
    let base = sim.base_url().parse().expect("simulator base URL");
    GenesysClient::with_http(
        gc_archive::genesys::client::http_client(Duration::from_secs(10)).expect("http client"),
        &base,
        &base,
        GenesysCredentials {
            client_id: sim.client_id().to_string(),
            client_secret: sim.client_secret().to_string().into(),
        },
        RetryPolicy::default().with_base_delay(Duration::from_millis(5)),
    )
}

impl Kit {
    /// Simulator + moto with 256 KiB parts allowed, a bucket and a KMS key.
    pub async fn start() -> Kit {
        Self::start_with(KitOptions::default()).await
    }

    pub async fn start_with(opts: KitOptions) -> Kit {
        let min = opts.min_part_size.map(|m| m.to_string());
        let env: Vec<(&str, &str)> = match &min {
            Some(m) => vec![("S3_UPLOAD_PART_MIN_SIZE", m.as_str())],
            None => Vec::new(),
        };
        let (sim, moto) = tokio::join!(
            Simulator::start(opts.sim.clone()),
            MotoServer::start_with_env(&env)
        );
        let sim = sim.expect("start the Genesys simulator");
        let s3 = moto.s3().await;
        let kms = moto.kms().await;
        let bucket = "archive-it".to_string();
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let kms_key_arn = create_kms_key(&kms).await;
        let (keyring, key_providers): (Arc<dyn Keyring>, Vec<String>) = match opts.key {
            KeyChoice::Kms => (
                Arc::new(KmsKeyring::new(kms.clone(), kms_key_arn.clone())),
                vec![format!("aws-kms:{kms_key_arn}")],
            ),
            KeyChoice::Raw => (
                Arc::new(
                    RawAesKeyring::new(RAW_NAMESPACE, RAW_NAME, RAW_KEY).expect("raw keyring"),
                ),
                vec![format!("{RAW_NAMESPACE}/{RAW_NAME}")],
            ),
        };
        let genesys = genesys_client(&sim);
        let store = Arc::new(S3Store::new(s3.clone(), bucket.clone()));
        Kit {
            sim,
            moto,
            s3,
            kms,
            bucket,
            kms_key_arn,
            genesys,
            store,
            keyring,
            key_providers,
        }
    }

    pub fn deps(&self) -> TransferDeps {
        self.deps_with_store(self.store.clone())
    }

    pub fn deps_with_store(&self, store: Arc<dyn ObjectStore>) -> TransferDeps {
        TransferDeps {
            genesys: self.genesys.clone(),
            store,
            keyring: self.keyring.clone(),
        }
    }

    /// 256 KiB chunks, 4 KiB frames, 3 fetches and 2 uploads in flight, 5 s lease, no margin.
    pub fn settings(&self, worker_id: &str) -> TransferSettings {
        TransferSettings {
            layout: ArchiveLayout::new(PREFIX),
            media_format: gc_archive::config::MediaFormat::Original,
            chunk_size: SMALL_CHUNK,
            fetch_concurrency: 3,
            uploads_in_flight: 2,
            frame_len: SMALL_FRAME,
            lease: Duration::from_secs(5),
            suspend_margin: Duration::ZERO,
            worker_id: worker_id.to_string(),
            key_providers: self.key_providers.clone(),
            max_bytes: None,
        }
    }

    /// Adds a conversation started at [`CONVERSATION_START`] with one recording.
    pub fn add_recording(&self, spec: RecordingSpec) -> Added {
        let cid = self.sim.add_conversation(ConversationSpec {
            start: Some(CONVERSATION_START.parse().expect("start time")),
            ..ConversationSpec::default()
        });
        let rid = self.sim.add_recording(&cid, spec);
        Added {
            job: TransferJob {
                org: OrgId::parse(self.sim.org_id()).expect("org id"),
                conversation: ConversationId::parse(cid.clone()).expect("conversation id"),
                recording: RecordingId::parse(rid.clone()).expect("recording id"),
                conversation_start: CONVERSATION_START.parse().expect("start time"),
                participants: Vec::new(),
                media: gc_archive::config::RecordingMedia::Audio,
                media_key: None,
                route: None,
            },
            recording_id: rid,
            conversation_id: cid,
        }
    }

    pub async fn run(
        &self,
        job: &TransferJob,
        settings: &TransferSettings,
    ) -> Result<TransferOutcome, TransferError> {
        transfer_recording(&self.deps(), job, settings, None).await
    }

    /// Runs and insists on `Archived`.
    pub async fn archive(&self, job: &TransferJob, settings: &TransferSettings) -> Manifest {
        match self.run(job, settings).await {
            Ok(TransferOutcome::Archived(m)) => *m,
            other => panic!("expected Archived, got {other:?}"),
        }
    }

    /// The expected object key of a recording archived as `ext`.
    pub fn object_key(&self, added: &Added, ext: &str) -> String {
        format!(
            "{PREFIX}/{}/{PARTITION}/conversation_id={}/{}.{ext}.enc",
            self.sim.org_id(),
            added.conversation_id,
            added.recording_id
        )
    }

    pub fn manifest_key(&self, added: &Added) -> String {
        format!(
            "{PREFIX}/{}/{PARTITION}/conversation_id={}/{}.manifest.json",
            self.sim.org_id(),
            added.conversation_id,
            added.recording_id
        )
    }

    pub fn checkpoint_key(&self, added: &Added) -> String {
        format!("{PREFIX}/_state/transfers/{}.json", added.recording_id)
    }

    /// The object's bytes, or `None` if it does not exist.
    pub async fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Some(
                out.body
                    .collect()
                    .await
                    .expect("read object body")
                    .into_bytes()
                    .to_vec(),
            ),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                assert_eq!(status, Some(404), "GetObject {key}: {e:?}");
                None
            }
        }
    }

    /// The manifest stored in S3 for `added`, if any.
    pub async fn stored_manifest(&self, added: &Added) -> Option<Manifest> {
        self.get_object(&self.manifest_key(added))
            .await
            .map(|b| serde_json::from_slice(&b).expect("manifest is JSON"))
    }

    /// Every object key in the bucket, sorted.
    pub async fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .set_continuation_token(token)
                .send()
                .await
                .expect("ListObjectsV2");
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        keys.sort();
        keys
    }

    /// Checkpoint objects under `{prefix}/_state/`.
    pub async fn checkpoints(&self) -> Vec<String> {
        let state = format!("{PREFIX}/_state/");
        self.keys()
            .await
            .into_iter()
            .filter(|k| k.starts_with(&state))
            .collect()
    }

    /// Multipart uploads still open: `(key, upload id)`.
    pub async fn open_uploads(&self) -> Vec<(String, String)> {
        let out = self
            .s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("ListMultipartUploads");
        out.uploads()
            .iter()
            .map(|u| {
                (
                    u.key().unwrap_or_default().to_string(),
                    u.upload_id().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Nothing but manifests and their objects may remain: no upload, no checkpoint.
    pub async fn assert_nothing_left_behind(&self) {
        assert_eq!(
            self.open_uploads().await,
            Vec::<(String, String)>::new(),
            "open multipart uploads"
        );
        assert_eq!(
            self.checkpoints().await,
            Vec::<String>::new(),
            "checkpoints"
        );
    }

    /// Asserts there is no object, manifest, open upload or checkpoint at all.
    pub async fn assert_bucket_empty(&self) {
        assert_eq!(
            self.keys().await,
            Vec::<String>::new(),
            "objects in the bucket"
        );
        assert_eq!(
            self.open_uploads().await,
            Vec::<(String, String)>::new(),
            "open multipart uploads"
        );
    }

    /// Decrypts the archived object with `keyring`, requiring the job's encryption context.
    pub async fn decrypt_with(
        &self,
        object_key: &str,
        job: &TransferJob,
        keyring: Arc<dyn Keyring>,
    ) -> Result<(Vec<u8>, DecryptedInfo), CryptoError> {
        let ciphertext = self
            .get_object(object_key)
            .await
            .expect("archived object exists");
        decrypt_archive(&ciphertext, job, keyring).await
    }

    /// Signed-media requests the simulator saw for one recording, in order.
    pub fn media_requests(&self, recording_id: &str) -> Vec<genesys_sim::RequestRecord> {
        // A media URL's path names the recording (and the rendition) in URL-safe base64.
        let of_recording = |path: &str| {
            let Some(opaque) = path.strip_prefix("/media/") else {
                return false;
            };
            let opaque = opaque.trim_end_matches('=');
            let whole = base64(recording_id.as_bytes(), URL_SAFE);
            if opaque == whole.trim_end_matches('=') {
                return true;
            }
            let prefixed = format!("{recording_id}\n");
            decode_url_safe(opaque).is_some_and(|d| d.starts_with(prefixed.as_bytes()))
        };
        self.sim
            .requests()
            .into_iter()
            .filter(|r| of_recording(&r.path))
            .collect()
    }

    /// The full verification of an archived recording: key layout, manifest fields against the
    /// simulator's media, the part and full-object CRC64NVME (ours and S3's), and a decryption (same keyring, required
    /// encryption context) that yields exactly the simulator's bytes.
    pub async fn verify_archived(
        &self,
        added: &Added,
        manifest: &Manifest,
        ext: &str,
        codec: &str,
    ) {
        let media = self
            .sim
            .media_bytes(&added.recording_id)
            .expect("simulator media");
        let stored = self
            .stored_manifest(added)
            .await
            .expect("manifest stored in S3");
        assert_eq!(&stored, manifest, "the returned manifest is the stored one");
        assert_eq!(manifest.object_key, self.object_key(added, ext));
        assert!(
            manifest.object_key.contains(PARTITION),
            "{}",
            manifest.object_key
        );
        assert_eq!(manifest.bucket, self.bucket);
        assert_eq!(manifest.org_id, self.sim.org_id());
        assert_eq!(manifest.conversation_id, added.conversation_id);
        assert_eq!(manifest.recording_id, added.recording_id);
        assert_eq!(manifest.plaintext.size, media.len() as u64);
        assert_eq!(manifest.plaintext.sha256, sha256_hex(&media));
        assert_eq!(manifest.plaintext.codec, codec);
        // Genesys' outputDurationMs travels into the manifest; the batch download API (the
        // original codec) reports none.
        if manifest.source.format_id != "ORIGINAL" {
            assert!(
                manifest.plaintext.duration_ms.is_some_and(|d| d > 0),
                "{:?}",
                manifest.plaintext.duration_ms
            );
        }
        assert_eq!(manifest.encryption.key_providers, self.key_providers);
        assert_eq!(
            manifest.encryption.encryption_context,
            added.job.encryption_context().as_map().clone()
        );
        let chunk = manifest.source.chunk_size;
        let parts = media.len().div_ceil(chunk as usize);
        assert_eq!(manifest.ciphertext.parts as usize, parts, "part count");
        assert_eq!(manifest.ciphertext.crc64nvme_parts.len(), parts);

        let ciphertext = self
            .get_object(&manifest.object_key)
            .await
            .expect("archived object");
        assert_eq!(manifest.ciphertext.size, ciphertext.len() as u64);
        // Split the object into the parts the engine uploaded and check every part's CRC.
        let sizes = part_sizes(
            ciphertext.len() as u64,
            media.len() as u64,
            chunk,
            manifest.encryption.frame_length,
        );
        let mut at = 0usize;
        for (i, size) in sizes.iter().enumerate() {
            let crc = Crc64Nvme::of(&ciphertext[at..at + *size as usize]);
            assert_eq!(
                manifest.ciphertext.crc64nvme_parts[i],
                base64(&crc.0.to_be_bytes(), STANDARD),
                "part {} checksum",
                i + 1
            );
            at += *size as usize;
        }
        // The whole object's CRC over its bytes (not combined from the parts, as the engine
        // does), and what S3 computed on its own side.
        let whole = base64(&Crc64Nvme::of(&ciphertext).0.to_be_bytes(), STANDARD);
        assert_eq!(
            manifest.ciphertext.s3_checksum_crc64nvme.as_deref(),
            Some(whole.as_str())
        );
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(&manifest.object_key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .expect("HeadObject");
        assert_eq!(
            head.checksum_crc64_nvme(),
            Some(whole.as_str()),
            "S3's full-object CRC64NVME"
        );
        assert_eq!(
            head.checksum_type(),
            Some(&aws_sdk_s3::types::ChecksumType::FullObject)
        );

        let (plain, info) = decrypt_archive(&ciphertext, &added.job, self.keyring.clone())
            .await
            .expect("decrypt the archived object");
        assert_eq!(plain.len(), media.len());
        assert!(
            plain == media,
            "decrypted bytes differ from the simulator's media"
        );
        assert_eq!(info.message_id, manifest.encryption.message_id);
        assert_eq!(info.frame_len, manifest.encryption.frame_length);
    }
}

async fn create_kms_key(kms: &aws_sdk_kms::Client) -> String {
    let key = kms
        .create_key()
        .description("gc-archive transfer tests")
        .send()
        .await
        .expect("CreateKey");
    key.key_metadata()
        .map(|m| m.arn().unwrap_or(m.key_id()).to_string())
        .expect("key metadata")
}

impl Kit {
    /// Another KMS key in the same moto (for wrong-key tests).
    pub async fn other_kms_keyring(&self) -> Arc<dyn Keyring> {
        Arc::new(KmsKeyring::new(
            self.kms.clone(),
            create_kms_key(&self.kms).await,
        ))
    }
}

/// Decrypts an archive requiring the job's encryption context.
pub async fn decrypt_archive(
    ciphertext: &[u8],
    job: &TransferJob,
    keyring: Arc<dyn Keyring>,
) -> Result<(Vec<u8>, DecryptedInfo), CryptoError> {
    let required: EncryptionContext = job.encryption_context();
    decrypt_bytes(
        keyring,
        DecryptOptions {
            required_context: required,
        },
        ciphertext,
    )
    .await
}

/// Ciphertext part sizes of an object the engine wrote: part 1 carries the header, every part
/// but the last holds `chunk / frame_len` regular frames (32 bytes overhead each), the last
/// holds the remainder's regular frames and the final frame (40 bytes overhead).
pub fn part_sizes(total: u64, plaintext: u64, chunk: u64, frame_len: u32) -> Vec<u64> {
    let f = u64::from(frame_len);
    let parts = plaintext.div_ceil(chunk);
    let regular = |len: u64| len / f * (f + 32);
    let middle = regular(chunk);
    let rest = plaintext - (parts - 1) * chunk;
    let full = (rest - 1) / f;
    let last = full * (f + 32) + (rest - full * f) + 40;
    let header = total - (parts - 1) * middle - last;
    let mut sizes = vec![middle; parts as usize];
    sizes[parts as usize - 1] = last;
    sizes[0] += header;
    sizes
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = ResumableSha256::new();
    h.update(data);
    h.finalize()
}

pub fn sha256_hex(data: &[u8]) -> String {
    sha256(data).iter().map(|b| format!("{b:02x}")).collect()
}

const STANDARD: (&[u8; 64], bool) = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
    true,
);
const URL_SAFE: (&[u8; 64], bool) = (
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    false,
);

/// Base64 with the given alphabet and padding choice (S3 checksums: standard, padded; the
/// simulator's media paths: URL-safe, unpadded).
fn base64(data: &[u8], (alphabet, pad): (&[u8; 64], bool)) -> String {
    let mut out = String::new();
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=group.len() {
            out.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
        }
        if pad {
            for _ in group.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// Ranges (`bytes=a-b`) of successful (206/200) signed-media requests, in order.
pub fn served_ranges(requests: &[genesys_sim::RequestRecord]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.status == 206 || r.status == 200)
        .map(|r| r.range.clone().unwrap_or_default())
        .collect()
}

/// URL-safe base64 without padding, decoded (the kit avoids a base64 dependency of its own).
fn decode_url_safe(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
