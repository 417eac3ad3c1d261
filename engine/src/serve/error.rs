//! The server's two error types: [`ServeError`] (starting and running the server: options,
//! binding, the runtime) and [`ApiError`] (one HTTP request's answer, an OpenAI-style error
//! object with its status).

use std::net::{IpAddr, SocketAddr};

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

/// Why the server did not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback `--host` without an API key (and without `--insecure-public`).
    #[error(
        "--host {host} is not a loopback address: anyone who can reach it could use the server. \
         Give --api-key KEY (or WAVEFRONT_API_KEY), or --insecure-public to serve without one"
    )]
    PublicWithoutKey { host: IpAddr },

    /// A server option out of its range (`slots`, `queue`, `timeout`, `api_key`, `host`).
    #[error("--{option} must be {expected}, got {value}")]
    InvalidOption {
        option: &'static str,
        value: String,
        expected: &'static str,
    },

    #[error("cannot listen on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },

    /// The HTTP side's runtime failed to start or to serve.
    #[error("the HTTP server: {0}")]
    Http(std::io::Error),

    /// The HTTP thread panicked (a bug: handlers answer errors, they do not panic).
    #[error("the HTTP thread panicked")]
    HttpPanicked,

    #[error(transparent)]
    Engine(#[from] Error),
}

/// One request's error: status and OpenAI's error object
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `server_error`, `timeout_error`.
    pub kind: &'static str,
    /// The request field at fault (`temperature`, `messages[1].role`), when there is one.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
        }
    }

    /// 400, `invalid_request_error`, naming `param`.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            param: Some(param.into()),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    /// 400 for a request the body of which is not what the endpoint takes, with no one field
    /// to name (malformed JSON, not an object).
    pub fn bad_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 for a parameter this server does not implement (yet), naming it.
    pub fn unsupported(param: &str, message: impl Into<String>) -> Self {
        Self::invalid(param, message).with_code("unsupported_parameter")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    pub fn queue_full(queue: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!("the server is busy: every slot is generating and the queue ({queue} requests) is full; retry later"),
        )
        .with_code("queue_full")
    }

    pub fn timeout(seconds: f64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            format!("the request ran past the server's timeout ({seconds} s) and was cancelled"),
        )
        .with_code("timeout")
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// The error an engine error answers: a parameter out of range names it, anything else
    /// about the request (its prompt, its chat) is a 400, a failure of the engine itself a 500.
    /// `prompt_param` names the field the prompt came from (`messages` or `prompt`).
    pub fn from_engine(e: &Error, prompt_param: &str) -> Self {
        match e {
            Error::InvalidParam { field, .. } => Self::invalid(*field, e.to_string()),
            Error::InvalidRequest(_)
            | Error::ContextFull { .. }
            | Error::Tokenizer(_)
            | Error::ChatTemplate(_) => Self::invalid(prompt_param, e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        let headers = r.headers_mut();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_name_their_field() {
        let e = Error::invalid_param("top_p", 2.0, "in (0, 1] (1 = off)");
        let a = ApiError::from_engine(&e, "messages");
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(a.param.as_deref(), Some("top_p"));
        assert_eq!(
            a.body()["error"]["message"],
            "top_p must be in (0, 1] (1 = off), got 2"
        );
        let t = ApiError::from_engine(
            &Error::ChatTemplate("roles must alternate".into()),
            "messages",
        );
        assert_eq!(t.param.as_deref(), Some("messages"));
        let b = ApiError::from_engine(
            &Error::Backend {
                backend: "cpu",
                op: "alloc".into(),
                detail: "out of memory".into(),
            },
            "prompt",
        );
        assert_eq!(b.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(b.param, None);
    }

    #[test]
    fn a_full_queue_says_when_to_retry() {
        let r = ApiError::queue_full(4).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
