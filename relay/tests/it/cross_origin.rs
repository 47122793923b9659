//! The API across origins: the web app of one relay talks to another relay picked from the
//! registry. A real relay on 127.0.0.1:0 (embedded escrow), asked as a browser asks.

use starling_protocol::api::RelayList;

async fn start() -> (String, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = crate::support::relay_config(dir.path()).await;
    let wasm = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/contracts/starling_escrow.wasm");
    config.escrow = starling_relay::EscrowConfig::Embedded(starling_relay::escrow::embedded::EmbeddedConfig::new(wasm));
    let started = starling_relay::start(listener, config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    tokio::spawn(started.finished());
    (base, dir, stop)
}

#[tokio::test]
async fn another_origins_page_may_read_and_sign_but_not_administer() {
    let (base, _dir, _stop) = start().await;
    let http = reqwest::Client::new();
    let origin = "https://another-relay.example";

    // A blob upload's preflight: the signed upload headers are allowed, from any origin.
    let preflight = http
        .request(reqwest::Method::OPTIONS, format!("{base}/v1/blobs/{}", "ab".repeat(32)))
        .header("origin", origin)
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type,starling-key,starling-signature")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let allowed = h["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("starling-signature") && allowed.contains("starling-key"), "{allowed}");
    assert!(h["access-control-allow-methods"].to_str().unwrap().contains("PUT"));
    assert!(h.get("access-control-allow-credentials").is_none(), "no credentials across origins");

    // The operator's route needs `authorization`, which no page of another origin may send.
    let admin = http
        .request(reqwest::Method::OPTIONS, format!("{base}/v1/admin/deposits"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    let allowed = admin
        .headers()
        .get("access-control-allow-headers")
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .unwrap_or_default();
    assert!(!allowed.contains("authorization"), "{allowed}");

    // Reads carry the header; the registry lists this relay, as itself.
    let relays = http.get(format!("{base}/v1/relays")).header("origin", origin).send().await.unwrap();
    assert_eq!(relays.headers()["access-control-allow-origin"], "*");
    let list: RelayList = relays.json().await.unwrap();
    let me = list.this_relay.clone().expect("an escrow names this relay");
    assert_eq!(list.relays.len(), 1, "{list:?}");
    assert_eq!((list.relays[0].address.as_str(), list.relays[0].active), (me.as_str(), true));
}
