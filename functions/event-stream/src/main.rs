//! event-stream: on a schedule, consumes Genesys Cloud's Notifications API socket until the
//! deadline and hands off to the next invocation; every conversation end goes to the
//! ArchiveQueue, and every interval without a socket is filled from analytics. All logic is
//! in `gc_archive::stream` and `gc_archive::handlers::event_stream`.

#![forbid(unsafe_code)]

use gc_archive::bootstrap::{deadline_from_epoch_ms, stream_runtime};
use gc_archive::handlers::event_stream::event_stream;
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    gc_archive::logging::init_lambda();
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runtime = stream_runtime(&env, &sdk).await?;
    let runtime = &runtime;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_from_epoch_ms(event.context.deadline);
        event_stream(runtime, event.payload, deadline)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.kind().to_string(),
                error_message: e.to_string(),
            })
    }))
    .await
}
