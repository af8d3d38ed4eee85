//! upload-proxy's Lambda Function URL handler: the event becomes an [`ApiRequest`], the
//! answer a Function URL response. Everything else is `crate::upload`.

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;

use crate::upload::{handle, ApiRequest, AuthMode, UploadService};

pub struct UploadRuntime {
    pub service: UploadService,
    pub auth: AuthMode,
}

/// The request a Function URL event carries. A body that is not valid base64 when it says it
/// is becomes an empty one (the API then answers 400).
pub fn api_request(event: &LambdaFunctionUrlRequest) -> ApiRequest {
    let body = match (&event.body, event.is_base64_encoded) {
        (Some(b), true) => Bytes::from(B64.decode(b).unwrap_or_default()),
        (Some(b), false) => Bytes::from(b.clone().into_bytes()),
        (None, _) => Bytes::new(),
    };
    let headers = crate::upload::api::lowercase_headers(&event.headers);
    ApiRequest {
        method: event
            .request_context
            .http
            .method
            .clone()
            .unwrap_or_default(),
        path: event
            .raw_path
            .clone()
            .or_else(|| event.request_context.http.path.clone())
            .unwrap_or_default(),
        headers,
        body,
        iam_principal: event
            .request_context
            .authorizer
            .as_ref()
            .and_then(|a| a.iam.as_ref())
            .and_then(|i| i.user_arn.clone()),
    }
}

pub async fn upload_proxy(
    runtime: &UploadRuntime,
    event: LambdaFunctionUrlRequest,
) -> LambdaFunctionUrlResponse {
    let response = handle(&runtime.service, &runtime.auth, api_request(&event)).await;
    let mut headers = aws_lambda_events::http::HeaderMap::new();
    for (k, v) in &response.headers {
        if let (Ok(k), Ok(v)) = (
            aws_lambda_events::http::HeaderName::from_bytes(k.as_bytes()),
            aws_lambda_events::http::HeaderValue::from_str(v),
        ) {
            headers.insert(k, v);
        }
    }
    let mut out = LambdaFunctionUrlResponse::default();
    out.status_code = i64::from(response.status);
    out.headers = headers;
    out.body = Some(String::from_utf8_lossy(&response.body).into_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_url_event_becomes_an_api_request() {
        let event: LambdaFunctionUrlRequest = serde_json::from_str(
            r#"{"version":"2.0","rawPath":"/uploads/abc","rawQueryString":"",
            "headers":{"X-Upload-Ticket":"t","content-type":"application/json"},
            "requestContext":{"accountId":"123","requestId":"r","timeEpoch":0,
              "authorizer":{"iam":{"userArn":"arn:aws:iam::123:role/caller"}},
              "http":{"method":"POST","path":"/uploads/abc","protocol":"HTTP/1.1","sourceIp":"1.2.3.4","userAgent":"x"}},
            "body":"eyJhIjoxfQ==","isBase64Encoded":true}"#,
        )
        .unwrap();
        let r = api_request(&event);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/uploads/abc");
        assert_eq!(r.headers["x-upload-ticket"], "t");
        assert_eq!(&r.body[..], br#"{"a":1}"#);
        assert_eq!(
            r.iam_principal.as_deref(),
            Some("arn:aws:iam::123:role/caller")
        );
    }
}
