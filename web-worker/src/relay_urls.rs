//! A relay's endpoints, from the origin a worker is given.

/// How many relays a worker may be given.
pub const MAX_RELAYS: usize = 16;

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

    /// Several relays of one network, comma-separated (`http://a:7070,http://b:7070`): a worker
    /// works for the first and moves to the next when its connection is lost. At most
    /// [`MAX_RELAYS`], no duplicates.
    pub fn from_origins(relays: &str) -> Result<Vec<RelayUrls>, String> {
        let list = relays.split(',').map(RelayUrls::from_origin).collect::<Result<Vec<_>, _>>()?;
        if list.len() > MAX_RELAYS {
            return Err(format!("at most {MAX_RELAYS} relays, got {}", list.len()));
        }
        if list.iter().enumerate().any(|(i, u)| list[..i].contains(u)) {
            return Err(format!("a relay is named twice in {relays:?}"));
        }
        Ok(list)
    }

    pub fn blob(&self, hash: &starling_protocol::Hash32) -> String {
        format!("{}/v1/blobs/{hash}", self.http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_relays_is_read_in_order_without_repeats() {
        let list = RelayUrls::from_origins("http://a:1,https://b").unwrap();
        assert_eq!(
            list.iter().map(|u| u.socket.as_str()).collect::<Vec<_>>(),
            ["ws://a:1/v1/workers/ws", "wss://b/v1/workers/ws"]
        );
        assert_eq!(RelayUrls::from_origins("http://a:1").unwrap().len(), 1);
        assert!(RelayUrls::from_origins("http://a:1,http://a:1/").is_err(), "the same relay twice");
        assert!(RelayUrls::from_origins("http://a:1,").is_err(), "an empty entry");
        assert!(RelayUrls::from_origins("http://a:1,ftp://b").is_err());
        let many = (0..17).map(|i| format!("http://h{i}")).collect::<Vec<_>>().join(",");
        assert!(RelayUrls::from_origins(&many).is_err());
    }

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
