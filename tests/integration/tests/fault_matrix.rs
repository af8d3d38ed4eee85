//! The transfer engine against faults injected on the wire by an independent reverse proxy
//! ([`gc_archive_it::fault_proxy`]) between the engine and the Genesys Cloud simulator: every
//! fault kind, on a one-part and a multi-part recording.
//!
//! Every cell asserts the same contract: the run ends either `Archived` with an object that
//! decrypts to exactly the simulator's bytes, or in a typed error with nothing visible (no
//! object, no manifest) and nothing orphaned (an open multipart upload only when a checkpoint
//! records its uploaded parts for the resume); and a fault-free re-run then leaves a
//! byte-identical archive and nothing else. Faults a retry must absorb (one bad response) must
//! end `Archived`. Each test prints its matrix (`--nocapture`).
//!
//! Not here: killing the worker mid-transfer (the crash tests in `transfer.rs`).

use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use gc_archive::config::GenesysCredentials;
use gc_archive::genesys::GenesysClient;
use gc_archive::retry::RetryPolicy;
use gc_archive::store::manifest::Manifest;
use gc_archive::transfer::engine::TransferDeps;
use gc_archive::transfer::{transfer_recording, TransferError, TransferOutcome};
use gc_archive_it::fault_proxy::{FaultKind, FaultProxy, FaultRule, RequestClass};
use gc_archive_it::transfer_kit::*;
use genesys_sim::{MediaSource, RangeSupport, RecordingSpec, SimConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Size {
    OnePart,
    MultiPart,
}

impl Size {
    const BOTH: [Size; 2] = [Size::OnePart, Size::MultiPart];

    fn bytes(self) -> u64 {
        match self {
            Size::OnePart => SMALL_CHUNK - 1_000,
            // Four parts, the last one short.
            Size::MultiPart => 3 * SMALL_CHUNK + 12_346,
        }
    }
}

/// What a cell may end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A retry must absorb the fault.
    Archived,
    /// Archived, or a typed failure that leaves nothing behind.
    ArchivedOrCleanFailure,
}

struct Case {
    label: String,
    /// The rules for a recording of this size; `None`: the case does not apply to it.
    rules: Box<dyn Fn(Size) -> Option<Vec<FaultRule>>>,
    expect: Expect,
}

impl Case {
    fn new(
        label: impl Into<String>,
        expect: Expect,
        rules: impl Fn(Size) -> Option<Vec<FaultRule>> + 'static,
    ) -> Case {
        Case {
            label: label.into(),
            rules: Box::new(rules),
            expect,
        }
    }
}

fn media(kind: FaultKind) -> FaultRule {
    FaultRule::new(RequestClass::Media, kind)
}

/// The four placements every media fault is tried in: once on the first media request (the
/// probe), once on a later one, on every request, and on every request after the first.
fn media_cases(kind: FaultKind, once: Expect, always: Expect) -> Vec<Case> {
    let k = || kind.clone();
    let (k1, k2, k3, k4) = (k(), k(), k(), k());
    vec![
        Case::new("once, first request", once, move |_| {
            Some(vec![media(k1.clone())])
        }),
        Case::new("once, a later request", once, move |s| {
            (s == Size::MultiPart).then(|| vec![media(k2.clone()).skip(1)])
        }),
        Case::new("every request", always, move |_| {
            Some(vec![media(k3.clone()).forever()])
        }),
        Case::new("every request after the first", always, move |s| {
            (s == Size::MultiPart).then(|| vec![media(k4.clone()).skip(1).forever()])
        }),
    ]
}

fn status(status: u16, retry_after_secs: Option<u64>) -> FaultKind {
    FaultKind::Status {
        status,
        retry_after_secs,
    }
}

/// A matrix of cases against one kit and one proxy.
struct Matrix {
    title: String,
    /// Whether the media host sends integrity evidence (checksum headers).
    source_evidence: bool,
    kit: Kit,
    proxy: FaultProxy,
    read_timeout: Duration,
    table: Vec<(String, Vec<String>)>,
    failures: Vec<String>,
}

/// What one transfer ended in, for the table.
fn outcome_label(r: &Result<TransferOutcome, TransferError>) -> String {
    match r {
        Ok(TransferOutcome::Archived(_)) => "archived".into(),
        Ok(TransferOutcome::AlreadyArchived { .. }) => "already archived".into(),
        Ok(TransferOutcome::Suspended { .. }) => "suspended".into(),
        Err(e) => format!("err {}", e.reason_code()),
    }
}

impl Matrix {
    async fn start(title: &str, media_checksums: bool, read_timeout: Duration) -> Matrix {
        let base = KitOptions::default();
        let opts = KitOptions {
            sim: SimConfig {
                behaviour: genesys_sim::Behaviour {
                    // Ranged transfers, whatever the simulator's or the kit's default.
                    range: RangeSupport::Honoured,
                    media_checksums,
                    ..base.sim.behaviour.clone()
                },
                // Batch download jobs complete at the first poll: no polling waits.
                batch_polls: 0,
                ..base.sim.clone()
            },
            ..base
        };
        let kit = Kit::start_with(opts).await;
        let proxy = FaultProxy::start(&kit.sim.base_url())
            .await
            .expect("start the fault proxy");
        Matrix {
            source_evidence: media_checksums,
            title: title.to_string(),
            kit,
            proxy,
            read_timeout,
            table: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// A fresh client (fresh token cache) that reaches Genesys only through the proxy.
    fn deps(&self) -> TransferDeps {
        let base = self.proxy.url();
        let genesys = GenesysClient::with_http(
            gc_archive::genesys::client::http_client(self.read_timeout).expect("http client"),
            &base,
            &base,
            GenesysCredentials {
                client_id: self.kit.sim.client_id().to_string(),
                client_secret: self.kit.sim.client_secret().to_string().into(),
            },
            RetryPolicy::default().with_base_delay(Duration::from_millis(5)),
        );
        TransferDeps {
            genesys,
            store: self.kit.store.clone(),
            keyring: self.kit.keyring.clone(),
        }
    }

    async fn run_cases(&mut self, fault: &str, cases: Vec<Case>) {
        for case in cases {
            let mut cells = Vec::new();
            for size in Size::BOTH {
                let Some(rules) = (case.rules)(size) else {
                    cells.push("-".to_string());
                    continue;
                };
                let name = format!("{fault} / {} / {size:?}", case.label);
                let cell = AssertUnwindSafe(self.cell(size, rules, case.expect))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        let msg = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Err(("FAIL (panic)".into(), msg))
                    });
                match cell {
                    Ok(label) => cells.push(label),
                    Err((label, why)) => {
                        self.failures.push(format!("{name}: {why}"));
                        cells.push(label);
                    }
                }
            }
            self.table.push((format!("{fault}: {}", case.label), cells));
        }
    }

    /// One run with the fault, then a fault-free run. `Ok(label)` or `Err((label, why))`.
    async fn cell(
        &self,
        size: Size,
        rules: Vec<FaultRule>,
        expect: Expect,
    ) -> Result<String, (String, String)> {
        let kit = &self.kit;
        let added = kit.add_recording(RecordingSpec::new(MediaSource::SynthWav {
            size_bytes: size.bytes(),
        }));
        let settings = kit.settings("fault-matrix");
        self.proxy.clear();
        self.proxy.clear_requests();
        for rule in rules {
            self.proxy.add(rule);
        }
        let first = transfer_recording(&self.deps(), &added.job, &settings, None).await;
        let fired = self.proxy.faults_applied();
        self.proxy.clear();
        let mut label = outcome_label(&first);
        let fail = |label: &str, why: String| Err((format!("FAIL {label}"), why));
        if fired == 0 {
            return fail(&label, "the fault never applied".into());
        }
        let kept_ciphertext = match &first {
            Ok(TransferOutcome::Archived(m)) => {
                if let Err(why) = check_archive(kit, &added, m, !self.source_evidence).await {
                    return fail(&label, why);
                }
                kit.get_object(&m.object_key).await
            }
            Ok(other) => return fail(&label, format!("unexpected outcome {other:?}")),
            Err(e) => {
                if matches!(
                    e,
                    TransferError::Invariant(_) | TransferError::TaskFailed { .. }
                ) {
                    return fail(&label, format!("an engine failure, not the fault's: {e}"));
                }
                if expect == Expect::Archived {
                    return fail(&label, format!("a retry should have absorbed it: {e}"));
                }
                match check_left_behind(kit, &added).await {
                    Ok(parts) if parts > 0 => label.push_str(&format!(" (kept {parts}p)")),
                    Ok(_) => {}
                    Err(why) => return fail(&label, format!("{e}: {why}")),
                }
                None
            }
        };

        let rerun = transfer_recording(&self.deps(), &added.job, &settings, None).await;
        let manifest = match (&rerun, kept_ciphertext) {
            (Ok(TransferOutcome::Archived(m)), None) => {
                label.push_str(" -> ok");
                (**m).clone()
            }
            (Ok(TransferOutcome::AlreadyArchived { .. }), Some(before)) => {
                let Some(m) = kit.stored_manifest(&added).await else {
                    return fail(&label, "the manifest vanished".into());
                };
                if kit.get_object(&m.object_key).await.as_deref() != Some(before.as_slice()) {
                    return fail(&label, "the archived object changed".into());
                }
                m
            }
            (other, _) => {
                return fail(
                    &format!("{label} -> {}", outcome_label(other)),
                    format!("fault-free re-run: {other:?}"),
                )
            }
        };
        if let Err(why) = check_archive(kit, &added, &manifest, !self.source_evidence).await {
            return fail(&label, format!("after the re-run: {why}"));
        }
        if let Err(why) = check_nothing_in_progress(kit, &added).await {
            return fail(&label, format!("after the re-run: {why}"));
        }
        Ok(label)
    }

    /// Prints the matrix in one piece (tests run in parallel) and fails with every failure.
    fn finish(self) {
        let width = self
            .table
            .iter()
            .map(|(n, _)| n.len())
            .max()
            .unwrap_or(10)
            .max(10);
        let col = self
            .table
            .iter()
            .flat_map(|(_, c)| c.iter().map(String::len))
            .max()
            .unwrap_or(8)
            .max(8);
        let mut out = format!("\n== fault matrix: {} ==\n", self.title);
        let _ = writeln!(
            out,
            "| {:width$} | {:col$} | {:col$} |",
            "fault: placement", "one part", "4 parts"
        );
        let _ = writeln!(
            out,
            "|{:-<w$}|{:-<c$}|{:-<c$}|",
            "",
            "",
            "",
            w = width + 2,
            c = col + 2
        );
        for (name, cells) in &self.table {
            let _ = writeln!(
                out,
                "| {name:width$} | {:col$} | {:col$} |",
                cells.first().map_or("", String::as_str),
                cells.get(1).map_or("", String::as_str)
            );
        }
        println!("{out}");
        assert!(
            self.failures.is_empty(),
            "{} cell(s) broke the contract:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

/// The archive is the simulator's media: stored manifest = returned manifest, plaintext digest
/// and size, and a decryption that yields exactly the media bytes. With `allow_unverified`
/// (the media host sent no integrity evidence), different bytes are accepted only from an
/// archive whose manifest says it had no source evidence: nobody could have told.
async fn check_archive(
    kit: &Kit,
    added: &Added,
    manifest: &Manifest,
    allow_unverified: bool,
) -> Result<(), String> {
    let media = kit
        .sim
        .media_bytes(&added.recording_id)
        .ok_or("the simulator has no media")?;
    match kit.stored_manifest(added).await {
        Some(stored) if &stored == manifest => {}
        Some(_) => return Err("the stored manifest differs from the returned one".into()),
        None => return Err("no manifest stored".into()),
    }
    let (plain, _) = kit
        .decrypt_with(&manifest.object_key, &added.job, kit.keyring.clone())
        .await
        .map_err(|e| format!("the archive does not decrypt: {e}"))?;
    if plain != media && allow_unverified && manifest.source.integrity == ["none"] {
        return Ok(());
    }
    if plain != media {
        let at = plain
            .iter()
            .zip(&media)
            .position(|(a, b)| a != b)
            .unwrap_or(plain.len().min(media.len()));
        return Err(format!(
            "the archived bytes differ from the source ({} vs {} bytes, first difference at \
             {at}) and the transfer called it archived",
            plain.len(),
            media.len()
        ));
    }
    if manifest.plaintext.size != media.len() as u64
        || manifest.plaintext.sha256 != sha256_hex(&media)
    {
        return Err("the manifest's plaintext size or SHA-256 is not the source's".into());
    }
    Ok(())
}

/// Keys of this recording: `(visible, checkpoints)`.
async fn recording_keys(kit: &Kit, added: &Added) -> (Vec<String>, Vec<String>) {
    let state = format!("{PREFIX}/_state/");
    kit.keys()
        .await
        .into_iter()
        .filter(|k| k.contains(&added.recording_id))
        .partition(|k| !k.starts_with(&state))
}

async fn recording_uploads(kit: &Kit, added: &Added) -> Vec<(String, String)> {
    kit.open_uploads()
        .await
        .into_iter()
        .filter(|(k, _)| k.contains(&added.recording_id))
        .collect()
}

/// After a failure: nothing visible, and an open upload only as part of a checkpoint that
/// records uploaded parts. Returns how many parts that checkpoint keeps.
async fn check_left_behind(kit: &Kit, added: &Added) -> Result<usize, String> {
    let (visible, checkpoints) = recording_keys(kit, added).await;
    if !visible.is_empty() {
        return Err(format!("visible after a failure: {visible:?}"));
    }
    let uploads = recording_uploads(kit, added).await;
    let Some(cp_key) = checkpoints.first() else {
        return if uploads.is_empty() {
            Ok(0)
        } else {
            Err(format!("orphaned multipart uploads: {uploads:?}"))
        };
    };
    if checkpoints.len() > 1 {
        return Err(format!("several checkpoints: {checkpoints:?}"));
    }
    let body = kit.get_object(cp_key).await.ok_or("checkpoint vanished")?;
    let cp: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("checkpoint is not JSON: {e}"))?;
    let upload = &cp["upload"];
    let parts = upload["parts"].as_array().map_or(0, Vec::len);
    if parts == 0 {
        return Err(format!(
            "a checkpoint without uploaded parts remains ({cp_key}), with uploads {uploads:?}"
        ));
    }
    let recorded = (
        upload["objectKey"].as_str().unwrap_or_default().to_string(),
        upload["uploadId"].as_str().unwrap_or_default().to_string(),
    );
    if uploads != vec![recorded.clone()] {
        return Err(format!(
            "open uploads {uploads:?} are not exactly the checkpoint's {recorded:?}"
        ));
    }
    Ok(parts)
}

/// After a successful run: no checkpoint, no open upload of this recording.
async fn check_nothing_in_progress(kit: &Kit, added: &Added) -> Result<(), String> {
    let (_, checkpoints) = recording_keys(kit, added).await;
    let uploads = recording_uploads(kit, added).await;
    if checkpoints.is_empty() && uploads.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "left behind: checkpoints {checkpoints:?}, uploads {uploads:?}"
        ))
    }
}

const READ_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn reset_and_truncated_responses_are_retried_or_fail_cleanly() {
    use Expect::*;
    let mut m = Matrix::start("connection reset / truncated body", false, READ_TIMEOUT).await;
    for (name, kind) in [
        ("Reset@1000", FaultKind::Reset { after_bytes: 1000 }),
        ("Reset@0", FaultKind::Reset { after_bytes: 0 }),
        ("Truncate@1000", FaultKind::Truncate { after_bytes: 1000 }),
    ] {
        m.run_cases(name, media_cases(kind, Archived, ArchivedOrCleanFailure))
            .await;
    }
    // The API answers: the batch submission (a POST) and the job poll (a GET).
    for (name, kind) in [
        ("Reset@10", FaultKind::Reset { after_bytes: 10 }),
        ("Truncate@10", FaultKind::Truncate { after_bytes: 10 }),
    ] {
        let (k1, k2) = (kind.clone(), kind.clone());
        m.run_cases(
            name,
            vec![
                Case::new(
                    "api, once, first request",
                    ArchivedOrCleanFailure,
                    move |_| Some(vec![FaultRule::new(RequestClass::Api, k1.clone())]),
                ),
                Case::new("api, once, the job poll", Archived, move |_| {
                    Some(vec![FaultRule::new(RequestClass::Api, k2.clone())
                        .path_contains("batchrequests/")])
                }),
            ],
        )
        .await;
    }
    m.finish();
}

/// A token response cut short by the network is a transient failure like any other: the next
/// attempt gets a token. (Kept apart from the media rows above so that a failure here reads as
/// what it is.)
#[tokio::test]
async fn a_token_response_cut_short_is_retried() {
    let mut m = Matrix::start("token response cut short", false, READ_TIMEOUT).await;
    for (name, kind) in [
        ("Reset@10", FaultKind::Reset { after_bytes: 10 }),
        ("Truncate@10", FaultKind::Truncate { after_bytes: 10 }),
    ] {
        m.run_cases(
            name,
            vec![Case::new("token, once", Expect::Archived, move |_| {
                Some(vec![FaultRule::new(RequestClass::Token, kind.clone())])
            })],
        )
        .await;
    }
    m.finish();
}

#[tokio::test]
async fn ignored_and_misreported_ranges_are_handled() {
    use Expect::*;
    let mut m = Matrix::start("Range dropped / Content-Range wrong", false, READ_TIMEOUT).await;
    m.run_cases(
        "DropRange",
        media_cases(FaultKind::DropRange, Archived, ArchivedOrCleanFailure),
    )
    .await;
    for shift in [1000, -1] {
        m.run_cases(
            &format!("WrongContentRange{shift:+}"),
            media_cases(
                FaultKind::WrongContentRange { shift },
                Archived,
                ArchivedOrCleanFailure,
            ),
        )
        .await;
    }
    m.finish();
}

#[tokio::test]
async fn a_stall_longer_than_the_read_timeout_is_retried_or_fails_cleanly() {
    use Expect::*;
    // A short read timeout, so that a stall beyond it costs seconds, not minutes.
    let mut m = Matrix::start(
        "stalled body (read timeout 1 s)",
        false,
        Duration::from_secs(1),
    )
    .await;
    m.run_cases(
        "Stall 300ms",
        media_cases(
            FaultKind::Stall {
                after_bytes: 1000,
                for_ms: 300,
            },
            Archived,
            Archived,
        ),
    )
    .await;
    m.run_cases(
        "Stall 2.5s",
        media_cases(
            FaultKind::Stall {
                after_bytes: 1000,
                for_ms: 2500,
            },
            Archived,
            ArchivedOrCleanFailure,
        ),
    )
    .await;
    m.finish();
}

#[tokio::test]
async fn error_status_storms_are_retried_or_fail_cleanly() {
    use Expect::*;
    let mut m = Matrix::start("error statuses", false, READ_TIMEOUT).await;
    let media_storm = |label: &str, kind: FaultKind, times: u32, expect: Expect| {
        Case::new(label, expect, move |_| {
            Some(vec![media(kind.clone()).times(times)])
        })
    };
    let api_storm = |label: &str,
                     class: RequestClass,
                     path: Option<&str>,
                     kind: FaultKind,
                     times: u32,
                     expect: Expect| {
        let path = path.map(str::to_string);
        Case::new(label, expect, move |_| {
            let mut rule = FaultRule::new(class, kind.clone()).times(times);
            rule.path_contains = path.clone();
            Some(vec![rule])
        })
    };
    m.run_cases(
        "Status",
        vec![
            media_storm("media 500 x2", status(500, None), 2, Archived),
            media_storm("media 502 x2", status(502, None), 2, Archived),
            media_storm("media 503 x3", status(503, None), 3, Archived),
            media_storm(
                "media 429 Retry-After 1 x1",
                status(429, Some(1)),
                1,
                Archived,
            ),
            media_storm(
                "media 503 forever",
                status(503, None),
                u32::MAX,
                ArchivedOrCleanFailure,
            ),
            media_storm(
                "media 404 forever",
                status(404, None),
                u32::MAX,
                ArchivedOrCleanFailure,
            ),
            media_storm(
                "media 403 forever",
                status(403, None),
                u32::MAX,
                ArchivedOrCleanFailure,
            ),
        ],
    )
    .await;
    m.run_cases(
        "Status",
        vec![
            Case::new(
                "media 503 forever after the first",
                ArchivedOrCleanFailure,
                |s| {
                    (s == Size::MultiPart).then(|| vec![media(status(503, None)).skip(1).forever()])
                },
            ),
            Case::new(
                "media 404 forever after the first",
                ArchivedOrCleanFailure,
                |s| {
                    (s == Size::MultiPart).then(|| vec![media(status(404, None)).skip(1).forever()])
                },
            ),
        ],
    )
    .await;
    m.run_cases(
        "Status",
        vec![
            api_storm(
                "api poll 503 x2",
                RequestClass::Api,
                Some("batchrequests/"),
                status(503, None),
                2,
                Archived,
            ),
            api_storm(
                "api poll 429 Retry-After 1 x1",
                RequestClass::Api,
                Some("batchrequests/"),
                status(429, Some(1)),
                1,
                Archived,
            ),
            api_storm(
                "api 502 x1",
                RequestClass::Api,
                None,
                status(502, None),
                1,
                ArchivedOrCleanFailure,
            ),
            api_storm(
                "api 500 forever",
                RequestClass::Api,
                None,
                status(500, None),
                u32::MAX,
                ArchivedOrCleanFailure,
            ),
            api_storm(
                "token 503 x2",
                RequestClass::Token,
                None,
                status(503, None),
                2,
                Archived,
            ),
            api_storm(
                "token 500 forever",
                RequestClass::Token,
                None,
                status(500, None),
                u32::MAX,
                ArchivedOrCleanFailure,
            ),
        ],
    )
    .await;
    m.finish();
}

#[tokio::test]
async fn an_expired_token_is_renewed_even_mid_transfer_or_fails_cleanly() {
    use Expect::*;
    let mut m = Matrix::start("expired access token", false, READ_TIMEOUT).await;
    let expire = || FaultRule::new(RequestClass::Api, FaultKind::ExpireToken);
    // Mid-transfer: a media URL is refused (expired), so the engine asks the API for a fresh
    // one, and that request meets the expired token. The first two API calls (the batch
    // submission and its poll) pass.
    let url_refused = |s: Size| media(status(403, None)).skip(u32::from(s == Size::MultiPart));
    m.run_cases(
        "ExpireToken",
        vec![
            Case::new("first api request", Archived, move |_| Some(vec![expire()])),
            Case::new(
                "first api request, twice",
                ArchivedOrCleanFailure,
                move |_| Some(vec![expire().times(2)]),
            ),
            Case::new("api forever", ArchivedOrCleanFailure, move |_| {
                Some(vec![expire().forever()])
            }),
            Case::new("mid-transfer url refresh, once", Archived, move |s| {
                Some(vec![url_refused(s), expire().skip(2)])
            }),
            Case::new(
                "mid-transfer url refresh, forever",
                ArchivedOrCleanFailure,
                move |s| Some(vec![url_refused(s), expire().skip(2).forever()]),
            ),
        ],
    )
    .await;
    m.finish();
}

#[tokio::test]
async fn a_wrong_content_type_is_retried_or_fails_cleanly() {
    use Expect::*;
    let mut m = Matrix::start("wrong Content-Type", false, READ_TIMEOUT).await;
    for ct in ["text/html", "application/json"] {
        m.run_cases(
            &format!("WrongContentType {ct}"),
            media_cases(
                FaultKind::WrongContentType(ct.into()),
                Archived,
                ArchivedOrCleanFailure,
            ),
        )
        .await;
    }
    m.finish();
}

/// A flipped byte must never be archived as good. Here the media host sends integrity evidence
/// (an MD5 `ETag` and, on request, `x-amz-checksum-sha256` for whole-object responses), so a
/// transfer can catch the flip: a typed failure, or an archive of the true bytes (after a
/// re-fetch), are both right; an archive of the flipped bytes is not.
#[tokio::test]
async fn a_flipped_media_byte_is_never_archived_as_good() {
    let mut m = Matrix::start("flipped byte, host sends checksums", true, READ_TIMEOUT).await;
    flip_rows(&mut m).await;
    m.finish();
}

/// The same without any integrity evidence from the media host: a flipped byte cannot be told
/// from a true one, so an archive of it is acceptable only when its manifest says so
/// (`source.integrity == ["none"]`); Ogg media still carries page CRCs.
#[tokio::test]
async fn a_flipped_media_byte_without_source_checksums_is_never_archived_as_good() {
    let mut m = Matrix::start("flipped byte, host sends no checksums", false, READ_TIMEOUT).await;
    flip_rows(&mut m).await;
    m.finish();
}

async fn flip_rows(m: &mut Matrix) {
    use Expect::*;
    m.run_cases(
        "FlipByte@5000",
        media_cases(
            FaultKind::FlipByte { offset: 5000 },
            ArchivedOrCleanFailure,
            ArchivedOrCleanFailure,
        ),
    )
    .await;
    // The recording's last byte (the final frame). In the multi-part recording byte 12345 of
    // every later response is flipped: the last part's last byte, and a middle byte of the two
    // parts before it (the three are fetched concurrently, in no fixed order).
    m.run_cases(
        "FlipByte@end",
        vec![Case::new("last byte", ArchivedOrCleanFailure, |s| {
            Some(match s {
                Size::OnePart => vec![media(FaultKind::FlipByte {
                    offset: s.bytes() - 1,
                })],
                Size::MultiPart => vec![media(FaultKind::FlipByte {
                    offset: s.bytes() - 1 - 3 * SMALL_CHUNK,
                })
                .skip(1)
                .times(3)],
            })
        })],
    )
    .await;
}
