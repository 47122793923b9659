//! The Network page's numbers: workers grouped by backend and adapter, and the verified-task rate
//! from successive `tasks_verified_total` readings.

use crate::views::{AdapterWords, WorkerView, adapter_label_in};
use crate::worker_protocol::backend_label;
use std::collections::{BTreeMap, VecDeque};

/// Online workers of one backend, split by adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendGroup {
    pub backend: String,
    pub label: String,
    pub workers: usize,
    /// Adapter label and worker count, most workers first.
    pub adapters: Vec<(String, usize)>,
}

/// Online workers grouped by backend (most workers first) and, within each, by adapter. Workers
/// that have not announced capabilities yet count under "not announced".
pub fn group_workers(workers: &[WorkerView]) -> Vec<BackendGroup> {
    group_workers_in(workers, &AdapterWords::ENGLISH)
}

/// [`group_workers`] with adapters named in the words of `words`.
pub fn group_workers_in(workers: &[WorkerView], words: &AdapterWords) -> Vec<BackendGroup> {
    let mut by_backend: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for w in workers.iter().filter(|w| w.online) {
        let (backend, adapter) = match &w.capabilities {
            Some(c) => (c.backend.as_str().to_string(), adapter_label_in(&c.adapter, words)),
            None => (String::new(), words.not_announced.to_string()),
        };
        *by_backend.entry(backend).or_default().entry(adapter).or_default() += 1;
    }
    let mut groups: Vec<BackendGroup> = by_backend
        .into_iter()
        .map(|(backend, adapters)| {
            let mut adapters: Vec<(String, usize)> = adapters.into_iter().collect();
            adapters.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let label = if backend.is_empty() { "Connecting".to_string() } else { backend_label(&backend) };
            BackendGroup { workers: adapters.iter().map(|a| a.1).sum(), backend, label, adapters }
        })
        .collect();
    groups.sort_by(|a, b| b.workers.cmp(&a.workers).then_with(|| a.label.cmp(&b.label)));
    groups
}

/// One reading of the relay's health.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at_ms: f64,
    pub workers_online: u64,
    pub tasks_verified_total: Option<u64>,
    /// Verified tasks per second since the previous reading; `None` for the first reading, after a
    /// counter reset (the relay restarted) or when the relay does not report the counter.
    pub rate: Option<f64>,
}

/// The last `capacity` health readings, with rates between neighbours.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    capacity: usize,
    samples: VecDeque<Sample>,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History { capacity: capacity.max(2), samples: VecDeque::new() }
    }

    /// Adds a reading taken at `at_ms` (a monotonic clock) and returns it with its rate.
    pub fn record(&mut self, at_ms: f64, workers_online: u64, tasks_verified_total: Option<u64>) -> Sample {
        let rate = match (self.samples.back(), tasks_verified_total) {
            (Some(prev), Some(total)) => match prev.tasks_verified_total {
                Some(before) if total >= before && at_ms > prev.at_ms => {
                    Some((total - before) as f64 / ((at_ms - prev.at_ms) / 1000.0))
                }
                _ => None,
            },
            _ => None,
        };
        let sample = Sample { at_ms, workers_online, tasks_verified_total, rate };
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        sample
    }

    /// This history with `earlier` readings (`(at_ms, workers_online, tasks_verified_total)`,
    /// on the same clock, oldest first; the relay's own, from before the page opened) in front:
    /// those older than the first reading here, as many as fit, rates recomputed across them.
    pub fn with_earlier(&self, earlier: &[(f64, u64, Option<u64>)]) -> History {
        let first = self.samples.front().map_or(f64::INFINITY, |s| s.at_ms);
        let mut out = History::new(self.capacity);
        for &(at, workers, total) in earlier.iter().filter(|(at, _, _)| *at < first) {
            out.record(at, workers, total);
        }
        for s in &self.samples {
            out.record(s.at_ms, s.workers_online, s.tasks_verified_total);
        }
        out
    }

    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Verified tasks per second over the whole window (steadier than the last step's rate);
    /// `None` until two readings of an unbroken counter exist.
    pub fn window_rate(&self) -> Option<f64> {
        // The window starts after the last counter reset.
        let start = self.samples.iter().rposition(|s| s.rate.is_none()).unwrap_or(0);
        let first = self.samples.get(start)?;
        let last = self.samples.back()?;
        let (a, b) = (first.tasks_verified_total?, last.tasks_verified_total?);
        (last.at_ms > first.at_ms && b >= a).then(|| (b - a) as f64 / ((last.at_ms - first.at_ms) / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_protocol::PublicKey;
    use starling_protocol::worker::{AdapterInfo, Backend, Capabilities, DeviceLimits, Platform};

    fn worker(online: bool, backend: Option<Backend>, adapter: &str) -> WorkerView {
        WorkerView {
            key: PublicKey([1; 32]),
            online,
            capabilities: backend.map(|backend| Capabilities {
                backend,
                platform: Platform::Native,
                adapter: AdapterInfo { name: adapter.into(), ..Default::default() },
                limits: DeviceLimits {
                    max_buffer_size: 1 << 28,
                    max_storage_buffer_binding_size: 1 << 28,
                    max_storage_buffers_per_shader_stage: 8,
                    max_compute_workgroups_per_dimension: 65_535,
                },
                asking_price: 0,
                duty_cycle: 1.0,
                slots: 1,
            }),
            replicas_returned: 0,
            replicas_accepted: 0,
            replicas_rejected: 0,
            last_seen_ms: 0,
            escrow: None,
        }
    }

    #[test]
    fn groups_count_online_workers_only() {
        let workers = [
            worker(true, Some(Backend::Vulkan), "H100"),
            worker(true, Some(Backend::Vulkan), "H100"),
            worker(true, Some(Backend::Vulkan), "A10"),
            worker(true, Some(Backend::BrowserWebgpu), ""),
            worker(false, Some(Backend::Metal), "M2"),
            worker(true, None, ""),
        ];
        let groups = group_workers(&workers);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].label, "Vulkan");
        assert_eq!(groups[0].workers, 3);
        assert_eq!(groups[0].adapters, vec![("H100".to_string(), 2), ("A10".to_string(), 1)]);
        assert!(groups.iter().all(|g| g.backend != "metal"));
        assert!(groups.iter().any(|g| g.label == "Connecting" && g.adapters[0].0 == "not announced"));
    }

    #[test]
    fn rates_come_from_counter_deltas() {
        let mut h = History::new(10);
        assert_eq!(h.record(0.0, 2, Some(100)).rate, None);
        assert_eq!(h.record(2_000.0, 2, Some(110)).rate, Some(5.0));
        assert_eq!(h.record(4_000.0, 3, Some(130)).rate, Some(10.0));
        assert_eq!(h.window_rate(), Some(7.5));
        // The relay restarted: the counter went back; no negative rate, the window restarts.
        assert_eq!(h.record(6_000.0, 1, Some(4)).rate, None);
        assert_eq!(h.window_rate(), None);
        assert_eq!(h.record(8_000.0, 1, Some(8)).rate, Some(2.0));
        assert_eq!(h.window_rate(), Some(2.0));
    }

    #[test]
    fn relays_without_the_counter_have_no_rate() {
        let mut h = History::new(10);
        h.record(0.0, 1, None);
        assert_eq!(h.record(1_000.0, 1, None).rate, None);
        assert_eq!(h.window_rate(), None);
    }

    #[test]
    fn the_relays_earlier_readings_go_in_front() {
        let mut h = History::new(4);
        h.record(10_000.0, 2, Some(50));
        h.record(12_000.0, 3, Some(60));
        // The relay's readings: two before the page's first, one the page has already seen.
        let seeded = h.with_earlier(&[(6_000.0, 1, Some(30)), (8_000.0, 2, Some(40)), (11_000.0, 9, Some(99))]);
        let kept: Vec<(f64, Option<f64>)> = seeded.samples().map(|s| (s.at_ms, s.rate)).collect();
        assert_eq!(kept, vec![(6_000.0, None), (8_000.0, Some(5.0)), (10_000.0, Some(5.0)), (12_000.0, Some(5.0))]);
        // More than fit: the newest are kept.
        let full = h.with_earlier(&[(0.0, 1, Some(0)), (2_000.0, 1, Some(2)), (4_000.0, 1, Some(4))]);
        assert_eq!(full.samples().map(|s| s.at_ms).collect::<Vec<_>>(), vec![2_000.0, 4_000.0, 10_000.0, 12_000.0]);
    }

    #[test]
    fn history_keeps_its_capacity() {
        let mut h = History::new(3);
        for i in 0..5 {
            h.record(f64::from(i) * 1000.0, i as u64, Some(u64::from(i as u32) * 10));
        }
        let kept: Vec<u64> = h.samples().map(|s| s.workers_online).collect();
        assert_eq!(kept, vec![2, 3, 4]);
        assert_eq!(h.window_rate(), Some(10.0));
    }
}
