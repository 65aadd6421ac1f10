//! The flags of `runnel bench produce|consume|e2e`.
//!
//! Each subcommand takes only the flags it acts on, so that its `--help` is its own and a flag
//! that would do nothing there (`bench consume --acks 1`) is refused rather than ignored:
//!
//! - [`Common`], on every subcommand: the cluster (`-b/--bootstrap`, profiles, `-X`) and
//!   `-f/--format`, as every other client command takes them, the topic, how much and how long
//!   to run, the warm-up and the broker's pid.
//! - [`ProducerLoad`], on `produce` and `e2e`: what is sent (record size, keys, rate,
//!   transactions), by how many producers, the topic's partitions when it is created, and the
//!   producer settings `runnel produce` has too (acks, compression, linger...).
//! - [`ConsumerLoad`], on `consume` and `e2e`: how many consumers.
//!
//! The flags keep the names they had when every subcommand took all of them, which the
//! benchmark scripts (scripts/bench_*.py) and the README's examples call.
//!
//! Values are checked in [`BenchArgs::plan`] rather than by clap, so that under `-f json` a bad
//! one is reported as `{"error": ...}` like any other failure of the command.

use anyhow::bail;
use clap::{Args, Subcommand};

use super::Mode;
use crate::output::OutputArgs;
use crate::produce_cmd::ProducerArgs;

/// Records produced when neither `--records` nor `--duration` says how many.
pub(super) const DEFAULT_RECORDS: u64 = 1_000_000;

#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Produce records as fast as allowed; latency is send to acknowledgement.
    Produce(ProduceBench),
    /// Read records from the log start.
    Consume(ConsumeBench),
    /// Produce and consume at once; latency is record timestamp to consumption.
    E2e(E2eBench),
}

// `--records` is common, but what it counts and its default differ: each subcommand says its
// own in its help.
#[derive(Debug, Args)]
#[command(mut_arg("records", |arg| arg.help(
    "Records to send in total (default 1,000,000 unless --duration is given)"
)))]
struct ProduceBench {
    #[command(flatten)]
    common: Common,
    #[command(flatten, next_help_heading = "Producers")]
    producers: ProducerLoad,
}

#[derive(Debug, Args)]
#[command(mut_arg("records", |arg| arg.help(
    "Records to read in total (default: what the topic holds when the run starts)"
)))]
struct ConsumeBench {
    #[command(flatten)]
    common: Common,
    #[command(flatten, next_help_heading = "Consumers")]
    consumers: ConsumerLoad,
}

#[derive(Debug, Args)]
#[command(mut_arg("records", |arg| arg.help(
    "Records to send, and then read, in total (default 1,000,000 unless --duration is given)"
)))]
struct E2eBench {
    #[command(flatten)]
    common: Common,
    #[command(flatten, next_help_heading = "Producers")]
    producers: ProducerLoad,
    #[command(flatten, next_help_heading = "Consumers")]
    consumers: ConsumerLoad,
}

/// What every subcommand uses.
#[derive(Debug, Args)]
pub(super) struct Common {
    /// The topic to load.
    #[arg(long, default_value = "runnel-bench")]
    pub(super) topic: String,
    /// Records in total (each subcommand's help says which and how many by default).
    #[arg(long)]
    pub(super) records: Option<u64>,
    /// Stop after this many seconds, even if --records are not done.
    #[arg(long, value_name = "SECONDS")]
    pub(super) duration: Option<f64>,
    /// Run this long before measuring: records sent or read during the warm-up count toward
    /// --records but not toward the summary.
    #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
    pub(super) warmup: f64,
    /// The broker's process id, to report its CPU-seconds per GB (Linux, same host).
    #[arg(long, value_name = "PID")]
    pub(super) broker_pid: Option<u32>,
    #[command(flatten)]
    pub(super) output: OutputArgs,
}

/// What the producers send and how (produce, e2e).
#[derive(Debug, Args)]
pub(super) struct ProducerLoad {
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 1024)]
    pub(super) record_size: usize,
    /// Partitions of the topic, created if missing (default: the broker's num.partitions).
    #[arg(long)]
    pub(super) partitions: Option<i32>,
    /// Distinct keys, used in turn (0: records have no key).
    #[arg(long, default_value_t = 0)]
    pub(super) keys: u64,
    /// Concurrent producers, each with its own connections.
    #[arg(long, default_value_t = 1)]
    pub(super) producers: usize,
    /// Records per second in total, or `unlimited`.
    #[arg(long, default_value = "unlimited", value_parser = parse_rate)]
    pub(super) rate: Rate,
    /// Produce in transactions of this many records each (a transactional producer per
    /// worker, committing each one); latency then runs to the commit.
    #[arg(long, value_name = "RECORDS")]
    pub(super) transaction_size: Option<u64>,
    #[command(flatten)]
    pub(super) producer: ProducerArgs,
}

/// How the records are read (consume, e2e).
#[derive(Debug, Args)]
pub(super) struct ConsumerLoad {
    /// Concurrent consumers; the partitions are split between them.
    #[arg(long, default_value_t = 1)]
    pub(super) consumers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Rate {
    Unlimited,
    PerSecond(f64),
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(Rate::PerSecond(rate)),
        _ => Err(format!(
            "{text:?} is not a positive number of records per second or `unlimited`"
        )),
    }
}

/// One run, its flags checked: the producer side is there for produce and e2e, the consumer
/// side for consume and e2e.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) mode: Mode,
    pub(super) common: Common,
    pub(super) producers: Option<ProducerLoad>,
    pub(super) consumers: Option<ConsumerLoad>,
}

impl BenchArgs {
    /// The run these flags ask for, or why they do not make one.
    pub(super) fn plan(self) -> anyhow::Result<Plan> {
        let plan = match self.command {
            BenchCommand::Produce(args) => Plan {
                mode: Mode::Produce,
                common: args.common,
                producers: Some(args.producers),
                consumers: None,
            },
            BenchCommand::Consume(args) => Plan {
                mode: Mode::Consume,
                common: args.common,
                producers: None,
                consumers: Some(args.consumers),
            },
            BenchCommand::E2e(args) => Plan {
                mode: Mode::E2e,
                common: args.common,
                producers: Some(args.producers),
                consumers: Some(args.consumers),
            },
        };
        plan.check()?;
        Ok(plan)
    }
}

impl Plan {
    fn check(&self) -> anyhow::Result<()> {
        let seconds = |value: f64| value >= 0.0 && value.is_finite();
        if !seconds(self.common.warmup) {
            bail!("--warmup must be a number of seconds, at least 0");
        }
        if self
            .common
            .duration
            .is_some_and(|duration| !seconds(duration))
        {
            bail!("--duration must be a number of seconds, at least 0");
        }
        if let Some(load) = &self.producers {
            if load.producers == 0 {
                bail!("--producers must be at least 1");
            }
            if load.transaction_size == Some(0) {
                bail!("--transaction-size must be at least 1");
            }
            if load.partitions.is_some_and(|partitions| partitions < 1) {
                bail!("--partitions must be at least 1");
            }
        }
        if self
            .consumers
            .as_ref()
            .is_some_and(|load| load.consumers == 0)
        {
            bail!("--consumers must be at least 1");
        }
        Ok(())
    }

    /// Records wanted in total, or `None` for as many as `--duration` allows (or, consuming
    /// alone, what the topic holds, which only the cluster knows).
    pub(super) fn records_wanted(&self) -> Option<u64> {
        match (self.mode, self.common.records, self.common.duration) {
            (_, Some(records), _) => Some(records),
            (Mode::Consume, None, _) | (_, None, Some(_)) => None,
            (_, None, None) => Some(DEFAULT_RECORDS),
        }
    }
}

/// `runnel` with only `bench` in it, for the tests of the flags and of the settings they make.
#[cfg(test)]
#[derive(Debug, clap::Parser)]
pub(super) struct TestCli {
    #[command(subcommand)]
    command: TestCommand,
}

#[cfg(test)]
#[derive(Debug, Subcommand)]
enum TestCommand {
    Bench(BenchArgs),
}

/// The plan of `runnel ARGS...` (`args` starting with `bench`).
#[cfg(test)]
pub(super) fn plan(args: &[&str]) -> anyhow::Result<Plan> {
    use clap::Parser;
    let cli = TestCli::try_parse_from(std::iter::once("runnel").chain(args.iter().copied()))?;
    let TestCommand::Bench(bench) = cli.command;
    bench.plan()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    fn help(subcommand: &str) -> String {
        let mut command = TestCli::command();
        command.build();
        command
            .find_subcommand_mut("bench")
            .and_then(|bench| bench.find_subcommand_mut(subcommand))
            .map(|sub| sub.render_long_help().to_string())
            .unwrap_or_default()
    }

    #[test]
    fn rates_are_positive_or_unlimited() {
        assert_eq!(parse_rate("unlimited"), Ok(Rate::Unlimited));
        assert_eq!(parse_rate("2500"), Ok(Rate::PerSecond(2500.0)));
        for bad in ["0", "-1", "fast", "inf", "NaN"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn each_subcommand_takes_only_its_own_flags() {
        let consume = plan(&["bench", "consume", "--consumers", "2", "-f", "json"])
            .expect("consume's own flags");
        assert_eq!(consume.mode, Mode::Consume);
        assert!(consume.producers.is_none());
        assert_eq!(consume.consumers.map(|load| load.consumers), Some(2));
        for producer_only in [
            &["--acks", "1"][..],
            &["--linger-ms", "0"],
            &["--producers", "2"],
            &["--record-size", "10"],
            &["--rate", "10"],
            &["--partitions", "3"],
        ] {
            let args = [&["bench", "consume"][..], producer_only].concat();
            assert!(plan(&args).is_err(), "{args:?}");
        }
        assert!(plan(&["bench", "produce", "--consumers", "2"]).is_err());

        let e2e = plan(&[
            "bench",
            "e2e",
            "--acks",
            "1",
            "--consumers",
            "2",
            "--producers",
            "3",
            "-b",
            "127.0.0.1:1",
        ])
        .expect("e2e takes both sides");
        assert_eq!(e2e.producers.map(|load| load.producers), Some(3));
        assert_eq!(e2e.consumers.map(|load| load.consumers), Some(2));
        assert_eq!(e2e.common.output.cluster.bootstrap, "127.0.0.1:1");
    }

    #[test]
    fn helps_list_only_their_own_flags() {
        let consume = help("consume");
        for absent in [
            "--acks",
            "--linger-ms",
            "--producers",
            "--record-size",
            "--rate",
        ] {
            assert!(!consume.contains(absent), "{absent} in:\n{consume}");
        }
        assert!(consume.contains("--consumers"), "{consume}");
        assert!(consume.contains("what the topic holds"), "{consume}");
        let produce = help("produce");
        for present in ["--acks", "--linger-ms", "--format", "--bootstrap", "-X"] {
            assert!(produce.contains(present), "{present} in:\n{produce}");
        }
        assert!(!produce.contains("--consumers"), "{produce}");
        let e2e = help("e2e");
        assert!(
            e2e.contains("--acks") && e2e.contains("--consumers"),
            "{e2e}"
        );
    }

    #[test]
    fn bad_values_are_errors_of_the_run() {
        for args in [
            &["bench", "produce", "--producers", "0"][..],
            &["bench", "e2e", "--consumers", "0"],
            &["bench", "produce", "--warmup=-1"],
            &["bench", "consume", "--duration", "inf"],
            &["bench", "produce", "--transaction-size", "0"],
        ] {
            let error = plan(args).expect_err("refused");
            assert!(
                error.downcast_ref::<clap::Error>().is_none(),
                "{args:?}: checked by the run, so -f json reports it: {error}"
            );
        }
    }

    #[test]
    fn records_default_by_mode() {
        let wanted = |args: &[&str]| plan(args).expect("plan").records_wanted();
        assert_eq!(wanted(&["bench", "produce"]), Some(DEFAULT_RECORDS));
        assert_eq!(wanted(&["bench", "consume"]), None);
        assert_eq!(wanted(&["bench", "e2e", "--duration", "5"]), None);
        assert_eq!(wanted(&["bench", "consume", "--records", "7"]), Some(7));
    }
}
