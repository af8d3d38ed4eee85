//! upload-proxy: a Lambda Function URL (AWS_IAM or signed-ticket auth) through which large
//! Web Messaging attachments go straight to S3 in presigned, checksum-bound parts, and are
//! verified and delivered into their conversation. All logic is in `gc_archive::upload` and
//! `gc_archive::handlers::upload_proxy`.

#![forbid(unsafe_code)]

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use gc_archive::bootstrap::upload_runtime;
use gc_archive::handlers::upload_proxy::upload_proxy;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    gc_archive::logging::init_lambda();
    let env = std::env::vars().collect();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let runtime = upload_runtime(&env, &sdk).await?;
    let runtime = &runtime;
    run(service_fn(
        move |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            Ok::<_, Error>(upload_proxy(runtime, event.payload).await)
        },
    ))
    .await
}
