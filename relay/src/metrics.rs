//! The network's figures over time and the relay's internals, for people and for monitoring:
//! a bounded history of samples (`GET /v1/network/history`, the last [`HISTORY_SAMPLES`]) and the
//! same figures with the relay's internals as Prometheus text (`GET /metrics`).
//!
//! Everything here is bounded: the history by count, backends by the workers online (entries of
//! workers no longer online are dropped at each sample). Rendering is pure.

use starling_protocol::PublicKey;
use starling_protocol::api::NetworkSample;
use starling_protocol::worker::Backend;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long a connecting worker's backend is kept before it must be online: its connection is
/// admitted before the batch that puts it online commits, so a sample in between must not drop it.
const CONNECTING_GRACE: Duration = Duration::from_secs(60);

/// Samples kept: an hour at the default of one every 10 s.
pub const HISTORY_SAMPLES: usize = 360;

/// Bounds of the commit-latency histogram's buckets, in seconds.
pub const COMMIT_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

#[derive(Debug, Default)]
pub struct Metrics {
    history: Mutex<VecDeque<NetworkSample>>,
    /// The backend each worker announced when it connected, and when.
    backends: RwLock<HashMap<PublicKey, (Backend, Instant)>>,
    commits: AtomicU64,
    commit_micros: AtomicU64,
    /// Commits that took at most each of [`COMMIT_BUCKETS`].
    commit_buckets: [AtomicU64; COMMIT_BUCKETS.len()],
    pending_replicas: AtomicU64,
}

/// What `/metrics` shows beside the latest figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Internals {
    pub leases_open: u64,
}

impl Metrics {
    /// A worker announced its capabilities.
    pub fn worker_online(&self, key: PublicKey, backend: Backend) {
        self.backends.write().expect("backends lock").insert(key, (backend, Instant::now()));
    }

    /// A batch was committed in `took`.
    pub fn committed(&self, took: Duration) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.commit_micros.fetch_add(took.as_micros().min(u128::from(u64::MAX)) as u64, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        for (bound, count) in COMMIT_BUCKETS.iter().zip(&self.commit_buckets) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Replicas waiting for a worker, after the latest batch.
    pub fn set_pending_replicas(&self, n: u64) {
        self.pending_replicas.store(n, Ordering::Relaxed);
    }

    /// Online workers by backend; forgets the backends of workers that connected over
    /// [`CONNECTING_GRACE`] ago and are not online (gone, or never admitted).
    pub fn by_backend(&self, online: &HashSet<PublicKey>) -> BTreeMap<String, u64> {
        let mut backends = self.backends.write().expect("backends lock");
        backends.retain(|k, (_, at)| online.contains(k) || at.elapsed() < CONNECTING_GRACE);
        let mut out = BTreeMap::new();
        for key in online {
            let name = backends.get(key).map_or("unknown", |(b, _)| b.as_str());
            *out.entry(name.to_string()).or_default() += 1;
        }
        out
    }

    /// Keeps `sample`, dropping the oldest past [`HISTORY_SAMPLES`].
    pub fn record(&self, sample: NetworkSample) {
        let mut history = self.history.lock().expect("history lock");
        if history.len() == HISTORY_SAMPLES {
            history.pop_front();
        }
        history.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn history(&self) -> Vec<NetworkSample> {
        self.history.lock().expect("history lock").iter().cloned().collect()
    }

    /// Prometheus text (version 0.0.4) of `now` and the relay's internals.
    pub fn render(&self, now: &NetworkSample, internals: Internals) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, lines: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let by_backend: Vec<(String, String)> = if now.workers_by_backend.is_empty() {
            vec![(String::new(), now.workers_online.to_string())]
        } else {
            now.workers_by_backend
                .iter()
                .map(|(b, n)| (format!("{{backend=\"{}\"}}", escape(b)), n.to_string()))
                .collect()
        };
        metric("starling_workers_online", "gauge", "Workers connected now, by backend.", &by_backend);
        metric("starling_jobs_running", "gauge", "Jobs running now.", &[(String::new(), now.jobs_running.to_string())]);
        metric(
            "starling_tasks_verified_total",
            "counter",
            "Tasks verified since the relay's database was created.",
            &[(String::new(), now.tasks_verified_total.to_string())],
        );
        metric(
            "starling_leases_open",
            "gauge",
            "Replicas leased to workers and not yet returned.",
            &[(String::new(), internals.leases_open.to_string())],
        );
        metric(
            "starling_replicas_pending",
            "gauge",
            "Replicas waiting for a worker after the latest batch.",
            &[(String::new(), self.pending_replicas.load(Ordering::Relaxed).to_string())],
        );
        let count = self.commits.load(Ordering::Relaxed);
        let mut lines: Vec<(String, String)> = COMMIT_BUCKETS
            .iter()
            .zip(&self.commit_buckets)
            .map(|(b, c)| (format!("_bucket{{le=\"{b}\"}}"), c.load(Ordering::Relaxed).to_string()))
            .collect();
        lines.push(("_bucket{le=\"+Inf\"}".into(), count.to_string()));
        lines.push(("_sum".into(), format!("{}", self.commit_micros.load(Ordering::Relaxed) as f64 / 1e6)));
        lines.push(("_count".into(), count.to_string()));
        metric("starling_commit_seconds", "histogram", "Time to commit one batch of the core's writes.", &lines);
        out
    }
}

/// A label value as Prometheus text wants it.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64) -> NetworkSample {
        NetworkSample {
            at_ms,
            workers_online: 3,
            workers_by_backend: BTreeMap::from([("vulkan".into(), 2), ("browser_webgpu".into(), 1)]),
            jobs_running: 1,
            tasks_verified_total: 42,
        }
    }

    #[test]
    fn the_history_is_bounded_and_oldest_first() {
        let m = Metrics::default();
        for i in 0..HISTORY_SAMPLES as u64 + 5 {
            m.record(sample(i));
        }
        let h = m.history();
        assert_eq!(h.len(), HISTORY_SAMPLES);
        assert_eq!((h[0].at_ms, h.last().unwrap().at_ms), (5, HISTORY_SAMPLES as u64 + 4));
    }

    #[test]
    fn backends_count_online_workers_and_forget_the_rest() {
        let m = Metrics::default();
        let (a, b, c) = (PublicKey([1; 32]), PublicKey([2; 32]), PublicKey([3; 32]));
        m.worker_online(a, Backend::Vulkan);
        m.worker_online(b, Backend::BrowserWebgpu);
        m.worker_online(c, Backend::Vulkan);
        let online = HashSet::from([a, b]);
        assert_eq!(m.by_backend(&online), BTreeMap::from([("vulkan".into(), 1), ("browser_webgpu".into(), 1)]));
        // c connected just now and is not online yet (its batch has not committed): kept.
        assert_eq!(m.backends.read().unwrap().len(), 3);
        {
            let mut backends = m.backends.write().unwrap();
            let at = &mut backends.get_mut(&c).unwrap().1;
            *at = at.checked_sub(CONNECTING_GRACE + Duration::from_secs(1)).expect("the machine has been up a minute");
        }
        m.by_backend(&online);
        assert_eq!(m.backends.read().unwrap().len(), 2, "an entry past its grace that never came online is dropped");
    }

    #[test]
    fn the_text_is_prometheus_exposition() {
        let m = Metrics::default();
        m.committed(Duration::from_micros(1500));
        m.committed(Duration::from_millis(200));
        m.set_pending_replicas(7);
        let text = m.render(&sample(1), Internals { leases_open: 4 });
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name_labels, value) = line.rsplit_once(' ').expect("a name and a value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = name_labels.split('{').next().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
        }
        for want in [
            "starling_workers_online{backend=\"vulkan\"} 2",
            "starling_tasks_verified_total 42",
            "starling_leases_open 4",
            "starling_replicas_pending 7",
            "starling_commit_seconds_bucket{le=\"0.0025\"} 1",
            "starling_commit_seconds_bucket{le=\"+Inf\"} 2",
            "starling_commit_seconds_count 2",
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
    }
}
