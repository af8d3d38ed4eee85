//! archive-on-event: Genesys Cloud conversation-end events (EventBridge → SQS, or EventBridge
//! directly) in; every available recording of the conversation archived, or handed to
//! chunk-recording. All logic is in `gc_archive::handlers::archive_on_event`.

#![forbid(unsafe_code)]

use gc_archive::bootstrap::{deadline_from_epoch_ms, handler_deps};
use gc_archive::handlers::archive_on_event;
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    gc_archive::logging::init_lambda();
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let deps = handler_deps("archive-on-event", &env, &sdk).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = deadline_from_epoch_ms(event.context.deadline);
        archive_on_event(deps, event.payload, deadline, &event.context.request_id)
            .await
            .map_err(|e| Diagnostic {
                error_type: e.kind().to_string(),
                error_message: e.to_string(),
            })
    }))
    .await
}
