//! `verify` re-reads an archive from S3 and catches any change to it.

use std::sync::Arc;
use std::time::Duration;

use gc_archive::crypto::KmsKeyring;
use gc_archive::verify::verify_archive;
use gc_archive_it::stack::{LocalStack, StackOptions, BUCKET, PREFIX};
use genesys_sim::{Codec, ConversationSpec, MediaSource, RecordingSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_accepts_an_intact_archive_and_reports_a_tampered_one() {
    let stack = LocalStack::start(StackOptions::default()).await.unwrap();
    let cid = stack.sim.add_conversation(ConversationSpec::default());
    let rid = stack.sim.add_recording(
        &cid,
        RecordingSpec::new(MediaSource::Real(Codec::OggVorbis)),
    );
    let deps = stack.deps("chunk-recording").await.unwrap();
    let job = stack.transfer_job(&cid, &rid);
    gc_archive::handlers::chunk_recording(
        &deps,
        job,
        tokio::time::Instant::now() + Duration::from_secs(60),
        "v",
    )
    .await
    .unwrap();
    let listing = stack
        .s3
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(format!("{PREFIX}/{}/", stack.sim.org_id()))
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listing
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    let manifest_key = keys
        .iter()
        .find(|k| k.ends_with(".manifest.json"))
        .unwrap()
        .clone();
    let object_key = keys.iter().find(|k| k.ends_with(".enc")).unwrap().clone();
    let keyring = Arc::new(KmsKeyring::new(
        aws_sdk_kms::Client::new(&stack.sdk),
        stack.key_arn.clone(),
    ));

    let report = verify_archive(&stack.s3, BUCKET, &manifest_key, keyring.clone())
        .await
        .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        report.plaintext_size,
        genesys_sim::real_sample(Codec::OggVorbis).len() as u64
    );

    // Replace the object with a copy that has one byte flipped.
    let mut bytes = stack
        .s3
        .get_object()
        .bucket(BUCKET)
        .key(&object_key)
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes()
        .to_vec();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    stack
        .s3
        .put_object()
        .bucket(BUCKET)
        .key(&object_key)
        .body(bytes.into())
        .send()
        .await
        .unwrap();
    let report = verify_archive(&stack.s3, BUCKET, &manifest_key, keyring)
        .await
        .unwrap();
    assert!(!report.ok());
    assert!(
        report.problems.iter().any(|p| p.contains("S3 checksum")),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("decryption failed")),
        "{:?}",
        report.problems
    );
}
