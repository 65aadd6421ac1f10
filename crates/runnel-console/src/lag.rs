//! The lag chart's history: a small ring of samples per group, kept in the console's memory.
//!
//! Nothing in Kafka remembers a group's past lag, and the console reads only what any client
//! can, so it writes down what it sees, on the server rather than in the page (a reload or a
//! second person sees the same history): each time a group's page asks for the group (the
//! page polls every 5 s while it is open), and each time the groups list is loaded, the
//! group's total lag is one sample. Samples closer together than [`SAMPLE_INTERVAL_MS`] are
//! not kept, so two tabs open on one group do not crowd the ring. The history therefore
//! covers the times someone looked, since the broker started; it is lost with the process,
//! and a group nobody looked at has none.
//!
//! Memory is bounded: [`SAMPLES_MAX`] samples per group and [`GROUPS_MAX`] groups, the group
//! sampled longest ago forgotten first.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;

/// Samples kept per group: 360 at one every 5 s (the page's poll) is half an hour.
pub(crate) const SAMPLES_MAX: usize = 360;
/// Groups with a history at once.
pub(crate) const GROUPS_MAX: usize = 1000;
/// The least time between two samples of one group.
pub(crate) const SAMPLE_INTERVAL_MS: i64 = 1000;

/// One group's total lag at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Sample {
    /// Milliseconds since the epoch.
    pub(crate) at: i64,
    pub(crate) lag: i64,
}

/// Every group's samples.
#[derive(Debug, Default)]
pub(crate) struct LagHistory {
    groups: HashMap<String, VecDeque<Sample>>,
}

impl LagHistory {
    /// Notes the group's lag at `at` (unless a sample is too recent) and returns its history,
    /// oldest first.
    pub(crate) fn record(&mut self, group: &str, at: i64, lag: i64) -> Vec<Sample> {
        if !self.groups.contains_key(group) && self.groups.len() >= GROUPS_MAX {
            self.forget_stalest();
        }
        let samples = self.groups.entry(group.to_owned()).or_default();
        let too_soon = samples
            .back()
            .is_some_and(|last| at - last.at < SAMPLE_INTERVAL_MS);
        if !too_soon {
            if samples.len() >= SAMPLES_MAX {
                samples.pop_front();
            }
            samples.push_back(Sample { at, lag });
        }
        samples.iter().copied().collect()
    }

    /// The group's history, oldest first, without sampling.
    pub(crate) fn history(&self, group: &str) -> Vec<Sample> {
        self.groups
            .get(group)
            .map(|samples| samples.iter().copied().collect())
            .unwrap_or_default()
    }

    fn forget_stalest(&mut self) {
        let stalest = self
            .groups
            .iter()
            .min_by_key(|(_, samples)| samples.back().map_or(i64::MIN, |s| s.at))
            .map(|(group, _)| group.clone());
        if let Some(group) = stalest {
            self.groups.remove(&group);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_accumulate_oldest_first() {
        let mut history = LagHistory::default();
        history.record("g", 1_000, 5);
        history.record("g", 3_000, 7);
        let samples = history.record("g", 5_000, 2);
        assert_eq!(
            samples,
            [
                Sample { at: 1_000, lag: 5 },
                Sample { at: 3_000, lag: 7 },
                Sample { at: 5_000, lag: 2 }
            ]
        );
        assert!(history.history("other").is_empty());
    }

    #[test]
    fn samples_too_close_together_are_not_kept() {
        let mut history = LagHistory::default();
        history.record("g", 10_000, 5);
        let samples = history.record("g", 10_000 + SAMPLE_INTERVAL_MS - 1, 9);
        assert_eq!(samples, [Sample { at: 10_000, lag: 5 }]);
    }

    #[test]
    fn the_ring_keeps_the_newest_samples() {
        let mut history = LagHistory::default();
        for i in 0..SAMPLES_MAX as i64 + 10 {
            history.record("g", i * SAMPLE_INTERVAL_MS, i);
        }
        let samples = history.history("g");
        assert_eq!(samples.len(), SAMPLES_MAX);
        assert_eq!(samples[0].lag, 10);
    }

    #[test]
    fn the_stalest_group_is_forgotten_first() {
        let mut history = LagHistory::default();
        for i in 0..GROUPS_MAX as i64 {
            // Group 0 was sampled last of all; group 1 longest ago.
            let at = if i == 0 { 1_000_000 } else { i };
            history.record(&format!("g{i}"), at, 1);
        }
        history.record("new", 2_000_000, 1);
        assert_eq!(history.groups.len(), GROUPS_MAX);
        assert!(history.history("g1").is_empty());
        assert!(!history.history("g0").is_empty());
        assert!(!history.history("new").is_empty());
    }
}
