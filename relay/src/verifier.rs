//! Decides a task from the replicas returned so far. Pure: no I/O, no clocks.
//!
//! Exact comparison groups results by output hash. Tolerance comparison reads outputs as
//! little-endian f32 and groups each result with those that agree with it element-wise; the
//! largest group wins (earliest result on ties) and its first member's hash becomes the task's
//! canonical output. Votes count by independent holder (the core passes each replica's escrow
//! owner, or the key of an unregistered worker), so one owner's keys are one vote.
//!
//! A dispute (results that disagree) is settled only by *sampled* results: those of an audit
//! and those handed out after the disagreement, drawn at random among reliable workers. The
//! replicas before it went to whoever was idle, and a cartel lies only where it holds them all,
//! so their votes settle nothing; they join the winning side or are its dissenters.
//!
//! A task verifies when its largest group has at least `quorum` votes and more than twice as
//! many as the largest group outside it (a supermajority of the contested votes: 2 against 0
//! verifies, 2 against 1 does not, 3 against 1 does). Otherwise it escalates to more
//! independent replicas, up to `max_replicas`. Every result outside the winning group is a
//! dissent whose signed hash is kept as evidence. A task may also be *held*: it verifies only
//! once `hold_for` results are back (hidden extra replicas and audits, which the core draws).

use starling_protocol::job::Comparison;
use starling_protocol::{Hash32, LeaseId, PublicKey};

/// One returned replica.
#[derive(Debug, Clone)]
pub struct Returned<'a> {
    pub lease: LeaseId,
    /// Its vote: the escrow owner of the worker key, or the key itself.
    pub worker: PublicKey,
    pub output_hash: Hash32,
    /// The output bytes; needed only for tolerance comparison.
    pub output: Option<&'a [u8]>,
    /// It was handed out as part of a sample (an audit, or after the results disagreed): only
    /// such results settle a dispute.
    pub sampled: bool,
}

/// The replication rule of a job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub comparison: Comparison,
    pub quorum: u8,
    pub max_replicas: u8,
}

/// What to do with a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Quorum reached.
    Verified { output_hash: Hash32, agreeing: Vec<LeaseId>, dissenting: Vec<LeaseId> },
    /// Enough replicas are still out to reach quorum: wait for them.
    Wait,
    /// Hand out this many more replicas.
    AddReplicas(u8),
    /// No quorum is possible within `max_replicas`.
    Failed { reason: String, dissenting: Vec<LeaseId> },
}

/// Lapsed or failed replicas after which a task is given up (a kernel that kills or stalls every
/// worker must not circulate forever).
pub const MAX_LAPSES: u32 = 8;

/// Decides a task given its returned results, the replicas still outstanding (leased, not
/// returned, or queued) and how many replicas lapsed or failed, holding the decision until
/// `hold_for` results are back. Lapses do not count against `max_replicas`: a worker that
/// vanished gave no answer (and the scheduler never offers it the task again).
pub fn decide(rule: Rule, returned: &[Returned<'_>], outstanding: u8, lapsed: u32, hold_for: u8) -> Decision {
    let issued = (returned.len() as u8).saturating_add(outstanding);
    let room = rule.max_replicas.saturating_sub(issued);
    let best = largest_agreeing_group(rule.comparison, returned, &[]);
    let second =
        best.as_ref().and_then(|g| largest_agreeing_group(rule.comparison, returned, g)).map_or(0, |g| g.len());
    let best_len = best.as_ref().map_or(0, |g| g.len());
    let elected = best_len >= usize::from(rule.quorum) && best_len > 2 * second;
    if second > 0 {
        if let Some(decision) = dispute(rule, returned, outstanding, room, elected.then(|| best.clone()).flatten()) {
            return decision;
        }
    } else if elected {
        let held = usize::from(hold_for).saturating_sub(returned.len()).min(usize::from(u8::MAX)) as u8;
        if held > 0 && (outstanding > 0 || room > 0) {
            return if outstanding >= held || room == 0 {
                Decision::Wait
            } else {
                Decision::AddReplicas((held - outstanding).min(room))
            };
        }
        return verified(rule, returned, best.expect("non-empty group")[0]);
    }
    if lapsed >= MAX_LAPSES {
        return Decision::Failed {
            reason: format!("{lapsed} replicas lapsed or failed on workers"),
            dissenting: returned.iter().map(|r| r.lease).collect(),
        };
    }
    escalate(rule, returned, outstanding, room, best_len, second)
}

/// A dispute (results that disagree): one side lies. The replicas handed out before it were
/// placed by whoever was idle, and a cartel lies only where it holds them all, so only *sampled*
/// results (audits, and replicas drawn since the disagreement) elect a winner; the others may
/// block one (a sampled winner must have at least as many results in all as any other side).
/// Where the job's `max_replicas` leaves no room for a sampled majority every result votes, but a
/// side with fewer sampled results than another never wins. `None`: decide as without a dispute
/// (`elected`, the winner by every result, did not win here; escalate or fail).
fn dispute(
    rule: Rule,
    returned: &[Returned<'_>],
    outstanding: u8,
    room: u8,
    elected: Option<Vec<usize>>,
) -> Option<Decision> {
    let unsampled: Vec<usize> = (0..returned.len()).filter(|&i| !returned[i].sampled).collect();
    let best_s = largest_agreeing_group(rule.comparison, returned, &unsampled);
    let second_s = best_s
        .as_ref()
        .and_then(|g| largest_agreeing_group(rule.comparison, returned, &[&unsampled[..], g].concat()))
        .map_or(0, |g| g.len());
    let best_s_len = best_s.as_ref().map_or(0, |g| g.len());
    // Two sampled votes at least, whatever the quorum: one drawn worker alone never settles a
    // dispute (nor gets the other side slashed).
    let missing = usize::from(rule.quorum).max(2).max(2 * second_s + 1).saturating_sub(best_s_len);
    let one_more = || {
        if outstanding > 0 {
            Decision::Wait
        } else if room > 0 {
            Decision::AddReplicas(1)
        } else {
            Decision::Failed {
                reason: "the sampled results and the others disagree, and no replica is left to settle it".into(),
                dissenting: returned.iter().map(|r| r.lease).collect(),
            }
        }
    };
    if missing <= usize::from(outstanding) + usize::from(room) {
        if missing > 0 {
            let want = (missing as u8).saturating_sub(outstanding).min(room);
            return Some(if want == 0 { Decision::Wait } else { Decision::AddReplicas(want) });
        }
        let winner = best_s.expect("a sampled majority");
        let total = supporters(rule, returned, winner[0]).len();
        let others = largest_agreeing_group(rule.comparison, returned, &supporters(rule, returned, winner[0]))
            .map_or(0, |g| g.len());
        return Some(if total >= others { verified(rule, returned, winner[0]) } else { one_more() });
    }
    let winner = elected?;
    // Every result votes; the winner must not have fewer sampled results than another side.
    let sampled_for =
        |anchor: usize| supporters(rule, returned, anchor).iter().filter(|&&i| returned[i].sampled).count();
    let mine = sampled_for(winner[0]);
    let theirs = (0..returned.len())
        .filter(|&i| !agrees(rule.comparison, &returned[winner[0]], &returned[i]))
        .map(sampled_for)
        .max()
        .unwrap_or(0);
    Some(if mine >= theirs { verified(rule, returned, winner[0]) } else { one_more() })
}

/// Indices of the results that agree with `returned[anchor]`, one per worker.
fn supporters(rule: Rule, returned: &[Returned<'_>], anchor: usize) -> Vec<usize> {
    let mut workers = Vec::new();
    let mut out = Vec::new();
    for (i, r) in returned.iter().enumerate() {
        if agrees(rule.comparison, &returned[anchor], r) && !workers.contains(&r.worker) {
            workers.push(r.worker);
            out.push(i);
        }
    }
    out
}

/// The task verifies with `returned[anchor]`'s result: every result that agrees with it, sampled
/// or not, from distinct workers, is accepted; every other is a dissent.
fn verified(rule: Rule, returned: &[Returned<'_>], anchor: usize) -> Decision {
    let agreeing: Vec<LeaseId> = supporters(rule, returned, anchor).into_iter().map(|i| returned[i].lease).collect();
    let dissenting = returned.iter().filter(|r| !agreeing.contains(&r.lease)).map(|r| r.lease).collect();
    Decision::Verified { output_hash: returned[anchor].output_hash, agreeing, dissenting }
}

/// More replicas for the leading side, within `max_replicas`, or the task fails.
fn escalate(
    rule: Rule,
    returned: &[Returned<'_>],
    outstanding: u8,
    room: u8,
    best_len: usize,
    second: usize,
) -> Decision {
    // Votes still needed by the leading group: the quorum, and a supermajority over the runner-up.
    let needed = usize::from(rule.quorum).max(2 * second + 1);
    let missing = needed.saturating_sub(best_len).min(usize::from(u8::MAX)) as u8;
    if outstanding >= missing {
        return Decision::Wait;
    }
    let want = missing - outstanding;
    if room >= want {
        return Decision::AddReplicas(want);
    }
    if outstanding > 0 && room + outstanding >= missing {
        // Add what fits; the rest may still come from outstanding replicas.
        return if room > 0 { Decision::AddReplicas(room) } else { Decision::Wait };
    }
    Decision::Failed {
        reason: format!(
            "no supermajority of {} or more agreeing results within {} replicas ({} returned, largest agreement {}, next {})",
            rule.quorum,
            rule.max_replicas,
            returned.len(),
            best_len,
            second
        ),
        dissenting: returned.iter().map(|r| r.lease).collect(),
    }
}

/// Indices into `returned` of the largest group of mutually agreeing results from distinct
/// workers (a worker counts once even if it returned twice), leaving out the indices in
/// `excluded` and every result of their workers.
fn largest_agreeing_group(comparison: Comparison, returned: &[Returned<'_>], excluded: &[usize]) -> Option<Vec<usize>> {
    let out = |j: usize| excluded.contains(&j) || excluded.iter().any(|&e| returned[e].worker == returned[j].worker);
    let mut best: Option<Vec<usize>> = None;
    for (i, anchor) in returned.iter().enumerate() {
        if out(i) {
            continue;
        }
        let mut group = vec![i];
        let mut workers = vec![anchor.worker];
        for (j, other) in returned.iter().enumerate() {
            if j == i || out(j) || workers.contains(&other.worker) {
                continue;
            }
            if agrees(comparison, anchor, other) {
                group.push(j);
                workers.push(other.worker);
            }
        }
        if best.as_ref().is_none_or(|b| group.len() > b.len()) {
            best = Some(group);
        }
    }
    best
}

/// Whether the results disagree: some result is outside what the largest agreeing group's first
/// member agrees with (a dispute, however the votes stand).
pub fn contested(comparison: Comparison, returned: &[Returned<'_>]) -> bool {
    largest_agreeing_group(comparison, returned, &[])
        .is_some_and(|best| returned.iter().any(|r| !agrees(comparison, &returned[best[0]], r)))
}

fn agrees(comparison: Comparison, a: &Returned<'_>, b: &Returned<'_>) -> bool {
    if a.output_hash == b.output_hash {
        return true;
    }
    match comparison {
        Comparison::Exact => false,
        Comparison::Tolerance { rel, abs } => match (a.output, b.output) {
            (Some(x), Some(y)) => floats_agree(x, y, rel, abs),
            _ => false,
        },
    }
}

/// Element-wise f32 comparison: `|a - b| <= abs + rel * max(|a|, |b|)`; NaN never agrees.
pub fn floats_agree(x: &[u8], y: &[u8], rel: f32, abs: f32) -> bool {
    if x.len() != y.len() || !x.len().is_multiple_of(4) {
        return false;
    }
    x.chunks_exact(4).zip(y.chunks_exact(4)).all(|(a, b)| {
        let a = f32::from_le_bytes(a.try_into().expect("4 bytes"));
        let b = f32::from_le_bytes(b.try_into().expect("4 bytes"));
        let diff = (a - b).abs();
        diff <= abs + rel * a.abs().max(b.abs())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::sha256;

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    fn exact(quorum: u8, max: u8) -> Rule {
        Rule { comparison: Comparison::Exact, quorum, max_replicas: max }
    }

    fn r(lease: u64, worker: u8, out: &str) -> Returned<'static> {
        Returned {
            lease: LeaseId(lease),
            worker: key(worker),
            output_hash: sha256(out.as_bytes()),
            output: None,
            sampled: true,
        }
    }

    #[test]
    fn exact_decision_table() {
        let h = |s: &str| sha256(s.as_bytes());
        let verified = |hash: &str, agree: &[u64], dissent: &[u64]| Decision::Verified {
            output_hash: h(hash),
            agreeing: agree.iter().map(|&l| LeaseId(l)).collect(),
            dissenting: dissent.iter().map(|&l| LeaseId(l)).collect(),
        };
        // (name, rule, returned, outstanding, lapsed, expected decision)
        type Case = (&'static str, Rule, Vec<Returned<'static>>, u8, u32, Decision);
        let cases: Vec<Case> = vec![
            ("nothing back, both out", exact(2, 4), vec![], 2, 0, Decision::Wait),
            ("fresh task", exact(2, 4), vec![], 0, 0, Decision::AddReplicas(2)),
            ("one back, one out", exact(2, 4), vec![r(1, 1, "a")], 1, 0, Decision::Wait),
            ("two agree", exact(2, 4), vec![r(1, 1, "a"), r(2, 2, "a")], 0, 0, verified("a", &[1, 2], &[])),
            // One against one: a supermajority needs three against one.
            ("disagree, room to add", exact(2, 4), vec![r(1, 1, "a"), r(2, 2, "b")], 0, 0, Decision::AddReplicas(2)),
            (
                "two against one escalates",
                exact(2, 4),
                vec![r(1, 1, "a"), r(2, 2, "b"), r(3, 3, "b")],
                0,
                0,
                Decision::AddReplicas(1),
            ),
            (
                "liar outvoted three to one",
                exact(2, 4),
                vec![r(1, 1, "bad"), r(2, 2, "a"), r(3, 3, "a"), r(4, 4, "a")],
                0,
                1,
                verified("a", &[2, 3, 4], &[1]),
            ),
            (
                "scattered lies count one by one",
                exact(2, 5),
                vec![r(1, 1, "x"), r(2, 2, "a"), r(3, 3, "y"), r(4, 4, "a"), r(5, 5, "a")],
                0,
                0,
                verified("a", &[2, 4, 5], &[1, 3]),
            ),
            (
                "two against two escalates by three",
                exact(2, 8),
                vec![r(1, 1, "a"), r(2, 2, "b"), r(3, 3, "b"), r(4, 4, "a")],
                0,
                0,
                Decision::AddReplicas(3),
            ),
            (
                "one owner's keys are one vote",
                exact(2, 5),
                vec![r(1, 7, "bad"), r(2, 7, "bad"), r(3, 3, "a")],
                0,
                0,
                Decision::AddReplicas(2),
            ),
            (
                "two against one at the cap fails",
                exact(2, 3),
                vec![r(1, 1, "a"), r(2, 2, "b"), r(3, 3, "b")],
                0,
                0,
                Decision::Failed {
                    reason: "no supermajority of 2 or more agreeing results within 3 replicas (3 returned, largest agreement 2, next 1)".into(),
                    dissenting: vec![LeaseId(1), LeaseId(2), LeaseId(3)],
                },
            ),
            (
                "all disagree at cap",
                exact(2, 3),
                vec![r(1, 1, "a"), r(2, 2, "b"), r(3, 3, "c")],
                0,
                0,
                Decision::Failed {
                    reason: "no supermajority of 2 or more agreeing results within 3 replicas (3 returned, largest agreement 1, next 1)".into(),
                    dissenting: vec![LeaseId(1), LeaseId(2), LeaseId(3)],
                },
            ),
            ("lapsed replica replaced", exact(2, 2), vec![r(1, 1, "a")], 0, 1, Decision::AddReplicas(1)),
            (
                "too many lapses",
                exact(2, 4),
                vec![r(1, 1, "a")],
                0,
                MAX_LAPSES,
                Decision::Failed {
                    reason: "8 replicas lapsed or failed on workers".into(),
                    dissenting: vec![LeaseId(1)],
                },
            ),
            (
                "same worker twice counts once",
                exact(2, 4),
                vec![r(1, 1, "a"), r(2, 1, "a")],
                0,
                0,
                Decision::AddReplicas(1),
            ),
            ("quorum of one", exact(1, 1), vec![r(1, 1, "a")], 0, 0, verified("a", &[1], &[])),
            ("cap reached but one still out", exact(2, 2), vec![r(1, 1, "a")], 1, 0, Decision::Wait),
            (
                "three of five",
                exact(3, 5),
                vec![r(1, 1, "a"), r(2, 2, "a"), r(3, 3, "b")],
                0,
                0,
                Decision::AddReplicas(1),
            ),
            (
                "partial room while one out",
                exact(3, 4),
                vec![r(1, 1, "a"), r(2, 2, "b")],
                1,
                0,
                Decision::AddReplicas(1),
            ),
        ];
        for (name, rule, returned, outstanding, lapsed, want) in cases {
            assert_eq!(decide(rule, &returned, outstanding, lapsed, 0), want, "{name}");
        }
    }

    /// In a dispute only sampled results vote: a pair that agreed before an audit cannot outvote
    /// the audit by being first.
    #[test]
    fn a_dispute_is_settled_by_sampled_results_only() {
        let first = |lease, worker, out: &str| Returned { sampled: false, ..r(lease, worker, out) };
        let h = |s: &str| sha256(s.as_bytes());
        // (name, returned, expected)
        let cases: Vec<(&str, Vec<Returned<'static>>, Decision)> = vec![
            (
                "a pair's lie against one audit: the audit needs a sampled second",
                vec![first(1, 1, "bad"), first(2, 2, "bad"), r(3, 3, "a")],
                Decision::AddReplicas(1),
            ),
            (
                "two sampled votes settle it against the unsampled pair",
                vec![first(1, 1, "bad"), first(2, 2, "bad"), r(3, 3, "a"), r(4, 4, "a")],
                Decision::Verified {
                    output_hash: h("a"),
                    agreeing: vec![LeaseId(3), LeaseId(4)],
                    dissenting: vec![LeaseId(1), LeaseId(2)],
                },
            ),
            (
                "a cartel key among the sampled one: one against one, more are drawn",
                vec![first(1, 1, "bad"), first(2, 2, "bad"), r(3, 3, "a"), r(4, 4, "bad")],
                Decision::AddReplicas(2),
            ),
            (
                "unsampled results on the winning side are accepted with it",
                vec![first(1, 1, "bad"), first(2, 2, "a"), r(3, 3, "a"), r(4, 4, "a")],
                Decision::Verified {
                    output_hash: h("a"),
                    agreeing: vec![LeaseId(2), LeaseId(3), LeaseId(4)],
                    dissenting: vec![LeaseId(1)],
                },
            ),
            (
                "a one-to-one dispute before any sample draws two",
                vec![first(1, 1, "bad"), first(2, 2, "a")],
                Decision::AddReplicas(2),
            ),
            (
                "agreement needs no sample",
                vec![first(1, 1, "a"), first(2, 2, "a")],
                Decision::Verified { output_hash: h("a"), agreeing: vec![LeaseId(1), LeaseId(2)], dissenting: vec![] },
            ),
        ];
        for (name, returned, want) in cases {
            assert_eq!(decide(exact(2, 7), &returned, 0, 0, 0), want, "{name}");
        }
        // Where `max_replicas` leaves no room for a sampled majority, every result votes.
        let tight = vec![first(1, 1, "bad"), first(2, 2, "a"), first(3, 3, "a"), first(4, 4, "a")];
        assert_eq!(
            decide(exact(2, 4), &tight, 0, 0, 0),
            Decision::Verified {
                output_hash: h("a"),
                agreeing: vec![LeaseId(2), LeaseId(3), LeaseId(4)],
                dissenting: vec![LeaseId(1)]
            }
        );
        assert_eq!(decide(exact(2, 7), &tight, 0, 0, 0), Decision::AddReplicas(2), "with room, a sample decides");
        // ...but a side with fewer sampled results than another never wins: three colluders
        // against their audit, with no replica left, fail the task instead.
        let colluders = vec![first(1, 1, "bad"), first(2, 2, "bad"), first(3, 3, "bad"), r(4, 4, "a")];
        assert!(matches!(decide(exact(3, 4), &colluders, 0, 0, 0), Decision::Failed { .. }));
        // Unsampled results may block a sampled winner, not elect one: two sampled votes for a
        // lie do not overturn four results against it; one more is drawn.
        let blocked = vec![
            first(1, 1, "a"),
            first(2, 2, "a"),
            first(3, 3, "a"),
            first(4, 4, "a"),
            first(5, 5, "bad"),
            r(6, 6, "bad"),
            r(7, 7, "bad"),
        ];
        assert_eq!(decide(exact(2, 8), &blocked, 0, 0, 0), Decision::AddReplicas(1));
        assert!(matches!(decide(exact(2, 7), &blocked, 0, 0, 0), Decision::Failed { .. }), "and none is left");
        // Even at quorum 1 (a task run alone, then audited), one sampled vote settles no dispute.
        let audited = vec![first(1, 1, "bad"), r(2, 2, "a")];
        assert_eq!(decide(exact(1, 4), &audited, 0, 0, 0), Decision::AddReplicas(1));
        let confirmed = vec![first(1, 1, "bad"), r(2, 2, "a"), r(3, 3, "a")];
        assert_eq!(
            decide(exact(1, 4), &confirmed, 0, 0, 0),
            Decision::Verified {
                output_hash: h("a"),
                agreeing: vec![LeaseId(2), LeaseId(3)],
                dissenting: vec![LeaseId(1)]
            }
        );
    }

    #[test]
    fn held_tasks_wait_for_their_hidden_replicas() {
        let two = vec![r(1, 1, "a"), r(2, 2, "a")];
        // (case, returned, outstanding, hold_for, max, expected)
        type Case = (&'static str, Vec<Returned<'static>>, u8, u8, u8, Decision);
        let cases: Vec<Case> = vec![
            ("agreed, extra still out", two.clone(), 1, 3, 4, Decision::Wait),
            ("agreed, audit drawn", two.clone(), 0, 3, 4, Decision::AddReplicas(1)),
            (
                "agreed, no room for an audit",
                two.clone(),
                0,
                3,
                2,
                Decision::Verified {
                    output_hash: sha256(b"a"),
                    agreeing: vec![LeaseId(1), LeaseId(2)],
                    dissenting: vec![],
                },
            ),
            (
                "audit disagrees: escalate",
                vec![r(1, 1, "a"), r(2, 2, "a"), r(3, 3, "b")],
                0,
                3,
                5,
                Decision::AddReplicas(1),
            ),
            (
                "audit agrees",
                vec![r(1, 1, "a"), r(2, 2, "a"), r(3, 3, "a")],
                0,
                3,
                4,
                Decision::Verified {
                    output_hash: sha256(b"a"),
                    agreeing: vec![LeaseId(1), LeaseId(2), LeaseId(3)],
                    dissenting: vec![],
                },
            ),
        ];
        for (name, returned, outstanding, hold_for, max, want) in cases {
            assert_eq!(decide(exact(2, max), &returned, outstanding, 0, hold_for), want, "{name}");
        }
    }

    /// A dispute is any result the largest agreeing group does not agree with, however the
    /// votes stand; under tolerance, close outputs are no dispute.
    #[test]
    fn contested_table() {
        let tol = Comparison::Tolerance { rel: 1e-3, abs: 0.0 };
        let (a, b, far) = (floats(&[1.0, 2.0]), floats(&[1.0, 2.0005]), floats(&[1.0, 3.0]));
        let f = |lease: u64, worker: u8, bytes: &'static [u8]| Returned {
            lease: LeaseId(lease),
            worker: key(worker),
            output_hash: sha256(bytes),
            output: Some(bytes),
            sampled: false,
        };
        let (a, b, far): (&'static [u8], &'static [u8], &'static [u8]) = (a.leak(), b.leak(), far.leak());
        let cases: Vec<(&str, Comparison, Vec<Returned<'static>>, bool)> = vec![
            ("nothing back", exact(2, 4).comparison, vec![], false),
            ("one result", exact(2, 4).comparison, vec![r(1, 1, "a")], false),
            ("same hash", exact(2, 4).comparison, vec![r(1, 1, "a"), r(2, 2, "a")], false),
            ("other hash", exact(2, 4).comparison, vec![r(1, 1, "a"), r(2, 2, "b")], true),
            ("two against one", exact(2, 4).comparison, vec![r(1, 1, "a"), r(2, 2, "a"), r(3, 3, "b")], true),
            ("within tolerance", tol, vec![f(1, 1, a), f(2, 2, b)], false),
            ("outside tolerance", tol, vec![f(1, 1, a), f(2, 2, b), f(3, 3, far)], true),
        ];
        for (case, comparison, returned, want) in cases {
            assert_eq!(contested(comparison, &returned), want, "{case}");
        }
    }

    fn floats(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    #[test]
    fn tolerance_groups_close_outputs() {
        let a = floats(&[1.0, 2.0, 3.0]);
        let b = floats(&[1.0 + 1e-6, 2.0, 3.0 - 1e-6]);
        let liar = floats(&[1.0, 2.5, 3.0]);
        let rule = Rule { comparison: Comparison::Tolerance { rel: 1e-5, abs: 1e-6 }, quorum: 2, max_replicas: 4 };
        let ret = |lease, worker, out: &'static [u8]| Returned {
            lease: LeaseId(lease),
            worker: key(worker),
            output_hash: sha256(out),
            output: Some(out),
            sampled: true,
        };
        let (a, b, liar): (&'static [u8], &'static [u8], &'static [u8]) =
            (Box::leak(a.into_boxed_slice()), Box::leak(b.into_boxed_slice()), Box::leak(liar.into_boxed_slice()));
        let d = decide(rule, &[ret(1, 1, liar), ret(2, 2, a), ret(3, 3, b)], 0, 0, 0);
        assert_eq!(d, Decision::AddReplicas(1), "two against one escalates");
        let d = decide(rule, &[ret(2, 2, a), ret(3, 3, b)], 0, 0, 0);
        assert_eq!(
            d,
            Decision::Verified { output_hash: sha256(a), agreeing: vec![LeaseId(2), LeaseId(3)], dissenting: vec![] }
        );
        // The same outputs compared exactly do not agree.
        let d = decide(Rule { comparison: Comparison::Exact, ..rule }, &[ret(2, 2, a), ret(3, 3, b)], 0, 0, 0);
        assert_eq!(d, Decision::AddReplicas(2));
    }

    #[test]
    fn float_agreement_edges() {
        let nan = floats(&[f32::NAN]);
        assert!(!floats_agree(&nan, &nan, 1.0, 1.0));
        assert!(!floats_agree(&floats(&[1.0]), &floats(&[1.0, 2.0]), 1.0, 1.0));
        assert!(floats_agree(&floats(&[100.0]), &floats(&[100.1]), 1e-3, 0.0));
        assert!(!floats_agree(&floats(&[100.0]), &floats(&[100.2]), 1e-3, 0.0));
        assert!(floats_agree(&floats(&[0.0]), &floats(&[1e-7]), 0.0, 1e-6));
    }
}
