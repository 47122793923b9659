//! Escrow standing kept fresh. A worker's standing (registered, bonded at least the minimum) is
//! read when it connects; an owner could unbond right after and keep taking paid work, every
//! task it signs then falling short of a quorum at settlement. So while a registered worker stays
//! online its standing is read again every [`crate::Config::standing_refresh`], and the core is
//! told when its eligibility changed: below the minimum bond it gets no more paid work.
//!
//! The reads are spread, not bunched: each period is cut into [`ROUNDS`] rounds, and each round
//! reads the next slice of online workers in key order, at most [`MAX_READS_IN_FLIGHT`] at once.
//! A relay with many workers thus asks the escrow at an even pace; if the escrow answers slower
//! than that pace, rounds wait for it and the period stretches, rather than reads piling up.
//! [`plan_round`] and [`changes`] decide; [`spawn`] only reads and sends.

use crate::core::Input;
use crate::driver::{Command, CoreHandle};
use crate::escrow::Escrow;
use futures_util::StreamExt;
use starling_protocol::PublicKey;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::Duration;

/// Rounds per refresh period: each online registered worker is read once in that many rounds.
pub const ROUNDS: u32 = 10;
/// Escrow reads one round has in flight at most.
pub const MAX_READS_IN_FLIGHT: usize = 8;

/// Online workers registered in escrow, and whether the core was last told each may take paid
/// work. The driver keeps it (see [`crate::driver::Shared::registered`]).
pub type Registered = BTreeMap<PublicKey, bool>;

/// The workers one round reads, and where the next round starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    pub read: Vec<PublicKey>,
    /// The last key read, when workers after it remain; `None` starts the next round from the
    /// first key again.
    pub next: Option<PublicKey>,
}

/// Which workers to read this round: the `ceil(n / rounds)` registered workers that follow
/// `after` in key order (from the first when `after` is `None`). A cycle over all of them takes
/// at most `rounds` rounds, however many there are; a worker that connects mid-cycle is read in
/// this cycle if its key comes later, or in the next.
pub fn plan_round(registered: &Registered, after: Option<PublicKey>, rounds: u32) -> Round {
    let per_round = registered.len().div_ceil(rounds.max(1) as usize);
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut rest = registered.range((start, Bound::Unbounded)).map(|(key, _)| *key).peekable();
    let read: Vec<PublicKey> = rest.by_ref().take(per_round).collect();
    let next = if rest.peek().is_some() { read.last().copied() } else { None };
    Round { read, next }
}

/// What to tell the core after a round: each worker still registered and online whose fresh
/// eligibility differs from what the core was last told. A standing that could not be read
/// (`None`: the escrow is unreachable) changes nothing: one unreachable moment must not take every
/// worker out of paid work, and the next round reads it again. A key the escrow no longer knows
/// is not eligible.
pub fn changes(registered: &Registered, fresh: &[(PublicKey, Option<bool>)]) -> Vec<(PublicKey, bool)> {
    fresh
        .iter()
        .filter_map(|(key, eligible)| {
            let eligible = (*eligible)?;
            let told = registered.get(key)?;
            (*told != eligible).then_some((*key, eligible))
        })
        .collect()
}

/// Re-reads online registered workers' standing every `every` (spread over [`ROUNDS`] rounds)
/// and tells the core what changed, until `stop` turns true or the core is gone.
pub fn spawn(
    escrow: Escrow,
    core: CoreHandle,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval((every / ROUNDS).max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut after = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let round = plan_round(&core.shared.registered.read().expect("registered lock"), after, ROUNDS);
            after = round.next;
            let fresh: Vec<(PublicKey, Option<bool>)> = futures_util::stream::iter(round.read)
                .map(|key| {
                    let escrow = escrow.clone();
                    async move {
                        let eligible = match escrow.worker(&key).await {
                            Ok(standing) => Some(standing.is_some_and(|s| s.eligible)),
                            Err(e) => {
                                tracing::warn!(worker = %key, error = %e, "cannot re-read the worker's escrow standing; keeping the last one");
                                None
                            }
                        };
                        (key, eligible)
                    }
                })
                .buffer_unordered(MAX_READS_IN_FLIGHT)
                .collect()
                .await;
            // Compared with what the core was told by now (a slash may have come meanwhile).
            let changed = changes(&core.shared.registered.read().expect("registered lock"), &fresh);
            for (key, paid) in changed {
                tracing::info!(worker = %key, paid, "escrow standing changed");
                if core.send(Command::Core(Input::PaidStanding { key, paid })).await.is_err() {
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    fn registered(keys: &[(u8, bool)]) -> Registered {
        keys.iter().map(|(n, paid)| (key(*n), *paid)).collect()
    }

    #[test]
    fn rounds_read_each_worker_once_per_cycle_in_even_slices() {
        let five = registered(&[(1, true), (2, true), (3, false), (4, true), (5, true)]);
        let round = |reg: &Registered, after: Option<u8>, rounds| {
            let r = plan_round(reg, after.map(key), rounds);
            (r.read.iter().map(|k| k.0[0]).collect::<Vec<_>>(), r.next.map(|k| k.0[0]))
        };
        /// Case, registered, start after, rounds per period, read, next start.
        type Case<'a> = (&'a str, &'a Registered, Option<u8>, u32, Vec<u8>, Option<u8>);
        let cases: [Case<'_>; 8] = [
            ("nobody online", &Registered::new(), None, 10, vec![], None),
            ("fewer workers than rounds: one a round", &five, None, 10, vec![1], Some(1)),
            ("two rounds a cycle: the first slice", &five, None, 2, vec![1, 2, 3], Some(3)),
            ("the last slice ends the cycle", &five, Some(3), 2, vec![4, 5], None),
            ("one round: everyone", &five, None, 1, vec![1, 2, 3, 4, 5], None),
            (
                "the cursor's worker left: go on after its key",
                &registered(&[(1, true), (4, true)]),
                Some(3),
                2,
                vec![4],
                None,
            ),
            ("no worker after the cursor any more", &registered(&[(1, true)]), Some(3), 2, vec![], None),
            ("zero rounds are one", &five, None, 0, vec![1, 2, 3, 4, 5], None),
        ];
        for (case, reg, after, rounds, read, next) in cases {
            assert_eq!(round(reg, after, rounds), (read, next), "{case}");
        }
        // A cycle over 25 workers in 10 rounds reads each exactly once.
        let many: Registered = (1..=25).map(|n| (key(n), true)).collect();
        let (mut seen, mut after, mut rounds) = (Vec::new(), None, 0);
        loop {
            let r = plan_round(&many, after, 10);
            seen.extend(r.read);
            rounds += 1;
            after = r.next;
            if after.is_none() {
                break;
            }
        }
        assert_eq!(seen, many.keys().copied().collect::<Vec<_>>());
        assert!(rounds <= 10, "{rounds} rounds");
    }

    #[test]
    fn only_changed_eligibility_of_workers_still_online_is_told() {
        let told = registered(&[(1, true), (2, true), (3, false), (4, true)]);
        // (case, fresh read, what the core is told)
        let cases: [(&str, Option<bool>, u8, Option<bool>); 6] = [
            ("unbonded below the minimum", Some(false), 1, Some(false)),
            ("still bonded", Some(true), 2, None),
            ("bonded again", Some(true), 3, Some(true)),
            ("still out", Some(false), 3, None),
            ("escrow unreachable: keep what the core has", None, 4, None),
            ("went offline meanwhile", Some(false), 9, None),
        ];
        for (case, fresh, worker, told_now) in cases {
            let expected: Vec<(PublicKey, bool)> = told_now.map(|p| (key(worker), p)).into_iter().collect();
            assert_eq!(changes(&told, &[(key(worker), fresh)]), expected, "{case}");
        }
        let all = [(key(1), Some(false)), (key(2), Some(true)), (key(3), Some(true)), (key(4), None)];
        assert_eq!(changes(&told, &all), vec![(key(1), false), (key(3), true)]);
    }
}
