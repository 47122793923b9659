//! The relay raises its open-file soft limit to what its connection limits need, or refuses to
//! start and says why. Its own test binary: it changes the process's limits.

#[tokio::test]
async fn the_open_file_limit_fits_the_connection_limits_or_the_relay_refuses_to_start() {
    let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
    // The common default soft limit, under which about 1,100 idle sockets used to stop all
    // service while the relay's own limits allowed tens of thousands.
    rlimit::Resource::NOFILE.set(1024.min(hard), hard).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = starling_relay::Config::new(dir.path());
    let needed = starling_relay::serve::descriptors_needed(config.max_workers, config.max_watchers, &config.limits);
    assert!(needed <= hard, "the default limits fit the hard limit ({needed} > {hard})");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = starling_relay::start(listener, config.clone(), async move {
        let _ = stopped.await;
    })
    .await
    .expect("the relay starts with its defaults");
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
    assert!(soft >= needed, "soft limit {soft} raised to at least {needed}");
    drop(stop);
    started.finished().await.unwrap();

    // Limits that the hard limit cannot hold: a clear refusal, before anything is opened.
    config.max_workers = hard as usize;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = starling_relay::start(listener, config, std::future::pending()).await.expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("hard limit") && text.contains("--max-workers"), "{text}");
}
