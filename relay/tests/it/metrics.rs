//! The network's history and the relay's metrics: a real relay on 127.0.0.1:0 sampling every
//! 50 ms, a real worker connection, and a real job. A page opened later sees the samples taken
//! before it; `/metrics` is Prometheus text with the same figures and the relay's internals.

use crate::support::{connect_worker, cpu_caps};
use starling_protocol::api::NetworkHistory;
use starling_protocol::sign::Keypair;
use std::time::Duration;

#[tokio::test]
async fn the_history_is_kept_before_anyone_looks_and_metrics_are_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut config = crate::support::relay_config(dir.path()).await;
    config.history_every = Duration::from_millis(50);
    let started = starling_relay::start(listener, config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    tokio::spawn(started.finished());
    let _worker = connect_worker(&base, &Keypair::from_seed([5; 32]), cpu_caps(1)).await;
    // Nobody asks for anything for a while: the relay samples on its own.
    tokio::time::sleep(Duration::from_millis(400)).await;

    let http = reqwest::Client::new();
    let history: NetworkHistory =
        http.get(format!("{base}/v1/network/history")).send().await.unwrap().json().await.unwrap();
    assert_eq!(history.every_ms, 50);
    assert!(history.samples.len() >= 3, "samples taken before the page asked: {history:?}");
    assert!(history.samples.windows(2).all(|w| w[0].at_ms <= w[1].at_ms), "oldest first");
    let last = history.samples.last().unwrap();
    assert_eq!(last.workers_online, 1);
    assert_eq!(last.workers_by_backend.get("cpu"), Some(&1), "{last:?}");

    let resp = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = resp.text().await.unwrap();
    // Every sample line is `name{labels} value`, and every metric has its TYPE line.
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let base_name = name.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"].iter().fold(base_name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(text.contains(&format!("# TYPE {family} ")), "no TYPE for {line}");
    }
    for want in
        ["starling_workers_online{backend=\"cpu\"} 1", "starling_jobs_running 0", "starling_commit_seconds_count"]
    {
        assert!(text.contains(want), "{want} in\n{text}");
    }
    let _ = stop.send(());
}
