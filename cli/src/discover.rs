//! Finding relays without knowing one: read the escrow contract's relay registry from a chain
//! node, ask each registered relay's endpoint for its health, keep those that settle through
//! this very contract under the address they registered, and rank them.
//!
//! A registry entry is a claim its relay made with a bond behind it; the endpoint's answer is
//! checked against it (an endpoint that answers for another contract or another relay account
//! is dropped: a worker's signatures and a client's deposit name the contract and the relay).

use anyhow::{Context, Result, bail};
use starling_protocol::api::{Health, RegisteredRelay};
use std::time::{Duration, Instant};

/// Most registered relays probed.
const MAX_PROBES: usize = 64;
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Wants work: relays with jobs waiting per online worker first.
    Worker,
    /// Posts jobs: the lowest fee first, then the most workers online.
    Client,
}

/// A registered relay and what its endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub endpoint: String,
    pub address: String,
    pub fee_bps: u16,
    /// Round trip of its health request (`None`: it did not answer).
    pub latency_ms: Option<u64>,
    pub workers_online: u64,
    pub jobs_running: u64,
    pub note: String,
}

/// What discovery found: the chain's id (from its node) and the relays.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub chain_id: String,
    pub relays: Vec<Found>,
}

/// The registered relays reachable now, ranked for `role`, then the silent ones (a worker
/// tries them when the others fail, and checks each one's deployment when it connects). Fails
/// when the registry lists no usable relay.
pub async fn relays(rpc: &str, contract: &str, role: Role) -> Result<Discovered> {
    let node = starling_relay::escrow::chain::Node::new(rpc)?;
    let status =
        node.call("status", serde_json::json!({})).await.with_context(|| format!("asking {rpc} for its status"))?;
    let chain_id = status["node_info"]["network"].as_str().context("the node's status names no network")?.to_owned();
    let mut registry =
        node.relays(contract).await.with_context(|| format!("reading the relay registry of {contract} at {rpc}"))?;
    // Relays with a record and a bond first, so entries made only to crowd the list (any
    // number of fresh addresses at the minimum bond) come last when the list is cut.
    registry.sort_by_key(|r| (std::cmp::Reverse(r.tasks_paid), std::cmp::Reverse(r.bond.parse::<u128>().unwrap_or(0))));
    // Only endpoints a worker can use (one origin, no comma to split a list on), each once.
    let mut seen = std::collections::HashSet::new();
    let candidates: Vec<RegisteredRelay> = registry
        .into_iter()
        .filter(|r| r.active && !r.endpoint.contains(','))
        .filter(|r| starling_web_worker::relay_urls::RelayUrls::from_origin(&r.endpoint).is_ok())
        .filter(|r| seen.insert(r.endpoint.trim_end_matches('/').to_owned()))
        .take(MAX_PROBES)
        .collect();
    if candidates.is_empty() {
        bail!("no active relay with an endpoint is registered in {contract}");
    }
    // No redirects: an endpoint must not send every discovering host elsewhere.
    let http = reqwest::Client::builder().timeout(PROBE_TIMEOUT).redirect(reqwest::redirect::Policy::none()).build()?;
    let mut probes = tokio::task::JoinSet::new();
    for relay in candidates {
        let http = http.clone();
        let contract = contract.to_owned();
        let chain_id = chain_id.clone();
        probes.spawn(async move { probe(&http, relay, &contract, &chain_id).await });
    }
    let mut found = Vec::new();
    while let Some(done) = probes.join_next().await {
        if let Ok(Some(f)) = done {
            found.push(f);
        }
    }
    rank(&mut found, role);
    // A worker keeps at most this many relays to fail over along.
    found.truncate(starling_web_worker::relay_urls::MAX_RELAYS);
    if found.is_empty() {
        bail!("every registered relay's endpoint answers for another contract or relay");
    }
    Ok(Discovered { chain_id, relays: found })
}

/// `None`: the endpoint answers, but not as this registry entry's relay of this contract on
/// this chain.
async fn probe(http: &reqwest::Client, relay: RegisteredRelay, contract: &str, chain_id: &str) -> Option<Found> {
    let started = Instant::now();
    let endpoint = relay.endpoint.trim_end_matches('/').to_owned();
    let mut found = Found {
        endpoint: endpoint.clone(),
        address: relay.address.clone(),
        fee_bps: relay.fee_bps,
        latency_ms: None,
        workers_online: 0,
        jobs_running: 0,
        note: "not answering now".into(),
    };
    let answer = http.get(format!("{endpoint}/v1/health")).send().await.and_then(|r| r.error_for_status());
    let Ok(health) = (match answer {
        Ok(resp) => resp.json::<Health>().await,
        Err(_) => return Some(found),
    }) else {
        return Some(found);
    };
    let escrow = health.escrow?;
    if escrow.contract != contract || escrow.relay_address != relay.address || escrow.chain_id != chain_id {
        tracing::warn!(%endpoint, "the registered endpoint answers for another contract or relay; skipped");
        return None;
    }
    found.latency_ms = Some(started.elapsed().as_millis() as u64);
    found.workers_online = health.workers_online;
    found.jobs_running = health.jobs_running;
    found.note = format!("{} workers online, {} jobs running", health.workers_online, health.jobs_running);
    Some(found)
}

/// Orders relays for `role`: those that answered first, then by what the role cares about,
/// latency breaking ties (in steps of 20 ms, so noise does not outweigh the rest).
pub fn rank(found: &mut [Found], role: Role) {
    found.sort_by_key(|f| {
        let latency = f.latency_ms.map_or(u64::MAX, |ms| ms / 20);
        // Jobs per online worker, in thousandths: more work waiting per worker is better.
        // Figures a relay reports about itself: never trusted not to overflow.
        let work = f.jobs_running.saturating_mul(1000) / f.workers_online.saturating_add(1).max(1);
        match role {
            Role::Worker => (f.latency_ms.is_none(), u64::MAX - work, u64::from(f.fee_bps), latency),
            Role::Client => (f.latency_ms.is_none(), u64::from(f.fee_bps), u64::MAX - f.workers_online, latency),
        }
    });
}

/// The worker's `--relay` list: comma-separated, best first.
pub fn endpoints(found: &[Found]) -> String {
    found.iter().map(|f| f.endpoint.as_str()).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(name: &str, fee_bps: u16, latency_ms: Option<u64>, workers_online: u64, jobs_running: u64) -> Found {
        Found {
            endpoint: name.into(),
            address: name.into(),
            fee_bps,
            latency_ms,
            workers_online,
            jobs_running,
            note: String::new(),
        }
    }

    #[test]
    fn relays_are_ranked_for_what_each_role_wants() {
        let all = vec![
            relay("silent-cheap", 0, None, 0, 0),
            relay("busy", 500, Some(40), 10, 20),
            relay("cheap-far", 100, Some(300), 50, 1),
            relay("cheap-near", 100, Some(5), 50, 1),
            relay("idle", 200, Some(1), 100, 0),
            relay("liar", 900, Some(1), u64::MAX, u64::MAX),
        ];
        let order = |role| {
            let mut found = all.clone();
            rank(&mut found, role);
            found.into_iter().map(|f| f.endpoint).collect::<Vec<_>>()
        };
        // A client: the lowest fee among those that answer, then more workers, then nearer; a
        // silent relay comes last however cheap.
        assert_eq!(order(Role::Client), ["cheap-near", "cheap-far", "idle", "busy", "liar", "silent-cheap"]);
        // A worker: where jobs wait per worker, then the lower fee (cheaper for its clients).
        // A relay claiming absurd figures does not overflow the ranking (its huge worker count
        // dilutes its huge job count).
        assert_eq!(order(Role::Worker), ["busy", "cheap-near", "cheap-far", "liar", "idle", "silent-cheap"]);
        assert_eq!(endpoints(&[relay("a", 0, None, 0, 0), relay("b", 0, None, 0, 0)]), "a,b");
    }
}
