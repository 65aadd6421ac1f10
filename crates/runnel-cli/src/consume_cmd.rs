//! `runnel consume TOPIC`: records to stdout, one value a line by default, as kcat templates
//! (`--format '%k=%v\n'`) or one JSON object a line (`--format json`).
//!
//! Without `--group` every partition (or those of `--partition`) is assigned and read from
//! `--offset`; with `--group` the consumer joins the group, which decides the partitions, and
//! starts from the committed offsets (`--offset earliest|latest` for partitions without one),
//! committing what it printed when it stops.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use runnel_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, TopicPartition,
};
use runnel_client::{Admin, OffsetSpec};
use serde::Serialize;

use crate::output::ClusterArgs;
use crate::template::Template;

/// How long one poll waits before the loop checks for the end and for Ctrl-C.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Where to start: earliest, latest, an offset N, or @TIMESTAMP_MS (the first record at or
    /// after that time). With --group: where partitions without a committed offset start.
    #[arg(long, short = 'o', value_parser = parse_start)]
    offset: Option<Start>,
    /// Only this partition (repeatable).
    #[arg(long = "partition", short = 'p', value_name = "P")]
    partitions: Vec<i32>,
    /// Read as a member of this consumer group, committing offsets.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(short = 'n', long = "count", value_name = "COUNT")]
    count: Option<u64>,
    /// Stop when every assigned partition reached the end it had when the command started.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Which records of transactions to show: `read_committed` (only committed ones, up to
    /// the last stable offset, as kcat) or `read_uncommitted` (everything written).
    #[arg(long, value_parser = parse_isolation, default_value = "read_committed")]
    isolation: IsolationLevel,
    /// `json` (one object a line), or a template: %v value, %k key, %t topic, %p partition,
    /// %o offset, %T timestamp, %h headers, %K/%S key/value length, \n \t escapes.
    #[arg(long, short = 'f', default_value = "%v\\n")]
    format: String,
    #[command(flatten)]
    cluster: ClusterArgs,
}

fn parse_isolation(text: &str) -> Result<IsolationLevel, String> {
    match text {
        "read_committed" => Ok(IsolationLevel::ReadCommitted),
        "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
        _ => Err("read_committed or read_uncommitted".to_string()),
    }
}

/// `--offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    Offset(i64),
    Timestamp(i64),
}

fn parse_start(text: &str) -> Result<Start, String> {
    match text {
        "earliest" | "beginning" => Ok(Start::Earliest),
        "latest" | "end" => Ok(Start::Latest),
        _ => {
            let bad = || format!("{text:?} is not earliest, latest, an offset or @TIMESTAMP_MS");
            if let Some(timestamp) = text.strip_prefix('@') {
                let ms: i64 = timestamp.parse().map_err(|_| bad())?;
                if ms < 0 {
                    return Err(bad());
                }
                Ok(Start::Timestamp(ms))
            } else {
                let offset: i64 = text.parse().map_err(|_| bad())?;
                if offset < 0 {
                    return Err(bad());
                }
                Ok(Start::Offset(offset))
            }
        }
    }
}

enum Output {
    Template(Template),
    Json,
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: i64,
    key: Option<std::borrow::Cow<'a, str>>,
    value: Option<std::borrow::Cow<'a, str>>,
    headers: Vec<JsonHeader<'a>>,
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<std::borrow::Cow<'a, str>>,
}

/// Bytes as text for JSON; bytes that are not UTF-8 get U+FFFD.
fn text(bytes: &Option<bytes::Bytes>) -> Option<std::borrow::Cow<'_, str>> {
    bytes.as_deref().map(String::from_utf8_lossy)
}

impl Output {
    fn render(&self, record: &ConsumerRecord, out: &mut Vec<u8>) -> anyhow::Result<()> {
        match self {
            Output::Template(template) => template.render(record, out),
            Output::Json => {
                let json = JsonRecord {
                    topic: &record.topic,
                    partition: record.partition,
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: text(&record.key),
                    value: text(&record.value),
                    headers: record
                        .headers
                        .iter()
                        .map(|(key, value)| JsonHeader {
                            key,
                            value: text(value),
                        })
                        .collect(),
                };
                serde_json::to_writer(&mut *out, &json)?;
                out.push(b'\n');
            }
        }
        Ok(())
    }
}

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let output = if args.format == "json" {
        Output::Json
    } else {
        Output::Template(Template::parse(&args.format).map_err(anyhow::Error::msg)?)
    };
    if args.group.is_some() && args.partitions.is_empty() {
        if let Some(Start::Offset(_) | Start::Timestamp(_)) = args.offset {
            bail!("with --group, --offset is earliest or latest (where partitions without a committed offset start); add --partition to start from an offset");
        }
    }

    let mut config = ConsumerConfig::new(args.cluster.bootstrap.as_str());
    config.isolation_level = args.isolation;
    config.auto_offset_reset = match args.offset {
        Some(Start::Earliest) => OffsetReset::Earliest,
        _ => OffsetReset::Latest,
    };
    if let Some(group) = &args.group {
        config = config.group(group.as_str());
        // The consumer's auto-commit would commit what was fetched; `-n 3` must commit only
        // the three records printed, so commits are ours (see `commit_printed`).
        config.enable_auto_commit = false;
    }
    let consumer = Consumer::connect(config)
        .await
        .map_err(|error| args.cluster.connect_error(error))?;
    let admin = Admin::from_cluster(consumer.cluster().clone());
    let metadata = admin.describe_topic(&args.topic).await?;
    let all: Vec<i32> = metadata.partitions.iter().map(|p| p.partition).collect();
    if let Some(missing) = args.partitions.iter().find(|p| !all.contains(p)) {
        bail!(
            "topic {:?} has no partition {missing} (it has {} partitions)",
            args.topic,
            all.len()
        );
    }

    // The ends as of now, for --exit-at-end: records produced later do not keep us reading.
    let ends: HashMap<i32, i64> = if args.exit_at_end {
        admin
            .list_offsets_isolated(&args.topic, &all, OffsetSpec::Latest, args.isolation)
            .await?
            .into_iter()
            .map(|(partition, listed)| (partition, listed.offset))
            .collect()
    } else {
        HashMap::new()
    };

    if args.group.is_some() && args.partitions.is_empty() {
        consumer.subscribe(&[args.topic.as_str()]).await?;
    } else {
        let partitions = if args.partitions.is_empty() {
            all.clone()
        } else {
            args.partitions.clone()
        };
        let tps: Vec<TopicPartition> = partitions
            .iter()
            .map(|&p| TopicPartition::new(args.topic.as_str(), p))
            .collect();
        consumer.assign(tps.clone()).await?;
        // With a group and no --offset, the committed offsets say where to start.
        let seek = args.group.is_none() || args.offset.is_some();
        if seek {
            position_at(&consumer, &tps, args.offset.unwrap_or(Start::Latest)).await?;
        }
    }

    let mut printed = Printed::default();
    let result = consume_loop(&consumer, &args, &output, &ends, &mut printed).await;
    if args.group.is_some() {
        commit_printed(&consumer, &args.topic, &mut printed).await;
    }
    let closed = consumer.close().await;
    result?;
    closed.context("closing the consumer")?;
    Ok(())
}

async fn position_at(
    consumer: &Consumer,
    tps: &[TopicPartition],
    start: Start,
) -> anyhow::Result<()> {
    match start {
        Start::Earliest => consumer.seek_to_beginning(tps).await?,
        Start::Latest => consumer.seek_to_end(tps).await?,
        Start::Offset(offset) => {
            for tp in tps {
                consumer.seek(tp, offset).await?;
            }
        }
        Start::Timestamp(ms) => {
            let query: Vec<(TopicPartition, i64)> = tps.iter().map(|tp| (tp.clone(), ms)).collect();
            for (tp, found) in consumer.offsets_for_times(&query).await? {
                match found {
                    Some((offset, _timestamp)) => consumer.seek(&tp, offset).await?,
                    None => consumer.seek_to_end(std::slice::from_ref(&tp)).await?,
                }
            }
        }
    }
    Ok(())
}

/// The next offset after the last record printed, per partition, not yet committed.
#[derive(Debug, Default)]
struct Printed {
    next_offsets: HashMap<i32, i64>,
    last_commit: Option<std::time::Instant>,
}

/// How often a group member commits what it has printed so far.
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Commits the printed progress of partitions this member still owns. A failure (a
/// rebalance took the partition) only means those records may be printed again elsewhere.
async fn commit_printed(consumer: &Consumer, topic: &str, printed: &mut Printed) {
    let assigned = consumer.assignment();
    let offsets: Vec<(TopicPartition, i64)> = printed
        .next_offsets
        .drain()
        .map(|(partition, next)| (TopicPartition::new(topic, partition), next))
        .filter(|(tp, _)| assigned.contains(tp))
        .collect();
    printed.last_commit = Some(std::time::Instant::now());
    if offsets.is_empty() {
        return;
    }
    if let Err(error) = consumer.commit_offsets(&offsets).await {
        tracing::warn!(%error, "could not commit the printed offsets");
    }
}

/// Polls and prints until `-n`, the end (`--exit-at-end`), Ctrl-C, or a closed stdout.
async fn consume_loop(
    consumer: &Consumer,
    args: &ConsumeArgs,
    output: &Output,
    ends: &HashMap<i32, i64>,
    progress: &mut Printed,
) -> anyhow::Result<()> {
    let mut printed: u64 = 0;
    let mut buffer = Vec::with_capacity(64 * 1024);
    let stdout = std::io::stdout();
    let mut interrupt = std::pin::pin!(crate::output::stop_signal());
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        if args.exit_at_end && at_end(consumer, ends).await? {
            return Ok(());
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            _ = &mut interrupt => return Ok(()),
        };
        buffer.clear();
        for record in &records {
            if args.count.is_some_and(|count| printed >= count) {
                break;
            }
            output.render(record, &mut buffer)?;
            printed += 1;
            progress
                .next_offsets
                .insert(record.partition, record.offset + 1);
        }
        if buffer.is_empty() {
            continue;
        }
        {
            let mut out = stdout.lock();
            match out.write_all(&buffer).and_then(|()| out.flush()) {
                // The reader (`| head`) has what it wanted.
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                result => result.context("cannot write to stdout")?,
            }
        }
        let commit_due = progress
            .last_commit
            .is_none_or(|at| at.elapsed() >= COMMIT_INTERVAL);
        if args.group.is_some() && commit_due {
            commit_printed(consumer, &args.topic, progress).await;
        }
    }
}

/// Whether every assigned partition's position reached its end as of the start. A group
/// member with no partitions yet is not at the end: it has not started.
async fn at_end(consumer: &Consumer, ends: &HashMap<i32, i64>) -> anyhow::Result<bool> {
    let assigned = consumer.assignment();
    if assigned.is_empty() {
        return Ok(false);
    }
    for tp in &assigned {
        let end = ends.get(&tp.partition).copied().unwrap_or(0);
        if consumer.position(tp).await? < end {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_parse_like_kcat() {
        assert_eq!(parse_start("earliest"), Ok(Start::Earliest));
        assert_eq!(parse_start("beginning"), Ok(Start::Earliest));
        assert_eq!(parse_start("latest"), Ok(Start::Latest));
        assert_eq!(parse_start("42"), Ok(Start::Offset(42)));
        assert_eq!(
            parse_start("@1700000000000"),
            Ok(Start::Timestamp(1_700_000_000_000))
        );
        for bad in ["-1", "@", "@x", "soon", "@-5"] {
            assert!(parse_start(bad).is_err(), "{bad}");
        }
    }
}
