//! Metrics in the OpenMetrics text format Prometheus scrapes, for every part of Runnel that
//! reports them: the broker's admin listener, a Connect worker's REST API, a Streams
//! application.
//!
//! What is counted is kept by its owner, in atomics bumped where things happen (and a
//! [`Histogram`] for latencies); at a scrape the owner reads them into an [`Exposition`],
//! family by family, and [`Exposition::render`] writes the text through
//! `prometheus-client`'s encoder (names, `_total` suffixes, units, escaping). Names follow
//! Prometheus conventions: the unit in the name, `_total` on counters (added here).
//!
//! ```
//! use runnel_metrics::{Exposition, Unit};
//!
//! let mut out = Exposition::default();
//! out.counters("runnel_example_records", "Records seen.", None, [(vec![("topic", "t".to_owned())], 3)]);
//! out.gauges("runnel_example_open", "Things open now.", None, [(vec![], 1)]);
//! let text = out.render();
//! assert!(text.contains("runnel_example_records_total{topic=\"t\"} 3"));
//! assert!(text.contains("runnel_example_open 1"));
//! assert!(text.ends_with("# EOF\n"));
//! # let _ = Unit::Seconds;
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The content type of the text [`Exposition::render`] writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A sample's labels: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// The unit a family's name ends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Bytes,
}

/// A histogram whose observations only bump atomics. `sum` is kept in `unit`s of the
/// observed value (nanoseconds for durations), so that it is an integer.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One more than `bounds`: the last counts what is above every bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
    unit: f64,
}

/// A histogram at one moment, as the encoder takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub sum: f64,
    pub count: u64,
    /// (upper bound, observations in this bucket alone); the last bound is `f64::MAX`, +Inf.
    pub buckets: Vec<(f64, u64)>,
}

impl Histogram {
    /// Buckets with upper bounds `bounds` (ascending); `unit` is the resolution the sum is
    /// kept in (1e-9 for durations in seconds, 1.0 for counts).
    pub fn new(bounds: &'static [f64], unit: f64) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
            unit,
        }
    }

    pub fn observe(&self, value: f64) {
        let bucket = self.bounds.partition_point(|&bound| bound < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum
            .fetch_add((value / self.unit).max(0.0) as u64, Ordering::Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    pub fn is_empty(&self) -> bool {
        self.counts
            .iter()
            .all(|count| count.load(Ordering::Relaxed) == 0)
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .copied()
            .chain([f64::MAX])
            .zip(
                self.counts
                    .iter()
                    .map(|count| count.load(Ordering::Relaxed)),
            )
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, count)| count).sum(),
            sum: self.sum.load(Ordering::Relaxed) as f64 * self.unit,
            buckets,
        }
    }
}

enum Samples {
    Counter(Vec<(Labels, u64)>),
    Gauge(Vec<(Labels, i64)>),
    Histogram(Vec<(Labels, HistogramSnapshot)>),
}

struct Family {
    name: String,
    help: String,
    unit: Option<Unit>,
    samples: Samples,
}

/// Metric families read at one scrape, to be rendered as text.
#[derive(Default)]
pub struct Exposition {
    families: Vec<Family>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("families", &self.families.len())
            .finish()
    }
}

impl Exposition {
    /// A counter family: `name` without `_total`, which the text adds.
    pub fn counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        self.push(
            name,
            help,
            unit,
            Samples::Counter(samples.into_iter().collect()),
        );
    }

    pub fn gauges(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (Labels, i64)>,
    ) {
        self.push(
            name,
            help,
            unit,
            Samples::Gauge(samples.into_iter().collect()),
        );
    }

    pub fn histograms(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        samples: impl IntoIterator<Item = (Labels, HistogramSnapshot)>,
    ) {
        self.push(
            name,
            help,
            unit,
            Samples::Histogram(samples.into_iter().collect()),
        );
    }

    fn push(&mut self, name: &str, help: &str, unit: Option<Unit>, mut samples: Samples) {
        // prometheus-client writes label values as they are; a group id may hold any
        // character, and one quote would break the whole scrape.
        match &mut samples {
            Samples::Counter(samples) => samples.iter_mut().for_each(|(l, _)| escape(l)),
            Samples::Gauge(samples) => samples.iter_mut().for_each(|(l, _)| escape(l)),
            Samples::Histogram(samples) => samples.iter_mut().for_each(|(l, _)| escape(l)),
        }
        self.families.push(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            unit,
            samples,
        });
    }

    /// The families in the OpenMetrics text format, ending with `# EOF`.
    pub fn render(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Families(Mutex::new(self.families))));
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            // Writing into a String fails only if a metric's own encoding does.
            let _ = writeln!(text, "# encoding failed: {error}");
        }
        text
    }
}

/// Escapes label values as the OpenMetrics text format requires: backslash, double quote and
/// line feed.
fn escape(labels: &mut Labels) {
    for (_, value) in labels {
        if value.contains(['\\', '"', '\n']) {
            *value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
        }
    }
}

/// The collector one render registers: its families, encoded once.
struct Families(Mutex<Vec<Family>>);

impl std::fmt::Debug for Families {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Families")
    }
}

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        let families = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for family in families {
            let unit = family.unit.map(|unit| match unit {
                Unit::Seconds => prometheus_client::registry::Unit::Seconds,
                Unit::Bytes => prometheus_client::registry::Unit::Bytes,
            });
            let (kind, samples): (MetricType, Vec<(Labels, Value)>) = match family.samples {
                Samples::Counter(samples) => (
                    MetricType::Counter,
                    samples
                        .into_iter()
                        .map(|(l, v)| (l, Value::Counter(v)))
                        .collect(),
                ),
                Samples::Gauge(samples) => (
                    MetricType::Gauge,
                    samples
                        .into_iter()
                        .map(|(l, v)| (l, Value::Gauge(v)))
                        .collect(),
                ),
                Samples::Histogram(samples) => (
                    MetricType::Histogram,
                    samples
                        .into_iter()
                        .map(|(l, v)| (l, Value::Histogram(v)))
                        .collect(),
                ),
            };
            let mut metric =
                encoder.encode_descriptor(&family.name, &family.help, unit.as_ref(), kind)?;
            let mut samples = samples.into_iter().peekable();
            if let Some((_, value)) = samples.next_if(|(labels, _)| labels.is_empty()) {
                // A metric without labels has one sample, written without `{}`.
                value.encode(metric)?;
                continue;
            }
            for (labels, value) in samples {
                value.encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram(HistogramSnapshot),
}

impl Value {
    fn encode(self, mut metric: MetricEncoder<'_>) -> std::fmt::Result {
        match self {
            Value::Counter(value) => ConstCounter::new(value).encode(metric),
            Value::Gauge(value) => ConstGauge::new(value).encode(metric),
            Value::Histogram(snapshot) => metric.encode_histogram::<NoLabelSet>(
                snapshot.sum,
                snapshot.count,
                &snapshot.buckets,
                None,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_puts_each_value_in_the_first_bucket_at_or_above_it() {
        let histogram = Histogram::new(&[1.0, 10.0], 1.0);
        for value in [0.5, 1.0, 5.0, 10.0, 11.0, 1000.0] {
            histogram.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 6);
        assert_eq!(snapshot.sum, 1027.0);
        assert_eq!(snapshot.buckets, vec![(1.0, 2), (10.0, 2), (f64::MAX, 2)]);
    }

    #[test]
    fn families_render_with_units_suffixes_and_escaped_labels() {
        let mut out = Exposition::default();
        let histogram = Histogram::new(&[0.1], 1e-9);
        histogram.observe_duration(Duration::from_millis(50));
        out.histograms(
            "runnel_x_duration",
            "How long.",
            Some(Unit::Seconds),
            [(vec![("api", "Fetch".to_owned())], histogram.snapshot())],
        );
        out.counters(
            "runnel_x_bytes",
            "Bytes.",
            Some(Unit::Bytes),
            [(vec![("topic", "a\"b".to_owned())], 7)],
        );
        out.counters("runnel_x_empty", "Nothing yet.", None, []);
        out.gauges(
            "runnel_x_lag",
            "Lag.",
            None,
            [(vec![("group", "g\\1\n\"x".to_owned())], 2)],
        );
        let text = out.render();
        assert!(
            text.contains("runnel_x_duration_seconds_count{api=\"Fetch\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("runnel_x_duration_seconds_bucket{le=\"0.1\",api=\"Fetch\"} 1")
                || text.contains("runnel_x_duration_seconds_bucket{api=\"Fetch\",le=\"0.1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("runnel_x_bytes_bytes_total{topic=\"a\\\"b\"} 7"),
            "{text}"
        );
        assert!(text.contains("# TYPE runnel_x_empty counter"), "{text}");
        assert!(
            text.contains(r#"runnel_x_lag{group="g\\1\n\"x"} 2"#),
            "{text}"
        );
    }
}
