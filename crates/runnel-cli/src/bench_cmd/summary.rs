//! What a run reports: the summary (throughput, latency percentiles from the HDR histograms,
//! CPU-seconds per GB) as a table or one JSON line, and the CPU times it is computed from.
//!
//! The JSON keeps one shape for every subcommand, so scripts read any of them the same way:
//! what does not apply to a subcommand is 0 or null (`consume` has no producers, so no
//! `acks`), never left out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::Plan;
use super::Counters;
use crate::produce_cmd::MB;

#[derive(Debug, Serialize)]
pub(super) struct Summary {
    mode: &'static str,
    topic: String,
    partitions: usize,
    /// Produced (produce) or consumed (consume, e2e) records.
    records: u64,
    bytes: u64,
    /// Bytes of each record's value (produce, e2e); the mean bytes of key and value read
    /// (consume, which does not choose them).
    record_size: usize,
    producers: usize,
    consumers: usize,
    /// The producers' settings (null for consume).
    acks: Option<&'static str>,
    compression: Option<&'static str>,
    elapsed_s: f64,
    records_per_sec: f64,
    mb_per_sec: f64,
    /// Records that failed to produce.
    pub(super) errors: u64,
    warmup_s: f64,
    /// This process's CPU time per 10^9 bytes measured.
    client_cpu_s_per_gb: f64,
    /// The broker's (with --broker-pid).
    broker_cpu_s_per_gb: Option<f64>,
    /// Send to acknowledgement (produce, e2e).
    latency_ms: Option<Latency>,
    /// Record timestamp to consumption (e2e).
    e2e_latency_ms: Option<Latency>,
}

/// CPU time used so far, in clock ticks, by this process and the broker's.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuTimes {
    client: u64,
    broker: Option<u64>,
}

/// CPU seconds between two [`CpuTimes`].
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuSeconds {
    client: f64,
    broker: Option<f64>,
}

/// `/proc` reports CPU times in USER_HZ ticks, 100 per second on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

impl CpuTimes {
    pub(super) fn now(broker_pid: Option<u32>) -> CpuTimes {
        CpuTimes {
            client: process_ticks("self").unwrap_or(0),
            broker: broker_pid.and_then(|pid| process_ticks(&pid.to_string())),
        }
    }

    pub(super) fn since(&self, start: &CpuTimes) -> CpuSeconds {
        let seconds = |end: u64, start: u64| end.saturating_sub(start) as f64 / TICKS_PER_SECOND;
        CpuSeconds {
            client: seconds(self.client, start.client),
            broker: self
                .broker
                .zip(start.broker)
                .map(|(end, start)| seconds(end, start)),
        }
    }
}

/// User plus system time of a process from `/proc/<pid>/stat`; `None` where there is none.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&stat)
}

/// Fields 14 and 15 (utime, stime), counted after the command name, which may hold spaces.
fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    #[serde(rename = "p99.9")]
    p99_9: f64,
    max: f64,
    mean: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Option<Latency> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(Latency {
            p50: ms(histogram.value_at_quantile(0.50)),
            p95: ms(histogram.value_at_quantile(0.95)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p99_9: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: (histogram.mean()).round() / 1000.0,
        })
    }

    fn line(&self) -> String {
        format!(
            "p50 {:.2}  p95 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
            self.p50, self.p95, self.p99, self.p99_9, self.max, self.mean
        )
    }
}

impl Summary {
    pub(super) fn new(
        plan: &Plan,
        partitions: usize,
        counters: &Counters,
        (elapsed, cpu): (Duration, CpuSeconds),
        produce: Option<&Histogram<u64>>,
        end_to_end: Option<&Histogram<u64>>,
    ) -> Summary {
        let side = counters.reported(plan.mode);
        let records = side.measured.load(Ordering::Acquire);
        let bytes = side.measured_bytes.load(Ordering::Acquire);
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let gigabytes = (bytes as f64 / 1e9).max(1e-12);
        let per_gb = |cpu_seconds: f64| (cpu_seconds / gigabytes * 1000.0).round() / 1000.0;
        let producers = plan.producers.as_ref();
        let mean_size = bytes.checked_div(records).unwrap_or(0) as usize;
        Summary {
            mode: plan.mode.as_str(),
            topic: plan.common.topic.clone(),
            partitions,
            records,
            bytes,
            record_size: producers.map_or(mean_size, |load| load.record_size),
            producers: producers.map_or(0, |load| load.producers),
            consumers: plan.consumers.as_ref().map_or(0, |load| load.consumers),
            acks: producers.map(|load| load.producer.acks.as_str()),
            compression: producers.map(|load| load.producer.compression.as_str()),
            elapsed_s: (seconds * 1000.0).round() / 1000.0,
            records_per_sec: (records as f64 / seconds).round(),
            mb_per_sec: (bytes as f64 / MB / seconds * 100.0).round() / 100.0,
            errors: counters.errors.load(Ordering::Acquire),
            warmup_s: plan.common.warmup,
            client_cpu_s_per_gb: per_gb(cpu.client),
            broker_cpu_s_per_gb: cpu.broker.map(per_gb),
            latency_ms: produce.and_then(Latency::of),
            e2e_latency_ms: end_to_end.and_then(Latency::of),
        }
    }

    pub(super) fn table(&self) -> String {
        let verb = match self.mode {
            "produce" => "Produced",
            _ => "Consumed",
        };
        let mut text = format!(
            "{verb} {} records ({:.2} MB) {} {:?} in {:.2} s: {:.0} records/s, {:.2} MB/s\n",
            self.records,
            self.bytes as f64 / MB,
            if verb == "Produced" { "to" } else { "from" },
            self.topic,
            self.elapsed_s,
            self.records_per_sec,
            self.mb_per_sec
        );
        if let Some(latency) = &self.latency_ms {
            text.push_str(&format!("Produce latency ms: {}\n", latency.line()));
        }
        if let Some(latency) = &self.e2e_latency_ms {
            text.push_str(&format!("End-to-end latency ms: {}\n", latency.line()));
        }
        text.push_str(&format!(
            "CPU-seconds per GB: client {:.3}",
            self.client_cpu_s_per_gb
        ));
        if let Some(broker) = self.broker_cpu_s_per_gb {
            text.push_str(&format!(", broker {broker:.3}"));
        }
        if self.warmup_s > 0.0 {
            text.push_str(&format!(" (after a {:.1} s warm-up)", self.warmup_s));
        }
        text.push('\n');
        if self.errors > 0 {
            text.push_str(&format!("Failed records: {}\n", self.errors));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::super::new_histogram;
    use super::*;

    #[test]
    fn cpu_times_come_from_proc_stat() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 75 0 0 20 0 9";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert!(
            process_ticks("self").is_some(),
            "this process has a /proc entry"
        );
    }

    #[test]
    fn latencies_report_in_milliseconds() {
        let mut histogram = new_histogram();
        for micros in 1..=1000 {
            histogram.saturating_record(micros * 1000);
        }
        let latency = Latency::of(&histogram).expect("recorded");
        assert!((latency.p50 - 500.0).abs() < 1.0, "{latency:?}");
        assert!((latency.p99 - 990.0).abs() < 1.0, "{latency:?}");
        assert!((latency.max - 1000.0).abs() < 1.0, "{latency:?}");
        assert!(Latency::of(&new_histogram()).is_none());
        let json = serde_json::to_value(&latency).expect("json");
        assert!(json.get("p99.9").is_some(), "{json}");
    }
}
