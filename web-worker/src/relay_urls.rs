//! A relay's endpoints, from the origin a worker is given.

/// The relay's endpoints, derived from the origin the page passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayUrls {
    /// `ws(s)://host/v1/workers/ws`.
    pub socket: String,
    /// `http(s)://host`, the prefix for `/v1/blobs/{hash}`.
    pub http: String,
}

impl RelayUrls {
    /// Accepts only `http://` and `https://` origins (a path is tolerated and dropped of its
    /// trailing slash); anything else is refused rather than guessed at.
    pub fn from_origin(relay: &str) -> Result<RelayUrls, String> {
        let base = relay.trim().trim_end_matches('/');
        let (socket_scheme, rest) = if let Some(rest) = base.strip_prefix("https://") {
            ("wss", rest)
        } else if let Some(rest) = base.strip_prefix("http://") {
            ("ws", rest)
        } else {
            return Err(format!("relay must be an http:// or https:// origin, got {relay:?}"));
        };
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
            return Err(format!("relay must be an http:// or https:// origin, got {relay:?}"));
        }
        Ok(RelayUrls { socket: format!("{socket_scheme}://{rest}/v1/workers/ws"), http: base.to_string() })
    }

    pub fn blob(&self, hash: &starling_protocol::Hash32) -> String {
        format!("{}/v1/blobs/{hash}", self.http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_origins_map_to_endpoints() {
        let urls = RelayUrls::from_origin("http://127.0.0.1:8080/").unwrap();
        assert_eq!(urls.socket, "ws://127.0.0.1:8080/v1/workers/ws");
        assert_eq!(urls.http, "http://127.0.0.1:8080");
        let hash = starling_protocol::sha256(b"x");
        assert_eq!(urls.blob(&hash), format!("http://127.0.0.1:8080/v1/blobs/{hash}"));
        assert_eq!(
            RelayUrls::from_origin("https://relay.example").unwrap().socket,
            "wss://relay.example/v1/workers/ws"
        );
        for bad in ["", "relay.example", "ws://relay.example", "http://", "http:///x", "http://a b", "file:///etc"] {
            assert!(RelayUrls::from_origin(bad).is_err(), "{bad:?}");
        }
    }
}
