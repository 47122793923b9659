//! The app's error type. Every failure ends up in front of a person, so each variant's message is
//! a sentence that says what happened and, where it helps, what to do about it.

use starling_protocol::ErrorBody;
use starling_protocol::error::ErrorReply;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The relay refused the request with a `{code, message}` body.
    #[error("{message}")]
    Api { status: u16, code: String, message: String },
    /// The relay has no such endpoint yet (an older relay): it answered 404 without a JSON error
    /// body, or served something other than JSON.
    #[error("this relay does not offer {endpoint} yet; update the relay to see this")]
    Unsupported { endpoint: String },
    /// The device is offline (the browser says so, or the service worker answered for the relay).
    #[error("you are offline: the relay cannot be reached until the network is back")]
    Offline,
    /// The request never got an answer.
    #[error("the relay could not be reached ({0})")]
    Network(String),
    /// The relay answered, but not with what this page expects.
    #[error("the relay sent an answer this page cannot read ({0})")]
    Decode(String),
    /// A browser API failed or is missing.
    #[error("{0}")]
    Browser(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The codes of the service worker's stand-in answers (`www/sw.js`) when the relay cannot be
/// reached: the device is offline, or online but the relay does not answer.
pub const OFFLINE_CODE: &str = "offline";
pub const UNREACHABLE_CODE: &str = "unreachable";

impl Error {
    /// Interprets a non-success HTTP answer from `endpoint` (`"GET /v1/workers/{key}"`).
    pub fn from_response(endpoint: &str, status: u16, content_type: Option<&str>, body: &[u8]) -> Error {
        let json = content_type.is_some_and(|t| t.contains("json"));
        if json && let Ok(error) = serde_json::from_slice::<ErrorReply>(body) {
            if error.code == OFFLINE_CODE {
                return Error::Offline;
            }
            if error.code == UNREACHABLE_CODE {
                return Error::Network(error.message);
            }
            return Error::Api { status, code: error.code, message: error.message };
        }
        if status == 404 || status == 405 {
            return Error::Unsupported { endpoint: endpoint.to_string() };
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() || !json {
            Error::Api { status, code: String::new(), message: format!("the relay answered HTTP {status}") }
        } else {
            Error::Api { status, code: String::new(), message: format!("the relay answered HTTP {status}: {text}") }
        }
    }

    /// The relay's error code, when it sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } if !code.is_empty() => Some(code),
            Error::Offline => Some(OFFLINE_CODE),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some("not_found")
    }
}

impl From<ErrorBody> for Error {
    fn from(body: ErrorBody) -> Self {
        let code = serde_json::to_value(body.code).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        Error::Api { status: body.code.http_status(), code, message: body.message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_bodies_keep_code_and_message() {
        let e = Error::from_response(
            "POST /v1/jobs",
            400,
            Some("application/json"),
            br#"{"code":"invalid_wgsl","message":"3:7: expected ';'"}"#,
        );
        assert_eq!(e.code(), Some("invalid_wgsl"));
        assert_eq!(e.to_string(), "3:7: expected ';'");
    }

    #[test]
    fn missing_endpoints_are_named() {
        let e = Error::from_response("GET /v1/clients/ab", 404, None, b"");
        assert_eq!(e, Error::Unsupported { endpoint: "GET /v1/clients/ab".into() });
        assert!(e.to_string().contains("GET /v1/clients/ab"));
        // A relay that knows the route but not the key answers a JSON not_found.
        let e = Error::from_response(
            "GET /v1/workers/ab",
            404,
            Some("application/json"),
            br#"{"code":"not_found","message":"worker ab"}"#,
        );
        assert!(e.is_not_found());
    }

    #[test]
    fn the_service_workers_offline_answer_reads_as_offline() {
        let e = Error::from_response(
            "GET /v1/health",
            503,
            Some("application/json"),
            br#"{"code":"offline","message":"x"}"#,
        );
        assert_eq!(e, Error::Offline);
        let e = Error::from_response(
            "GET /v1/health",
            503,
            Some("application/json"),
            br#"{"code":"unreachable","message":"connection refused"}"#,
        );
        assert_eq!(e, Error::Network("connection refused".into()));
    }

    #[test]
    fn other_failures_say_the_status() {
        let e = Error::from_response("GET /v1/health", 502, Some("text/plain"), b"Bad Gateway");
        assert_eq!(e.to_string(), "the relay answered HTTP 502");
    }
}
