//! `runnel consume TOPIC...`: records to stdout, one value a line by default, as kcat templates
//! (`-f '%k=%v\n'`) or one JSON object a line (`-f json`, binary-safe: see [`crate::template`]).
//!
//! Topics are named, or matched by regular expressions (`-r`). Without `--group` every
//! partition (or those of `--partition`) is assigned and read from the start `-o` says; with
//! `--group` the consumer joins the group, which decides the partitions, and starts from the
//! committed offsets (`-o beginning|end` for partitions without one), committing what it
//! printed when it stops.
//!
//! Reading stops after `-n` records, on Ctrl-C, or at an end: `-e` (the end each partition had
//! at the start), `-o START:END`, `--end-offset` or `--end-time` (see [`range`] for the
//! vocabulary). Ends are per partition: each one stops at its end and is paused, and the
//! command exits once every assigned partition has.

mod range;

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use runnel_client::consumer::subscription::topics_matching;
use runnel_client::consumer::{
    Consumer, ConsumerConfig, ConsumerRecord, IsolationLevel, OffsetReset, TopicPartition,
};
use runnel_client::{Admin, OffsetSpec};

use crate::output::ClusterArgs;
use crate::template::RecordFormat;
use range::{End, Range, Start};

/// How long one poll waits before the loop checks for the end and for Ctrl-C.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// The topics to read; with --regex, patterns that match whole topic names.
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,
    /// Read every topic whose name a TOPIC pattern matches (internal topics excepted); with
    /// --group, also topics created later.
    #[arg(long, short = 'r')]
    regex: bool,
    /// Where to start, and optionally end: beginning, end, an offset N, -N (N before each
    /// partition's end), +N (N after its start), @TIME; START:END (END exclusive: end, an
    /// offset, @TIME), e.g. -o 10:20, -o @T1:@T2, -o -5:end; kcat's s@MS / e@MS. TIME is epoch
    /// ms, RFC 3339, or before now as in @-1h. With --group, where partitions without a
    /// committed offset start (beginning or end).
    #[arg(
        long,
        short = 'o',
        value_name = "START[:END]",
        allow_hyphen_values = true,
        value_parser = range::parse_range_arg
    )]
    offset: Vec<Range>,
    /// Stop each partition before this offset (exclusive), or at `end` (as --exit-at-end).
    #[arg(long, value_name = "OFFSET", value_parser = range::parse_end_offset)]
    end_offset: Option<End>,
    /// Stop each partition at its first record stamped at or after TIME (epoch ms, RFC 3339,
    /// or before now as in -1h); a time still to come waits for it.
    #[arg(long, value_name = "TIME", value_parser = range::parse_end_time)]
    end_time: Option<End>,
    /// Only this partition of each topic (repeatable).
    #[arg(long = "partition", short = 'p', value_name = "P")]
    partitions: Vec<i32>,
    /// Read as a member of this consumer group, committing offsets.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Stop after this many records (kcat's -c).
    #[arg(
        short = 'n',
        long = "count",
        value_name = "COUNT",
        visible_short_alias = 'c'
    )]
    count: Option<u64>,
    /// Stop when every assigned partition reached the end it had when the command started.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Which records of transactions to show: `read_committed` (only committed ones, up to
    /// the last stable offset, as kcat) or `read_uncommitted` (everything written).
    #[arg(long, value_parser = parse_isolation, default_value = "read_committed")]
    isolation: IsolationLevel,
    /// `json` (one object a line; bytes that are not UTF-8 as base64, with
    /// "key_encoding"/"value_encoding": "base64"), or a template: %v or %s value, %k key,
    /// %t topic, %p partition, %o offset, %T timestamp, %h headers, %K/%S key/value length
    /// (-1 for null), \n \t \xHH escapes.
    #[arg(long, short = 'f', default_value = "%v\\n")]
    format: String,
    /// Print null keys and values as NULL in templates rather than nothing (kcat's -Z).
    #[arg(short = 'Z', long = "null-as-text")]
    null_as_text: bool,
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

/// Something kept per topic and partition, looked up by `&str` so that a record's topic
/// needs no allocation.
type PerPartition<T> = HashMap<String, HashMap<i32, T>>;

fn get_mut<'a, T>(map: &'a mut PerPartition<T>, topic: &str, partition: i32) -> Option<&'a mut T> {
    map.get_mut(topic)?.get_mut(&partition)
}

/// Where one partition stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Before this offset.
    Offset(i64),
    /// At the first record stamped at or after this time: a time still to come when the
    /// command started, so no offset names it yet.
    Time(i64),
}

#[derive(Debug)]
struct PartitionEnd {
    stop: Stop,
    done: bool,
}

/// The partitions' ends, when the command has one.
#[derive(Debug, Default)]
struct Ends {
    partitions: PerPartition<PartitionEnd>,
    /// A `Stop::Time` still to come: when the clock passes it, its partitions' ends become
    /// offsets (later records are stamped later).
    pending_time: Option<i64>,
}

/// The log start and end (the last stable offset under read_committed) of each partition.
type Bounds = HashMap<TopicPartition, (i64, i64)>;

pub(crate) async fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let output =
        RecordFormat::parse(&args.format, args.null_as_text).map_err(anyhow::Error::msg)?;
    let range = args
        .offset
        .iter()
        .try_fold(Range::default(), |merged, range| merged.merge(*range))
        .map_err(anyhow::Error::msg)?;
    let ends_given = [
        range.end,
        args.end_offset,
        args.end_time,
        args.exit_at_end.then_some(End::Now),
    ];
    let end = match ends_given.iter().flatten().collect::<Vec<_>>()[..] {
        [] => None,
        [end] => Some(*end),
        _ => bail!("give one end: -e, -o START:END, --end-offset or --end-time"),
    };
    let subscribing = args.group.is_some() && args.partitions.is_empty();
    if subscribing && !matches!(range.start, None | Some(Start::Earliest | Start::Latest)) {
        bail!("with --group, --offset starts at beginning or end (where partitions without a committed offset start); add --partition to start elsewhere");
    }

    let mut config = ConsumerConfig::new(args.cluster.bootstrap.as_str());
    // The profile's and -X's client properties too.
    config.client = args.cluster.client_config()?;
    config.isolation_level = args.isolation;
    config.auto_offset_reset = match range.start {
        Some(Start::Earliest) => OffsetReset::Earliest,
        _ => OffsetReset::Latest,
    };
    if let Some(group) = &args.group {
        config = config.group(group.as_str());
        // The consumer's auto-commit would commit what was fetched; `-n 3` must commit only
        // the three records printed, so commits are ours (see `commit_progress`).
        config.enable_auto_commit = false;
    }
    let consumer = Consumer::connect(config)
        .await
        .map_err(|error| args.cluster.connect_error(error))?;
    let admin = Admin::from_cluster(consumer.cluster().clone());

    // The topics and partitions as of now; a group subscribed to a pattern follows it later.
    let pattern = args.regex.then(|| {
        args.topics
            .iter()
            .map(|topic| format!("(?:{topic})"))
            .collect::<Vec<_>>()
            .join("|")
    });
    let topics: Vec<(String, Vec<i32>)> = match &pattern {
        Some(pattern) => {
            let listed = admin.list_topics(false).await?;
            let matching = topics_matching(pattern, listed.iter().map(|t| t.name.as_str()))
                .map_err(|error| anyhow::anyhow!("--regex: {error}"))?;
            if matching.is_empty() && args.group.is_none() {
                bail!("no topic matches {}", args.topics.join(" or "));
            }
            listed
                .into_iter()
                .filter(|topic| matching.contains(&topic.name))
                .map(|topic| {
                    let partitions = topic.partitions.iter().map(|p| p.partition).collect();
                    (topic.name, partitions)
                })
                .collect()
        }
        None => {
            let mut topics = Vec::with_capacity(args.topics.len());
            for name in &args.topics {
                let metadata = admin.describe_topic(name).await?;
                let partitions = metadata.partitions.iter().map(|p| p.partition).collect();
                topics.push((name.clone(), partitions));
            }
            topics
        }
    };
    let mut selected: Vec<TopicPartition> = Vec::new();
    for (topic, all) in &topics {
        if let Some(missing) = args.partitions.iter().find(|p| !all.contains(p)) {
            bail!(
                "topic {topic:?} has no partition {missing} (it has {} partitions)",
                all.len()
            );
        }
        for &partition in all {
            if args.partitions.is_empty() || args.partitions.contains(&partition) {
                selected.push(TopicPartition::new(topic.as_str(), partition));
            }
        }
    }

    let needs_bounds = matches!(
        range.start,
        Some(Start::BeforeEnd(_) | Start::AfterBeginning(_))
    ) || matches!(end, Some(End::Now | End::Time(_)));
    let bounds = if needs_bounds {
        bounds(&admin, &selected, args.isolation).await?
    } else {
        Bounds::new()
    };
    let mut ends = match end {
        Some(end) => Some(resolve_ends(&admin, &selected, end, &bounds, args.isolation).await?),
        None => None,
    };

    if subscribing {
        match &pattern {
            Some(pattern) => consumer.subscribe_pattern(pattern).await?,
            None => {
                let names: Vec<&str> = args.topics.iter().map(String::as_str).collect();
                consumer.subscribe(&names).await?;
            }
        }
    } else {
        consumer.assign(selected.clone()).await?;
        // With a group and no --offset, the committed offsets say where to start.
        if args.group.is_none() || range.start.is_some() {
            position_at(
                &consumer,
                &selected,
                range.start.unwrap_or(Start::Latest),
                &bounds,
            )
            .await?;
        }
    }

    let mut progress = Progress::default();
    let result = consume_loop(
        &consumer,
        &admin,
        &args,
        &output,
        ends.as_mut(),
        &mut progress,
    )
    .await;
    if args.group.is_some() {
        commit_progress(&consumer, &mut progress).await;
    }
    let closed = consumer.close().await;
    result?;
    closed.context("closing the consumer")?;
    Ok(())
}

/// The log start and end of `tps`, one ListOffsets per topic and kind.
async fn bounds(
    admin: &Admin,
    tps: &[TopicPartition],
    isolation: IsolationLevel,
) -> anyhow::Result<Bounds> {
    let mut bounds = Bounds::new();
    for (topic, partitions) in by_topic(tps) {
        let starts = admin
            .list_offsets_isolated(&topic, &partitions, OffsetSpec::Earliest, isolation)
            .await?;
        let ends = admin
            .list_offsets_isolated(&topic, &partitions, OffsetSpec::Latest, isolation)
            .await?;
        for ((partition, start), (_, end)) in starts.into_iter().zip(ends) {
            bounds.insert(
                TopicPartition::new(topic.as_str(), partition),
                (start.offset, end.offset),
            );
        }
    }
    Ok(bounds)
}

fn by_topic(tps: &[TopicPartition]) -> Vec<(String, Vec<i32>)> {
    let mut topics: Vec<(String, Vec<i32>)> = Vec::new();
    for tp in tps {
        match topics.iter_mut().find(|(topic, _)| *topic == tp.topic) {
            Some((_, partitions)) => partitions.push(tp.partition),
            None => topics.push((tp.topic.clone(), vec![tp.partition])),
        }
    }
    topics
}

/// Each partition's stop for `end`.
async fn resolve_ends(
    admin: &Admin,
    tps: &[TopicPartition],
    end: End,
    bounds: &Bounds,
    isolation: IsolationLevel,
) -> anyhow::Result<Ends> {
    let mut ends = Ends::default();
    let mut insert = |tp: &TopicPartition, stop: Stop| {
        ends.partitions
            .entry(tp.topic.clone())
            .or_default()
            .insert(tp.partition, PartitionEnd { stop, done: false });
    };
    match end {
        End::Offset(offset) => tps.iter().for_each(|tp| insert(tp, Stop::Offset(offset))),
        End::Now => {
            for tp in tps {
                let (_, log_end) = bounds.get(tp).copied().unwrap_or((0, 0));
                insert(tp, Stop::Offset(log_end));
            }
        }
        End::Time(time) if time > crate::datetime::now_ms() => {
            tps.iter().for_each(|tp| insert(tp, Stop::Time(time)));
            ends.pending_time = Some(time);
        }
        End::Time(time) => {
            for (tp, offset) in offsets_of_time(admin, tps, time, bounds, isolation).await? {
                insert(&tp, Stop::Offset(offset));
            }
        }
    }
    Ok(ends)
}

/// For a time already past: each partition's first offset stamped at or after it, or its end
/// when none is (never beyond the end, which is as far as `-e` reads).
async fn offsets_of_time(
    admin: &Admin,
    tps: &[TopicPartition],
    time: i64,
    bounds: &Bounds,
    isolation: IsolationLevel,
) -> anyhow::Result<Vec<(TopicPartition, i64)>> {
    let mut offsets = Vec::with_capacity(tps.len());
    for (topic, partitions) in by_topic(tps) {
        let found = admin
            .list_offsets_isolated(&topic, &partitions, OffsetSpec::Timestamp(time), isolation)
            .await?;
        for (partition, listed) in found {
            let tp = TopicPartition::new(topic.as_str(), partition);
            let log_end = match bounds.get(&tp) {
                Some(&(_, log_end)) => log_end,
                None => bounds_now(admin, &tp, isolation).await?,
            };
            let offset = if listed.offset < 0 {
                log_end
            } else {
                listed.offset.min(log_end)
            };
            offsets.push((tp, offset));
        }
    }
    Ok(offsets)
}

async fn bounds_now(
    admin: &Admin,
    tp: &TopicPartition,
    isolation: IsolationLevel,
) -> anyhow::Result<i64> {
    let listed = admin
        .list_offsets_isolated(&tp.topic, &[tp.partition], OffsetSpec::Latest, isolation)
        .await?;
    Ok(listed.first().map_or(0, |(_, listed)| listed.offset))
}

async fn position_at(
    consumer: &Consumer,
    tps: &[TopicPartition],
    start: Start,
    bounds: &Bounds,
) -> anyhow::Result<()> {
    let bound = |tp: &TopicPartition| bounds.get(tp).copied().unwrap_or((0, 0));
    match start {
        Start::Earliest => consumer.seek_to_beginning(tps).await?,
        Start::Latest => consumer.seek_to_end(tps).await?,
        Start::Offset(offset) => {
            for tp in tps {
                consumer.seek(tp, offset).await?;
            }
        }
        // kcat's -o -N: N before the end, never before the log start.
        Start::BeforeEnd(count) => {
            for tp in tps {
                let (log_start, log_end) = bound(tp);
                consumer
                    .seek(tp, log_end.saturating_sub(count).max(log_start))
                    .await?;
            }
        }
        Start::AfterBeginning(count) => {
            for tp in tps {
                let (log_start, log_end) = bound(tp);
                consumer
                    .seek(tp, log_start.saturating_add(count).min(log_end))
                    .await?;
            }
        }
        Start::Time(ms) => {
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

/// What a group member may commit: per partition, the first record polled but not printed
/// (cut off by `-n`, or past the end); a partition without one has printed everything it
/// polled, so its position is what to commit.
#[derive(Debug, Default)]
struct Progress {
    held: PerPartition<i64>,
    last_commit: Option<std::time::Instant>,
}

impl Progress {
    fn hold(&mut self, record: &ConsumerRecord) {
        // Records of a partition come in offset order: the first one held is the lowest.
        match self.held.get_mut(&*record.topic) {
            Some(partitions) => {
                partitions.entry(record.partition).or_insert(record.offset);
            }
            None => {
                self.held.insert(
                    record.topic.to_string(),
                    HashMap::from([(record.partition, record.offset)]),
                );
            }
        }
    }
}

/// How often a group member commits what it has printed so far.
const COMMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Commits, for each partition this member owns, the offset after what it printed: so that
/// `-n 3` commits three records rather than all it fetched, and a partition it read to its
/// end with nothing in it commits that end too (the next run starts there, not at the end of
/// its day). A failure (a rebalance took the partition) only means those records may be
/// printed again elsewhere.
async fn commit_progress(consumer: &Consumer, progress: &mut Progress) {
    progress.last_commit = Some(std::time::Instant::now());
    let mut offsets = Vec::new();
    for tp in consumer.assignment() {
        let held = progress
            .held
            .get(&tp.topic)
            .and_then(|partitions| partitions.get(&tp.partition));
        let next = match held {
            Some(&first_unprinted) => first_unprinted,
            None => match consumer.position(&tp).await {
                Ok(position) => position,
                Err(_) => continue, // not positioned: nothing read to commit
            },
        };
        offsets.push((tp, next));
    }
    if offsets.is_empty() {
        return;
    }
    if let Err(error) = consumer.commit_offsets(&offsets).await {
        tracing::warn!(%error, "could not commit the printed offsets");
    }
}

/// Polls and prints until `-n`, the end, Ctrl-C, or a closed stdout.
async fn consume_loop(
    consumer: &Consumer,
    admin: &Admin,
    args: &ConsumeArgs,
    output: &RecordFormat,
    mut ends: Option<&mut Ends>,
    progress: &mut Progress,
) -> anyhow::Result<()> {
    let mut printed: u64 = 0;
    let mut buffer = Vec::with_capacity(64 * 1024);
    let stdout = std::io::stdout();
    let mut interrupt = std::pin::pin!(crate::output::stop_signal());
    loop {
        if args.count.is_some_and(|count| printed >= count) {
            return Ok(());
        }
        if let Some(ends) = ends.as_deref_mut() {
            settle_time_end(admin, ends, args.isolation).await?;
            if at_end(consumer, ends).await? {
                return Ok(());
            }
        }
        let records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            _ = &mut interrupt => return Ok(()),
        };
        buffer.clear();
        let mut finished = Vec::new();
        for record in &records {
            if args.count.is_some_and(|count| printed >= count) {
                progress.hold(record);
                continue;
            }
            if let Some(ends) = ends.as_deref_mut() {
                if past_end(ends, record) {
                    progress.hold(record);
                    finished.push(TopicPartition::new(&*record.topic, record.partition));
                    continue;
                }
            }
            output.render(record, &mut buffer);
            printed += 1;
        }
        // Stop fetching what is past its end; a partition the group took away meanwhile
        // is not ours to pause.
        finished.dedup();
        let _ = consumer.pause(&finished);
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
            commit_progress(consumer, progress).await;
        }
    }
}

/// Whether `record` is at or past its partition's end (marking the partition done). A
/// partition without an end appeared after the start (a topic a pattern matched later): all
/// of it is after the end.
fn past_end(ends: &mut Ends, record: &ConsumerRecord) -> bool {
    let Some(end) = get_mut(&mut ends.partitions, &record.topic, record.partition) else {
        return true;
    };
    if !end.done {
        end.done = match end.stop {
            Stop::Offset(offset) => record.offset >= offset,
            Stop::Time(time) => record.timestamp >= time,
        };
    }
    end.done
}

/// Once the clock passes a pending end time, the partitions still waiting for it stop at the
/// offsets that time names now.
async fn settle_time_end(
    admin: &Admin,
    ends: &mut Ends,
    isolation: IsolationLevel,
) -> anyhow::Result<()> {
    let Some(time) = ends.pending_time else {
        return Ok(());
    };
    if crate::datetime::now_ms() < time {
        return Ok(());
    }
    let waiting: Vec<TopicPartition> = ends
        .partitions
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions
                .iter()
                .filter(|(_, end)| !end.done && matches!(end.stop, Stop::Time(_)))
                .map(|(&partition, _)| TopicPartition::new(topic.as_str(), partition))
        })
        .collect();
    for (tp, offset) in offsets_of_time(admin, &waiting, time, &Bounds::new(), isolation).await? {
        if let Some(end) = get_mut(&mut ends.partitions, &tp.topic, tp.partition) {
            end.stop = Stop::Offset(offset);
        }
    }
    ends.pending_time = None;
    Ok(())
}

/// Whether every assigned partition is at its end, pausing those that just got there. A
/// group member with no partitions yet is not at the end: it has not started.
async fn at_end(consumer: &Consumer, ends: &mut Ends) -> anyhow::Result<bool> {
    let assigned = consumer.assignment();
    if assigned.is_empty() {
        return Ok(false);
    }
    let mut all = true;
    let mut finished = Vec::new();
    for tp in assigned {
        let Some(end) = get_mut(&mut ends.partitions, &tp.topic, tp.partition) else {
            continue; // appeared after the start: nothing of it is before the end
        };
        if end.done {
            continue;
        }
        match end.stop {
            Stop::Offset(offset) if consumer.position(&tp).await? >= offset => {
                end.done = true;
                finished.push(tp);
            }
            _ => all = false,
        }
    }
    let _ = consumer.pause(&finished);
    Ok(all)
}
