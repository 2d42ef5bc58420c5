//! Errors as OpenAI's API writes them: `{"error": {"message", "type", "param", "code"}}` with the
//! HTTP status that goes with them. Every message names the field at fault and what is allowed.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// One API error: its status, OpenAI error type, offending parameter and code.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 for a bad value of `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.param = Some(param.to_string());
        e.code = Some("invalid_value");
        e
    }

    /// 400 for a body that is not the JSON the endpoint takes.
    pub fn malformed(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message);
        e.code = Some("invalid_json");
        e
    }

    /// 401: no or a wrong API key.
    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "missing or invalid API key: send `Authorization: Bearer <key>` with the key the \
             server was started with (--api-key or $OC_API_KEY)",
        );
        e.code = Some("invalid_api_key");
        e
    }

    /// 404 for a `model` that is not the one served.
    pub fn model_not_found(asked: &str, served: &str) -> Self {
        let mut e = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("the model `{asked}` does not exist here: this server serves `{served}` (GET /v1/models)"),
        );
        e.param = Some("model".into());
        e.code = Some("model_not_found");
        e
    }

    /// 413 for a body over the cap.
    pub fn too_large(limit: usize) -> Self {
        let mut e = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("the request body exceeds {limit} bytes (the server's --max-body-bytes)"),
        );
        e.code = Some("request_too_large");
        e
    }

    /// 429: the queue is full; try again after `retry_after` seconds.
    pub fn queue_full(depth: usize, retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("the server's queue is full ({depth} requests wait, --max-queue); retry later"),
        );
        e.code = Some("queue_full");
        e.retry_after = Some(retry_after);
        e
    }

    /// 503: the server is shutting down or its decode loop stopped.
    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message);
        e.retry_after = Some(1);
        e
    }

    /// 504: the request ran past the server's --request-timeout.
    pub fn timeout(secs: f64) -> Self {
        let mut e = Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            format!("the request ran past the server's request timeout of {secs} s"),
        );
        e.code = Some("timeout");
        e
    }

    /// 500: decoding failed; the message says where.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The JSON body, also sent as the last SSE event of a stream that fails.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
