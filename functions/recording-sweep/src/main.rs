//! recording-sweep: on a schedule, the safety net behind the events (Genesys Cloud analytics
//! since the watermark, every ended conversation without an archive onto the ArchiveQueue)
//! and the continuation of running backfills; on an input event, a backfill or a
//! reconciliation. All logic is in `gc_archive::handlers::recording_sweep`.

#![forbid(unsafe_code)]

use gc_archive::bootstrap::{deadline_from_epoch_ms, sweep_runtime};
use gc_archive::handlers::recording_sweep::recording_sweep;
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    gc_archive::logging::init_lambda();
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runtime = sweep_runtime(&env, &sdk).await?;
    let runtime = &runtime;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_from_epoch_ms(event.context.deadline);
        recording_sweep(runtime, event.payload, deadline)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.kind().to_string(),
                error_message: e.to_string(),
            })
    }))
    .await
}
