//! storage-router: on a schedule, the compliance check of every storage target and the audit
//! report of the day before; invoked, a routing document's validation or a report of any
//! period. All logic is in `gc_archive::handlers::storage_router`.

#![forbid(unsafe_code)]

use gc_archive::bootstrap::router_runtime;
use gc_archive::handlers::storage_router::storage_router;
use lambda_runtime::{run, service_fn, Diagnostic, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    gc_archive::logging::init_lambda();
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runtime = router_runtime(&env, &sdk).await?;
    let runtime = &runtime;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        storage_router(runtime, event.payload, chrono::Utc::now())
            .await
            .map_err(|e| Diagnostic {
                error_type: e.kind().to_string(),
                error_message: e.to_string(),
            })
    }))
    .await
}
