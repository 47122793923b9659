//! Decides a task from the replicas returned so far. Pure: no I/O, no clocks.
//!
//! Exact comparison groups results by output hash. Tolerance comparison reads outputs as
//! little-endian f32 and groups each result with those that agree with it element-wise; the
//! largest group wins (earliest result on ties) and its first member's hash becomes the task's
//! canonical output. A group of at least `quorum` results from distinct workers verifies the task;
//! every result outside it is a dissent whose signed hash is kept as evidence.

use starling_protocol::job::Comparison;
use starling_protocol::{Hash32, LeaseId, PublicKey};

/// One returned replica.
#[derive(Debug, Clone)]
pub struct Returned<'a> {
    pub lease: LeaseId,
    pub worker: PublicKey,
    pub output_hash: Hash32,
    /// The output bytes; needed only for tolerance comparison.
    pub output: Option<&'a [u8]>,
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
/// returned) and how many replicas lapsed or failed. Lapses do not count against
/// `max_replicas`: a worker that vanished gave no answer.
pub fn decide(rule: Rule, returned: &[Returned<'_>], outstanding: u8, lapsed: u32) -> Decision {
    let issued = (returned.len() as u8).saturating_add(outstanding);
    let best = largest_agreeing_group(rule.comparison, returned);
    let best_len = best.as_ref().map_or(0, |g| g.len());
    if best_len >= usize::from(rule.quorum) {
        let group = best.expect("non-empty group");
        let agreeing: Vec<LeaseId> = group.iter().map(|&i| returned[i].lease).collect();
        let dissenting = returned.iter().filter(|r| !agreeing.contains(&r.lease)).map(|r| r.lease).collect();
        return Decision::Verified { output_hash: returned[group[0]].output_hash, agreeing, dissenting };
    }
    if lapsed >= MAX_LAPSES {
        return Decision::Failed {
            reason: format!("{lapsed} replicas lapsed or failed on workers"),
            dissenting: returned.iter().map(|r| r.lease).collect(),
        };
    }
    let missing = rule.quorum - best_len as u8;
    if outstanding >= missing {
        return Decision::Wait;
    }
    let room = rule.max_replicas.saturating_sub(issued);
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
            "no {} agreeing results within {} replicas ({} returned, largest agreement {})",
            rule.quorum,
            rule.max_replicas,
            returned.len(),
            best_len
        ),
        dissenting: returned.iter().map(|r| r.lease).collect(),
    }
}

/// Indices into `returned` of the largest group of mutually agreeing results from distinct
/// workers (a worker counts once even if it returned twice).
fn largest_agreeing_group(comparison: Comparison, returned: &[Returned<'_>]) -> Option<Vec<usize>> {
    let mut best: Option<Vec<usize>> = None;
    for (i, anchor) in returned.iter().enumerate() {
        let mut group = vec![i];
        let mut workers = vec![anchor.worker];
        for (j, other) in returned.iter().enumerate() {
            if j == i || workers.contains(&other.worker) {
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
        Returned { lease: LeaseId(lease), worker: key(worker), output_hash: sha256(out.as_bytes()), output: None }
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
            ("disagree, room to add", exact(2, 4), vec![r(1, 1, "a"), r(2, 2, "b")], 0, 0, Decision::AddReplicas(1)),
            (
                "tie broken by third",
                exact(2, 4),
                vec![r(1, 1, "a"), r(2, 2, "b"), r(3, 3, "b")],
                0,
                0,
                verified("b", &[2, 3], &[1]),
            ),
            (
                "liar outvoted",
                exact(2, 4),
                vec![r(1, 1, "bad"), r(2, 2, "a"), r(3, 3, "a")],
                0,
                1,
                verified("a", &[2, 3], &[1]),
            ),
            (
                "all disagree at cap",
                exact(2, 3),
                vec![r(1, 1, "a"), r(2, 2, "b"), r(3, 3, "c")],
                0,
                0,
                Decision::Failed {
                    reason: "no 2 agreeing results within 3 replicas (3 returned, largest agreement 1)".into(),
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
            assert_eq!(decide(rule, &returned, outstanding, lapsed), want, "{name}");
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
        };
        let (a, b, liar): (&'static [u8], &'static [u8], &'static [u8]) =
            (Box::leak(a.into_boxed_slice()), Box::leak(b.into_boxed_slice()), Box::leak(liar.into_boxed_slice()));
        let d = decide(rule, &[ret(1, 1, liar), ret(2, 2, a), ret(3, 3, b)], 0, 0);
        assert_eq!(
            d,
            Decision::Verified {
                output_hash: sha256(a),
                agreeing: vec![LeaseId(2), LeaseId(3)],
                dissenting: vec![LeaseId(1)]
            }
        );
        // The same outputs compared exactly do not agree.
        let d = decide(Rule { comparison: Comparison::Exact, ..rule }, &[ret(2, 2, a), ret(3, 3, b)], 0, 0);
        assert_eq!(d, Decision::AddReplicas(1));
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
