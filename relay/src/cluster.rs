//! Several relays on one PostgreSQL database, behaving as one relay to the outside.
//!
//! The relay's decisions (scheduling, leases, verification, settlement, the embedded ledger)
//! are made by one core whose memory is authoritative while it runs (see [`crate::core`]). A
//! cluster keeps exactly that: at any moment one relay *leads* and runs the core; the others
//! *follow*, and hand every connection they accept to the leader with the client's address, so
//! workers, clients and watchers may connect to any relay and see one network.
//!
//! - **Election** is a PostgreSQL session advisory lock, held on a connection of its own. When
//!   the leader dies (a crash, SIGKILL), the database ends its session and frees the lock; a
//!   leader that falls silent (a frozen process, a lost machine or network) loses it after
//!   [`LOCK_IDLE`] (the session's `idle_session_timeout`; the leader pings every [`PING`] and stops
//!   itself when a ping goes unanswered for [`PING_TIMEOUT`]). A follower (each tries every
//!   [`POLL`]) takes the lock, recovers the core from the database exactly as a restarted single
//!   relay does, and serves.
//! - **Fencing**: each leadership has an epoch, bumped by the relay that takes the lock. Every
//!   write the leader's core commits, and every ledger save, first checks (and locks until its
//!   commit) the epoch row: a relay that lost the lead without noticing stores nothing more and
//!   stops at its next write. A leader whose lock connection fails stops at once.
//! - **Hand-over**: a follower opens a connection to the leader's peer address, writes one line
//!   naming the cluster secret (kept in the database: only what can read it is a peer) and the
//!   client's address, then relays bytes both ways. The leader serves such a connection as if the
//!   client had connected to it: connection budgets, distinct networks and logs see the client's
//!   address, not the follower's.
//!
//! What this gives: any relay takes any request; a job posted on one is seen on all; one
//! scheduler keeps its rules over every worker; a relay's death loses nothing committed (the
//! database has it) and stalls nothing longer than a failover. What it does not: the decision
//! core does not scale past one process (the followers carry connections and bytes, the leader
//! decides); partitioning the core by job is future work.

use crate::error::{Error, Result};
use crate::serve;
use crate::store::{Dialect, Store};
use crate::{Config, Started};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use starling_protocol::ErrorCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

/// How a relay joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Where this relay takes connections handed over by the others when it leads. Reachable by
    /// the other relays only: put it on a private interface.
    pub peer_listen: SocketAddr,
    /// The peer address the others connect to (`host:port`), when not the bound one.
    pub advertise: Option<String>,
}

/// The advisory lock key of the leadership ("STARLING" in ASCII).
const LOCK_KEY: i64 = 0x5354_4152_4c49_4e47;
/// How often a follower tries to take the lead and rereads who leads.
pub const POLL: Duration = Duration::from_millis(250);
/// How often the leader checks that its lock connection is alive, and how long it waits.
const PING: Duration = Duration::from_millis(500);
const PING_TIMEOUT: Duration = Duration::from_millis(2000);
/// How long the database keeps a silent leader's lock (its session's `idle_session_timeout`):
/// longer than a leader takes to notice it cannot ping, so it stops before another takes over.
const LOCK_IDLE: Duration = Duration::from_millis(5000);
/// A handed-over connection's first line: its length bound and how long it may take.
const PREAMBLE_MAX: usize = 256;
const PREAMBLE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a follower waits to reach the leader.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The hand-over line's tag (and version).
const PREAMBLE_TAG: &str = "STARLING-PEER/1";

/// What this relay does with a connection now.
#[derive(Clone, Debug)]
enum Role {
    /// Nobody leads yet (or this relay has not read who does).
    Waiting,
    /// Hands connections to the leader at `peer`.
    Follow { peer: String, secret: String },
    /// Serves them itself.
    Lead { serve: mpsc::Sender<(TcpStream, SocketAddr)>, secret: String },
}

/// The hand-over line: the secret, then the client's address.
pub fn preamble(secret: &str, client: SocketAddr) -> String {
    format!("{PREAMBLE_TAG} {secret} {client}\n")
}

/// The client's address from a hand-over line, if the line is well formed and names `secret`.
/// The secrets are compared through their hashes, so the time taken says nothing about how
/// much of a guess was right.
pub fn check_preamble(line: &str, secret: &str) -> Option<SocketAddr> {
    let mut parts = line.strip_suffix('\n')?.split(' ');
    let (tag, given, client) = (parts.next()?, parts.next()?, parts.next()?);
    if tag != PREAMBLE_TAG || parts.next().is_some() {
        return None;
    }
    (Sha256::digest(given.as_bytes()) == Sha256::digest(secret.as_bytes())).then_some(())?;
    client.parse().ok()
}

/// Reads a hand-over line byte by byte (nothing after it is consumed), within [`PREAMBLE_MAX`]
/// bytes.
async fn read_preamble(tcp: &mut TcpStream) -> Option<String> {
    let mut line = Vec::with_capacity(96);
    while line.len() < PREAMBLE_MAX {
        let b = tcp.read_u8().await.ok()?;
        line.push(b);
        if b == b'\n' {
            return String::from_utf8(line).ok();
        }
    }
    None
}

/// Runs a relay of the cluster on `listener` until `shutdown` resolves or it loses the lead.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let cluster = config.cluster.clone().ok_or_else(|| Error::Config("no cluster configured".into()))?;
    let url = config.database.clone().ok_or_else(|| Error::Config("a cluster needs --database postgres://…".into()))?;
    // Migrates (PostgreSQL's migrator serializes relays starting together).
    let store = Store::connect(&url).await?;
    if store.dialect() != Dialect::Postgres {
        return Err(Error::Config("relays share state only through PostgreSQL (--database postgres://…)".into()));
    }
    let public_addr = listener.local_addr()?;
    let peer_listener = crate::bind(cluster.peer_listen)?;
    let peer_addr = cluster.advertise.clone().unwrap_or(peer_listener.local_addr()?.to_string());
    let total = config.max_workers + config.max_watchers + config.limits.http_connections;
    let (role_tx, role) = watch::channel(Role::Waiting);
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    tokio::spawn(accept_public(listener, role.clone(), total, stop.clone()));
    tokio::spawn(accept_peers(peer_listener, role.clone(), total, stop.clone()));
    tracing::info!(%public_addr, peer = %peer_addr, "relay joining its cluster");
    let mut stopped = stop.clone();
    tokio::select! {
        led = lead_when_elected(&url, &store, &peer_addr, public_addr, config, role_tx, stop) => led,
        _ = stopped.wait_for(|s| *s) => Ok(()),
    }
}

/// Follows until this relay takes the lock, then leads until the lock or the core fails.
async fn lead_when_elected(
    url: &str,
    store: &Store,
    peer_addr: &str,
    public_addr: SocketAddr,
    config: Config,
    role: watch::Sender<Role>,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut lock = sqlx::PgConnection::connect(url).await?;
    // A leader that stops pinging (its machine died, or the network between it and the database
    // did) loses the lock within LOCK_IDLE: the server ends a session idle that long. Without
    // this a crashed machine's lock could outlive it by TCP's keepalive (hours by default).
    sqlx::query(&format!("SET idle_session_timeout = '{}ms'", LOCK_IDLE.as_millis())).execute(&mut lock).await?;
    loop {
        let won: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(LOCK_KEY).fetch_one(&mut lock).await?;
        if won {
            break;
        }
        let leader: Option<(String, String)> = sqlx::query_as("SELECT leader, secret FROM relay_cluster WHERE id = 1")
            .fetch_optional(store.pool())
            .await?;
        let next = match leader {
            Some((peer, secret)) => Role::Follow { peer, secret },
            None => Role::Waiting,
        };
        role.send_if_modified(|r| {
            let changed = match (&*r, &next) {
                (Role::Waiting, Role::Waiting) => false,
                (Role::Follow { peer: a, secret: s }, Role::Follow { peer: b, secret: t }) => a != b || s != t,
                _ => true,
            };
            if changed {
                tracing::info!(leader = ?next, "following");
                *r = next;
            }
            changed
        });
        tokio::time::sleep(POLL).await;
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let (epoch, secret): (i64, String) = sqlx::query_as(
        "INSERT INTO relay_cluster (id, leader, epoch, secret) VALUES (1, $1, 1, $2)
         ON CONFLICT (id) DO UPDATE SET leader = excluded.leader, epoch = relay_cluster.epoch + 1
         RETURNING epoch, secret",
    )
    .bind(peer_addr)
    .bind(&secret)
    .fetch_one(&mut lock)
    .await?;
    tracing::info!(epoch, "leading the cluster: recovering its state");
    let (serve_tx, serve_rx) = mpsc::channel(1024);
    let incoming = futures_util::stream::unfold(serve_rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
    let mut stop_core = stop.clone();
    let start = crate::start_serving(Box::pin(incoming), public_addr, config, Some(epoch), async move {
        let _ = stop_core.wait_for(|s| *s).await;
    });
    tokio::pin!(start);
    let mut ping = tokio::time::interval(PING);
    // Recovery may take a while: the lock is kept alive meanwhile.
    let started: Started = loop {
        tokio::select! {
            started = &mut start => break started?,
            _ = ping.tick() => keep_lock(&mut lock, epoch).await?,
        }
    };
    role.send_replace(Role::Lead { serve: serve_tx, secret });
    tracing::info!(epoch, "leading the cluster");
    let mut finished = tokio::spawn(started.finished());
    loop {
        tokio::select! {
            done = &mut finished => {
                return done.map_err(|_| Error::Corrupt("relay task panicked".into()))?;
            }
            _ = ping.tick() => keep_lock(&mut lock, epoch).await?,
        }
    }
}

/// Pings the lock's session; a leader that cannot (within [`PING_TIMEOUT`]) stops, before the
/// server frees its lock for another ([`LOCK_IDLE`]).
async fn keep_lock(lock: &mut sqlx::PgConnection, epoch: i64) -> Result<()> {
    match tokio::time::timeout(PING_TIMEOUT, lock.ping()).await {
        Ok(Ok(())) => Ok(()),
        outcome => {
            let why = match outcome {
                Ok(Err(e)) => e.to_string(),
                _ => format!("no answer in {PING_TIMEOUT:?}"),
            };
            tracing::error!(error = %why, epoch, "lost the cluster lock; stopping");
            Err(Error::Fenced(epoch))
        }
    }
}

/// The next accepted connection, or `None` once `stop` flips.
async fn next_or_stop(
    incoming: &mut (impl futures_util::Stream<Item = (TcpStream, SocketAddr)> + Unpin),
    stop: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr)> {
    tokio::select! {
        next = futures_util::StreamExt::next(incoming) => next,
        _ = stop.wait_for(|s| *s) => None,
    }
}

/// Takes the public connections: served here when leading, handed to the leader when following.
async fn accept_public(
    listener: TcpListener,
    role: watch::Receiver<Role>,
    total: usize,
    mut stop: watch::Receiver<bool>,
) {
    let handovers = Arc::new(Semaphore::new(total));
    let incoming = serve::accepted(listener);
    tokio::pin!(incoming);
    loop {
        let Some((tcp, client)) = next_or_stop(&mut incoming, &mut stop).await else {
            return;
        };
        let current = role.borrow().clone();
        match current {
            Role::Lead { serve, .. } => {
                let _ = serve.send((tcp, client)).await;
            }
            _ => {
                let Ok(place) = handovers.clone().try_acquire_owned() else {
                    tokio::spawn(serve::refuse(tcp, "the relay is at its connection limit; retry later"));
                    continue;
                };
                let mut role = role.clone();
                tokio::spawn(async move {
                    // A relay that has not yet read who leads (just started, or a failover in
                    // progress) holds the connection a moment rather than refusing it.
                    let current = role_when(&mut role, |r| !matches!(r, Role::Waiting)).await;
                    match current {
                        Role::Lead { serve, .. } => {
                            let _ = serve.send((tcp, client)).await;
                        }
                        Role::Follow { peer, secret } => hand_over(tcp, client, &peer, &secret, role).await,
                        Role::Waiting => {
                            serve::refuse_with(
                                tcp,
                                ErrorCode::Unavailable,
                                "no relay leads this cluster yet; retry shortly",
                            )
                            .await
                        }
                    }
                    drop(place);
                });
            }
        }
    }
}

/// The role once `settled` holds for it, or as it is after [`CONNECT_TIMEOUT`].
async fn role_when(role: &mut watch::Receiver<Role>, settled: impl Fn(&Role) -> bool) -> Role {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    while !settled(&role.borrow_and_update()) {
        if !matches!(tokio::time::timeout_at(deadline, role.changed()).await, Ok(Ok(()))) {
            break;
        }
    }
    role.borrow().clone()
}

/// Connects `tcp` to the leader at `peer` and relays bytes until either side closes, or until
/// another relay leads: a deposed leader that is alive but frozen would otherwise keep the
/// connection (and a client's keep-alive requests on it) forever.
async fn hand_over(mut tcp: TcpStream, client: SocketAddr, peer: &str, secret: &str, mut role: watch::Receiver<Role>) {
    let upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer)).await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        _ => {
            tracing::debug!(%peer, "the leader is unreachable");
            serve::refuse_with(
                tcp,
                ErrorCode::Unavailable,
                "the relay cannot reach its cluster's leader; retry shortly",
            )
            .await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    if upstream.write_all(preamble(secret, client).as_bytes()).await.is_err() {
        return;
    }
    let deposed = role.wait_for(|r| !matches!(r, Role::Follow { peer: p, .. } if p == peer));
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream) => {}
        _ = deposed => tracing::debug!(%peer, %client, "another relay leads now: connection closed"),
    }
}

/// Takes connections handed over by followers: served when this relay leads and the line names
/// the cluster's secret; closed otherwise.
async fn accept_peers(
    listener: TcpListener,
    role: watch::Receiver<Role>,
    total: usize,
    mut stop: watch::Receiver<bool>,
) {
    let reading = Arc::new(Semaphore::new(total));
    let incoming = serve::accepted(listener);
    tokio::pin!(incoming);
    loop {
        let Some((mut tcp, from)) = next_or_stop(&mut incoming, &mut stop).await else {
            return;
        };
        let Ok(place) = reading.clone().try_acquire_owned() else {
            continue;
        };
        let mut role = role.clone();
        tokio::spawn(async move {
            let line = tokio::time::timeout(PREAMBLE_TIMEOUT, read_preamble(&mut tcp)).await.ok().flatten();
            drop(place);
            // Followers learn of a new leader as soon as it has claimed the lead, a moment before
            // it has recovered and serves: hold their connections until then.
            let current = role_when(&mut role, |r| matches!(r, Role::Lead { .. })).await;
            let Role::Lead { serve, secret } = current else {
                return;
            };
            match line.as_deref().and_then(|l| check_preamble(l, &secret)) {
                Some(client) => {
                    let _ = serve.send((tcp, client)).await;
                }
                None => tracing::warn!(%from, "a connection on the peer port without the cluster's secret; closed"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hand_over_line_carries_the_client_only_with_the_secret() {
        let client: SocketAddr = "203.0.113.7:5123".parse().unwrap();
        let line = preamble("s3cret", client);
        assert_eq!(check_preamble(&line, "s3cret"), Some(client));
        let cases: [(&str, &str); 7] = [
            ("another secret", &line),
            ("s3cret", "STARLING-PEER/1 s3cret 203.0.113.7:5123"),
            ("s3cret", "STARLING-PEER/2 s3cret 203.0.113.7:5123\n"),
            ("s3cret", "STARLING-PEER/1 s3cre 203.0.113.7:5123\n"),
            ("s3cret", "STARLING-PEER/1 s3cret 203.0.113.7\n"),
            ("s3cret", "STARLING-PEER/1 s3cret 203.0.113.7:5123 extra\n"),
            ("s3cret", "GET / HTTP/1.1\r\n"),
        ];
        for (secret, line) in cases {
            assert_eq!(check_preamble(line, secret), None, "{line:?} with {secret:?}");
        }
    }
}
