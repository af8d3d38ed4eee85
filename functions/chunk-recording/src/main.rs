//! chunk-recording: the resumable transfer worker. One TransferQueue message = one recording;
//! checkpoints and re-queues itself before the Lambda deadline. All logic is in
//! `gc_archive::handlers::chunk_recording`.

#![forbid(unsafe_code)]

use gc_archive::bootstrap::{deadline_from_epoch_ms, handler_deps};
use gc_archive::handlers::chunk_recording;
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    gc_archive::logging::init_lambda();
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = handler_deps("chunk-recording", &env, &sdk).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_from_epoch_ms(event.context.deadline);
        chunk_recording(deps, event.payload, deadline, &event.context.request_id)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.kind().to_string(),
                error_message: e.to_string(),
            })
    }))
    .await
}
