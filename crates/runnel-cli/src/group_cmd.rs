//! `runnel group list|describe|delete|reset-offsets|offset-delete`: consumer groups, their
//! members, and per partition the committed offset and lag, as aligned tables for people or one
//! JSON object for scripts; moving a group's committed offsets, which is how people reprocess a
//! stream; and forgetting them for a topic the group no longer reads.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use kafka_protocol::error::ResponseError;
use runnel_client::{Admin, ClientError, OffsetSpec, TopicMetadata};
use serde::Serialize;

use crate::datetime;
use crate::output::{number_or_dash, or_dash, summary, table, OutputArgs};
use crate::topic_cmd::{select_partitions, topic_error, PartitionsArg};

#[derive(Debug, Args)]
pub(crate) struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// List every group in the cluster with its state and type.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a group's state, members and assignments, and per partition the committed offset,
    /// log end offset and lag.
    Describe {
        /// The group id.
        group: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete groups and their committed offsets; they must have no active members.
    Delete {
        /// The group ids.
        #[arg(required = true)]
        groups: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move a group's committed offsets on topics, e.g. back to reprocess them. Prints each
    /// partition's current and new offset; changes nothing with --dry-run. The group must have
    /// no active members.
    ResetOffsets(ResetArgs),
    /// Delete a group's committed offsets on a topic (OffsetDelete), e.g. one it no longer
    /// reads, so that its lag stops being reported. The group must not be subscribed to it.
    OffsetDelete {
        /// The group id.
        group: String,
        /// The topic whose offsets go.
        #[arg(long, short = 't')]
        topic: String,
        /// Only these partitions (default: every partition the group committed to).
        #[command(flatten)]
        partitions: PartitionsArg,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("topic_selection")
        .args(["topics", "all_topics", "from_file"])
        .required(true)
))]
// --from-file says where each partition goes; every other way needs a --to-... flag, which
// reset_offsets requires itself.
#[command(mut_group("ResetTo", |group| group.required(false)))]
struct ResetArgs {
    /// The group id.
    group: String,
    /// A topic whose offsets move (repeatable).
    #[arg(long = "topic", short = 't', value_name = "TOPIC")]
    topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long, conflicts_with = "topics")]
    all_topics: bool,
    /// Take the new offsets from a CSV file of `topic,partition,offset` lines (as
    /// kafka-consumer-groups' --from-file), each kept within its partition's log.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = ["topics", "all_topics", "partitions", "ResetTo"]
    )]
    from_file: Option<PathBuf>,
    /// Only these partitions of the one --topic (comma-separated or repeated); every
    /// partition if none.
    #[arg(
        long = "partitions",
        short = 'p',
        alias = "partition",
        value_delimiter = ',',
        value_name = "P,..."
    )]
    partitions: Vec<i32>,
    #[command(flatten)]
    to: ResetTo,
    /// Show what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// Where the offsets go. `runnel streams reset` takes the same flags.
#[derive(Debug, Clone, Copy, Args)]
#[group(required = true, multiple = false)]
pub(crate) struct ResetTo {
    /// To the log start offset.
    #[arg(long)]
    to_earliest: bool,
    /// To the high watermark: skip everything not yet read.
    #[arg(long)]
    to_latest: bool,
    /// To the first record at or after this time, e.g. 2026-01-01T00:00:00Z (RFC 3339; UTC
    /// unless a zone is given); the high watermark if no record is that recent.
    #[arg(long, value_name = "DATETIME", value_parser = datetime::parse_ms)]
    to_datetime: Option<i64>,
    /// To this offset, kept within the log start offset and the high watermark.
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// By this many records from the committed offset (negative: back), kept within the log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
}

/// [`ResetTo`] as one choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResetSpec {
    Earliest,
    Latest,
    Datetime(i64),
    Offset(i64),
    ShiftBy(i64),
}

impl ResetTo {
    /// The flag given; [`ResetSpec::Earliest`] if none (where clap's group is not required).
    pub(crate) fn spec(self) -> ResetSpec {
        self.chosen().unwrap_or(ResetSpec::Earliest)
    }

    /// The flag given, if any.
    fn chosen(self) -> Option<ResetSpec> {
        Some(match self {
            ResetTo {
                to_earliest: true, ..
            } => ResetSpec::Earliest,
            ResetTo {
                to_latest: true, ..
            } => ResetSpec::Latest,
            ResetTo {
                to_datetime: Some(ms),
                ..
            } => ResetSpec::Datetime(ms),
            ResetTo {
                to_offset: Some(offset),
                ..
            } => ResetSpec::Offset(offset),
            ResetTo {
                shift_by: Some(shift),
                ..
            } => ResetSpec::ShiftBy(shift),
            _ => return None,
        })
    }
}

pub(crate) async fn run(args: GroupArgs) -> anyhow::Result<()> {
    match args.command {
        GroupCommand::List { output } => {
            let admin = output.cluster.admin().await?;
            let groups: Vec<GroupListing> = admin
                .list_groups()
                .await?
                .into_iter()
                .map(|group| GroupListing {
                    group_id: group.group_id,
                    protocol_type: group.protocol_type,
                    state: group.state,
                    group_type: group.group_type,
                })
                .collect();
            output.print(&GroupList { groups }, |list| list_table(&list.groups))
        }
        GroupCommand::Describe { group, output } => {
            let admin = output.cluster.admin().await?;
            let description = describe(&admin, &group).await?;
            output.print(&description, describe_table)
        }
        GroupCommand::Delete { groups, output } => {
            let admin = output.cluster.admin().await?;
            let mut deleted = Vec::new();
            let mut failures = Vec::new();
            for (group, result) in admin.delete_groups(&groups).await? {
                match result {
                    Ok(()) => deleted.push(group),
                    Err(error) => failures.push(group_error(&group, error).to_string()),
                }
            }
            if !failures.is_empty() {
                for deleted in &deleted {
                    eprintln!("Deleted group {deleted:?}.");
                }
                bail!("{}", failures.join("; "));
            }
            output.print(&Deleted { deleted }, |deleted| {
                deleted
                    .deleted
                    .iter()
                    .map(|group| format!("Deleted group {group:?}.\n"))
                    .collect()
            })
        }
        GroupCommand::ResetOffsets(args) => reset_offsets(args).await,
        GroupCommand::OffsetDelete {
            group,
            topic,
            partitions,
            output,
        } => offset_delete(&group, &topic, &partitions.partitions, &output).await,
    }
}

/// Deletes `group`'s committed offsets on `wanted` partitions of `topic` (every partition it
/// committed to if none), and prints what happened to each.
async fn offset_delete(
    group: &str,
    topic: &str,
    wanted: &[i32],
    output: &OutputArgs,
) -> anyhow::Result<()> {
    let admin = output.cluster.admin().await?;
    let committed = committed_offsets(&admin, group).await?;
    let partitions: Vec<i32> = if wanted.is_empty() {
        committed
            .keys()
            .filter(|(committed_topic, _)| committed_topic == topic)
            .map(|&(_, partition)| partition)
            .collect()
    } else {
        let mut wanted = wanted.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    };
    if partitions.is_empty() {
        bail!("group {group:?} has no committed offsets on topic {topic:?}");
    }
    // One request per partition, so that each partition's answer is reported as its own.
    let admin = &admin;
    let results = futures::future::join_all(partitions.iter().map(|&partition| async move {
        admin
            .delete_group_offsets(group, &[(topic.to_owned(), partition)])
            .await
    }))
    .await;
    let rows: Vec<DeletedOffset> = partitions
        .iter()
        .zip(results)
        .map(|(&partition, result)| DeletedOffset {
            topic: topic.to_owned(),
            partition,
            committed_offset: committed.get(&(topic.to_owned(), partition)).copied(),
            error: result.err().map(|error| match error.code() {
                Some(ResponseError::GroupSubscribedToTopic) => {
                    "the group is subscribed to the topic; stop its consumers or change their \
                     subscription first"
                        .to_owned()
                }
                _ => group_error(group, error).to_string(),
            }),
        })
        .collect();
    let report = OffsetsDeleted {
        group: group.to_owned(),
        partitions: rows,
    };
    output.print(&report, |report| {
        let rows: Vec<Vec<String>> = report
            .partitions
            .iter()
            .map(|row| {
                vec![
                    row.topic.clone(),
                    row.partition.to_string(),
                    number_or_dash(row.committed_offset),
                    row.error.clone().unwrap_or_else(|| "deleted".to_owned()),
                ]
            })
            .collect();
        table(&["TOPIC", "PARTITION", "COMMITTED-OFFSET", "RESULT"], &rows)
    })?;
    let failed = report
        .partitions
        .iter()
        .filter(|row| row.error.is_some())
        .count();
    if failed > 0 {
        bail!(
            "{failed} of {} partition(s) kept their committed offsets",
            report.partitions.len()
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct OffsetsDeleted {
    group: String,
    partitions: Vec<DeletedOffset>,
}

#[derive(Debug, Serialize)]
struct DeletedOffset {
    topic: String,
    partition: i32,
    /// The offset that was committed; `None` when there was none.
    committed_offset: Option<i64>,
    /// `None` when deleted.
    error: Option<String>,
}

/// The group's state and members, and for each partition it has committed to or owns: the
/// committed offset, the log end offset and the lag.
async fn describe(admin: &Admin, group: &str) -> anyhow::Result<GroupDescription> {
    let described = admin
        .describe_group(group)
        .await
        .map_err(|error| group_error(group, error))?;
    let committed = admin
        .list_group_offsets(group)
        .await
        .map_err(|error| group_error(group, error))?;
    let coordinator = admin
        .cluster()
        .brokers()
        .await
        .into_iter()
        .find(|broker| broker.node_id == described.coordinator_id)
        .map_or_else(
            || Node {
                node_id: described.coordinator_id,
                host: String::new(),
                port: -1,
            },
            |broker| Node {
                node_id: broker.node_id,
                host: broker.host,
                port: broker.port,
            },
        );

    let mut owners = BTreeMap::new();
    for member in &described.members {
        for (topic, partitions) in &member.assignment {
            for &partition in partitions {
                owners.insert((topic.clone(), partition), member.member_id.clone());
            }
        }
    }
    let committed: BTreeMap<(String, i32), i64> = committed
        .into_iter()
        .map(|(key, offset, _metadata)| (key, offset))
        .collect();
    let keys: BTreeSet<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &keys {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut end_offsets: BTreeMap<(String, i32), Result<i64, String>> = BTreeMap::new();
    for (topic, partitions) in by_topic {
        match admin
            .list_offsets(topic, &partitions, OffsetSpec::Latest)
            .await
        {
            Ok(listed) => {
                for (partition, listed) in listed {
                    end_offsets.insert((topic.to_owned(), partition), Ok(listed.offset));
                }
            }
            Err(error) => {
                for partition in partitions {
                    end_offsets.insert((topic.to_owned(), partition), Err(error.to_string()));
                }
            }
        }
    }
    let partitions = keys
        .into_iter()
        .map(|key| {
            let committed_offset = committed.get(&key).copied();
            let (log_end_offset, error) = match end_offsets.remove(&key) {
                Some(Ok(offset)) => (Some(offset), None),
                Some(Err(error)) => (None, Some(format!("log end offset: {error}"))),
                None => (None, None),
            };
            PartitionLag {
                member_id: owners.get(&key).cloned(),
                topic: key.0,
                partition: key.1,
                committed_offset,
                log_end_offset,
                lag: committed_offset.zip(log_end_offset).map(|(c, e)| e - c),
                error,
            }
        })
        .collect();

    Ok(GroupDescription {
        group_id: described.group_id,
        group_type: match described.group_type {
            runnel_client::GroupType::Classic => "classic",
            runnel_client::GroupType::Consumer => "consumer",
        },
        state: described.state,
        protocol_type: described.protocol_type,
        assignor: described.protocol,
        coordinator,
        members: described
            .members
            .into_iter()
            .map(|member| Member {
                member_id: member.member_id,
                group_instance_id: member.instance_id,
                client_id: member.client_id,
                host: member.host,
                assignment: member
                    .assignment
                    .into_iter()
                    .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                    .collect(),
                assignment_error: member.assignment_error,
            })
            .collect(),
        partitions,
    })
}

/// "group "g" does not exist" rather than the broker's GROUP_ID_NOT_FOUND.
fn group_error(group: &str, error: ClientError) -> anyhow::Error {
    match error.code() {
        Some(ResponseError::GroupIdNotFound) => anyhow!("group {group:?} does not exist"),
        Some(ResponseError::NonEmptyGroup) => {
            anyhow!("group {group:?} has active members; stop its consumers first")
        }
        _ => error.into(),
    }
}

async fn reset_offsets(args: ResetArgs) -> anyhow::Result<()> {
    let ResetArgs {
        group,
        topics,
        all_topics,
        from_file,
        partitions,
        to,
        dry_run,
        output,
    } = args;
    // Read before connecting: a bad file or a missing flag is the person's to fix first.
    let from_file = match &from_file {
        Some(path) => Some(read_offsets_file(path)?),
        None => None,
    };
    let spec = to.chosen();
    if from_file.is_none() && spec.is_none() {
        bail!(
            "say where the offsets go: --to-earliest, --to-latest, --to-datetime, --to-offset, \
             --shift-by or --from-file"
        );
    }
    if !partitions.is_empty() && topics.len() != 1 {
        bail!("--partitions needs exactly one --topic");
    }
    let admin = output.cluster.admin().await?;

    if let Some(active) = active_members(&admin, &group).await? {
        let message =
            format!("{active}; offsets can only be reset while no consumer is in the group");
        if !dry_run {
            bail!(message);
        }
        eprintln!("warning: {message}");
    }

    let committed = committed_offsets(&admin, &group).await?;
    let mut rows = Vec::new();
    match (from_file, spec) {
        (Some(targets), _) => {
            for (topic, targets) in targets {
                rows.extend(plan_reset_each(&admin, &topic, &targets, &committed).await?);
            }
        }
        (None, Some(spec)) => {
            let topics: Vec<String> = if all_topics {
                let committed_topics: BTreeSet<&String> =
                    committed.keys().map(|(topic, _)| topic).collect();
                if committed_topics.is_empty() {
                    bail!("group {group:?} has no committed offsets; name topics with --topic");
                }
                committed_topics.into_iter().cloned().collect()
            } else {
                topics
            };
            for topic in &topics {
                rows.extend(plan_reset(&admin, topic, &partitions, spec, &committed).await?);
            }
        }
        (None, None) => unreachable!("checked above"),
    }
    if !dry_run {
        apply_reset(&admin, &group, &rows).await?;
    }
    let report = ResetReport {
        group: group.clone(),
        dry_run,
        partitions: rows,
    };
    output.print(&report, |report| reset_table(&report.partitions))?;
    if dry_run {
        eprintln!("Dry run: the offsets of group {group:?} did not change.");
    }
    Ok(())
}

/// `group "g" has 2 active member(s) (state Stable)` when the group has members, which is why
/// its offsets cannot be moved now: the coordinator takes commits only from members, and a
/// member would overwrite the move with its own position at its next commit. `None` for a
/// group without members, and for one that does not exist (it gets its first offsets).
pub(crate) async fn active_members(admin: &Admin, group: &str) -> anyhow::Result<Option<String>> {
    match admin.describe_group(group).await {
        Ok(described) if !described.members.is_empty() => Ok(Some(format!(
            "group {group:?} has {} active member(s) (state {})",
            described.members.len(),
            described.state
        ))),
        Ok(_) => Ok(None),
        Err(error) if error.code() == Some(ResponseError::GroupIdNotFound) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The group's committed offsets, by topic and partition.
pub(crate) async fn committed_offsets(
    admin: &Admin,
    group: &str,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    Ok(admin
        .list_group_offsets(group)
        .await?
        .into_iter()
        .map(|(key, offset, _metadata)| (key, offset))
        .collect())
}

/// Where `spec` moves the committed offsets of `partitions` of `topic` (every partition if
/// none), from `committed` (the group's, as [`committed_offsets`] gives them). Changes nothing.
pub(crate) async fn plan_reset(
    admin: &Admin,
    topic: &str,
    partitions: &[i32],
    spec: ResetSpec,
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<PartitionReset>> {
    let metadata = admin
        .describe_topic(topic)
        .await
        .map_err(|error| topic_error(topic, error))?;
    let targets: Vec<(i32, ResetSpec)> = select_partitions(&metadata, partitions)?
        .into_iter()
        .map(|partition| (partition, spec))
        .collect();
    plan_targets(admin, &metadata, &targets, committed).await
}

/// [`plan_reset`] with a spec per partition, as `--from-file` gives them.
async fn plan_reset_each(
    admin: &Admin,
    topic: &str,
    targets: &[(i32, ResetSpec)],
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<PartitionReset>> {
    let metadata = admin
        .describe_topic(topic)
        .await
        .map_err(|error| topic_error(topic, error))?;
    plan_targets(admin, &metadata, targets, committed).await
}

async fn plan_targets(
    admin: &Admin,
    metadata: &TopicMetadata,
    targets: &[(i32, ResetSpec)],
    committed: &BTreeMap<(String, i32), i64>,
) -> anyhow::Result<Vec<PartitionReset>> {
    let topic = metadata.name.as_str();
    let wanted: Vec<i32> = targets.iter().map(|&(partition, _)| partition).collect();
    let partitions = select_partitions(metadata, &wanted)?;

    let earliest = offsets_of(admin, topic, &partitions, OffsetSpec::Earliest).await?;
    let latest = offsets_of(admin, topic, &partitions, OffsetSpec::Latest).await?;
    // One lookup per distinct time, of the partitions reset to it.
    let mut by_time: BTreeMap<i64, Vec<i32>> = BTreeMap::new();
    for &(partition, spec) in targets {
        if let ResetSpec::Datetime(ms) = spec {
            by_time.entry(ms).or_default().push(partition);
        }
    }
    let mut at_time: BTreeMap<i32, i64> = BTreeMap::new();
    for (ms, partitions) in by_time {
        at_time.extend(offsets_of(admin, topic, &partitions, OffsetSpec::Timestamp(ms)).await?);
    }

    let mut rows = Vec::with_capacity(targets.len());
    for &(partition, spec) in targets {
        let bound = |offsets: &BTreeMap<i32, i64>| {
            offsets.get(&partition).copied().ok_or_else(|| {
                anyhow!("ListOffsets did not answer for topic {topic:?} partition {partition}")
            })
        };
        let bounds = LogBounds {
            earliest: bound(&earliest)?,
            latest: bound(&latest)?,
            at_time: at_time.get(&partition).copied(),
        };
        let current_offset = committed.get(&(topic.to_owned(), partition)).copied();
        let new_offset = new_offset(spec, current_offset, bounds)
            .map_err(|problem| anyhow!("topic {topic:?} partition {partition}: {problem}"))?;
        rows.push(PartitionReset {
            topic: topic.to_owned(),
            partition,
            current_offset,
            new_offset,
        });
    }
    Ok(rows)
}

/// The partitions and offsets of a `--from-file` CSV, by topic: `topic,partition,offset`
/// lines, as kafka-consumer-groups writes and reads them. Blank lines and `#` comments are
/// skipped.
fn read_offsets_file(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<(i32, ResetSpec)>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_offsets_csv(&text).with_context(|| format!("{}", path.display()))
}

fn parse_offsets_csv(text: &str) -> anyhow::Result<BTreeMap<String, Vec<(i32, ResetSpec)>>> {
    let mut by_topic: BTreeMap<String, Vec<(i32, ResetSpec)>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |problem: &str| anyhow!("line {}: {problem}: {line:?}", index + 1);
        // Topic names cannot hold commas, so the last two fields are the numbers.
        let mut fields = line.rsplitn(3, ',');
        let (Some(offset), Some(partition), Some(topic)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(bad("expected topic,partition,offset"));
        };
        let topic = topic.trim();
        if topic.is_empty() {
            return Err(bad("no topic"));
        }
        let partition: i32 = partition
            .trim()
            .parse()
            .ok()
            .filter(|p| *p >= 0)
            .ok_or_else(|| bad("the partition is not a number"))?;
        let offset: i64 = offset
            .trim()
            .parse()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| bad("the offset is not a number"))?;
        if !seen.insert((topic.to_owned(), partition)) {
            return Err(bad("this partition is listed twice"));
        }
        by_topic
            .entry(topic.to_owned())
            .or_default()
            .push((partition, ResetSpec::Offset(offset)));
    }
    if by_topic.is_empty() {
        bail!("no topic,partition,offset lines");
    }
    Ok(by_topic)
}

/// Commits each row's new offset for the group, which must have no active members.
pub(crate) async fn apply_reset(
    admin: &Admin,
    group: &str,
    rows: &[PartitionReset],
) -> anyhow::Result<()> {
    let offsets: Vec<((String, i32), i64)> = rows
        .iter()
        .map(|row| ((row.topic.clone(), row.partition), row.new_offset))
        .collect();
    admin
        .alter_group_offsets(group, &offsets)
        .await
        .map_err(|error| group_error(group, error))
}

async fn offsets_of(
    admin: &Admin,
    topic: &str,
    partitions: &[i32],
    spec: OffsetSpec,
) -> anyhow::Result<BTreeMap<i32, i64>> {
    Ok(admin
        .list_offsets(topic, partitions, spec)
        .await?
        .into_iter()
        .map(|(partition, listed)| (partition, listed.offset))
        .collect())
}

/// What the log holds, for one partition.
#[derive(Debug, Clone, Copy)]
struct LogBounds {
    earliest: i64,
    latest: i64,
    /// The first offset at or after the `--to-datetime` time; -1 if no record is that recent.
    at_time: Option<i64>,
}

/// Where `spec` moves a partition's committed offset, kept within the log as Kafka's own
/// tool keeps it: below the log start is the log start, above the high watermark is it.
fn new_offset(spec: ResetSpec, current: Option<i64>, log: LogBounds) -> Result<i64, String> {
    let wanted = match spec {
        ResetSpec::Earliest => log.earliest,
        ResetSpec::Latest => log.latest,
        ResetSpec::Datetime(_) => match log.at_time {
            Some(offset) if offset >= 0 => offset,
            _ => log.latest,
        },
        ResetSpec::Offset(offset) => offset,
        ResetSpec::ShiftBy(shift) => match current {
            Some(current) => current.saturating_add(shift),
            None => return Err("the group has no committed offset to shift".to_owned()),
        },
    };
    Ok(wanted.clamp(log.earliest, log.latest.max(log.earliest)))
}

#[derive(Debug, Serialize)]
struct GroupList {
    groups: Vec<GroupListing>,
}

/// One group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct GroupListing {
    group_id: String,
    /// Empty for groups that only commit offsets ("simple" groups).
    protocol_type: String,
    /// `None` from brokers older than ListGroups v4.
    state: Option<String>,
    /// `classic` or `consumer` (KIP-848); `None` from brokers older than ListGroups v5.
    group_type: Option<String>,
}

#[derive(Debug, Serialize)]
struct Deleted {
    deleted: Vec<String>,
}

/// A broker, as the group's coordinator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Node {
    node_id: i32,
    host: String,
    port: i32,
}

impl Node {
    fn address(&self) -> String {
        runnel_client::BrokerInfo {
            node_id: self.node_id,
            host: self.host.clone(),
            port: self.port,
            rack: None,
        }
        .address()
    }
}

/// A group's state, members, and committed offsets with lag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct GroupDescription {
    group_id: String,
    /// `classic` or `consumer`.
    group_type: &'static str,
    state: String,
    /// `consumer` for consumer groups, empty for simple groups.
    protocol_type: String,
    /// The classic group's chosen protocol (its assignor, e.g. `range`) or the KIP-848 group's
    /// server-side assignor.
    assignor: Option<String>,
    coordinator: Node,
    members: Vec<Member>,
    /// Every partition that has a committed offset or an owner, by topic and partition.
    partitions: Vec<PartitionLag>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    host: String,
    assignment: Vec<TopicPartitions>,
    /// Why the assignment could not be read (a non-consumer protocol, such as Connect's, is not
    /// decoded).
    assignment_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct TopicPartitions {
    topic: String,
    partitions: Vec<i32>,
}

/// One partition's position for the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PartitionLag {
    topic: String,
    partition: i32,
    /// `None` when the group has committed nothing for this partition.
    committed_offset: Option<i64>,
    /// The high watermark: the offset the next record will get.
    log_end_offset: Option<i64>,
    /// `log_end_offset - committed_offset`, when both are known.
    lag: Option<i64>,
    /// The member the partition is assigned to.
    member_id: Option<String>,
    /// What the broker said when it could not answer for this partition.
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ResetReport {
    group: String,
    dry_run: bool,
    partitions: Vec<PartitionReset>,
}

/// One partition's committed offset, before and after a reset.
#[derive(Debug, Serialize)]
pub(crate) struct PartitionReset {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    /// `None` when the group had committed nothing for this partition.
    pub(crate) current_offset: Option<i64>,
    pub(crate) new_offset: i64,
}

pub(crate) fn reset_table(partitions: &[PartitionReset]) -> String {
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|row| {
            vec![
                row.topic.clone(),
                row.partition.to_string(),
                number_or_dash(row.current_offset),
                row.new_offset.to_string(),
            ]
        })
        .collect();
    table(
        &["TOPIC", "PARTITION", "CURRENT-OFFSET", "NEW-OFFSET"],
        &rows,
    )
}

fn list_table(groups: &[GroupListing]) -> String {
    if groups.is_empty() {
        return "No groups.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|group| {
            vec![
                group.group_id.clone(),
                or_dash(group.state.as_deref()),
                or_dash(group.group_type.as_deref()),
                or_dash(Some(group.protocol_type.as_str())),
            ]
        })
        .collect();
    table(&["GROUP", "STATE", "TYPE", "PROTOCOL-TYPE"], &rows)
}

fn describe_table(group: &GroupDescription) -> String {
    let protocol = match (group.protocol_type.as_str(), group.assignor.as_deref()) {
        ("", None) => "-".to_owned(),
        ("", Some(assignor)) => assignor.to_owned(),
        (protocol_type, None) => protocol_type.to_owned(),
        (protocol_type, Some(assignor)) => format!("{protocol_type} ({assignor})"),
    };
    let mut text = summary(&[
        ("Group", group.group_id.clone()),
        ("State", group.state.clone()),
        ("Type", group.group_type.to_owned()),
        ("Protocol", protocol),
        (
            "Coordinator",
            format!(
                "node {} at {}",
                group.coordinator.node_id,
                group.coordinator.address()
            ),
        ),
    ]);

    text.push('\n');
    if group.members.is_empty() {
        text.push_str("No active members.\n");
    } else {
        let rows: Vec<Vec<String>> = group
            .members
            .iter()
            .map(|member| {
                let assignment = match &member.assignment_error {
                    Some(error) => format!("(unreadable: {error})"),
                    None if member.assignment.is_empty() => "-".to_owned(),
                    None => member
                        .assignment
                        .iter()
                        .map(|assigned| {
                            let partitions: Vec<String> =
                                assigned.partitions.iter().map(i32::to_string).collect();
                            format!("{}:{}", assigned.topic, partitions.join(","))
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                vec![
                    member.member_id.clone(),
                    or_dash(member.group_instance_id.as_deref()),
                    or_dash(Some(member.client_id.as_str())),
                    or_dash(Some(member.host.as_str())),
                    assignment,
                ]
            })
            .collect();
        text.push_str(&table(
            &[
                "MEMBER-ID",
                "INSTANCE-ID",
                "CLIENT-ID",
                "HOST",
                "ASSIGNMENT",
            ],
            &rows,
        ));
    }

    text.push('\n');
    if group.partitions.is_empty() {
        text.push_str("No committed offsets or assigned partitions.\n");
        return text;
    }
    let with_errors = group.partitions.iter().any(|p| p.error.is_some());
    let mut headers = vec![
        "TOPIC",
        "PARTITION",
        "COMMITTED-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "MEMBER-ID",
    ];
    if with_errors {
        headers.push("ERROR");
    }
    let rows: Vec<Vec<String>> = group
        .partitions
        .iter()
        .map(|partition| {
            let mut row = vec![
                partition.topic.clone(),
                partition.partition.to_string(),
                number_or_dash(partition.committed_offset),
                number_or_dash(partition.log_end_offset),
                number_or_dash(partition.lag),
                or_dash(partition.member_id.as_deref()),
            ];
            if with_errors {
                row.push(or_dash(partition.error.as_deref()));
            }
            row
        })
        .collect();
    text.push_str(&table(&headers, &rows));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::json;

    fn description() -> GroupDescription {
        GroupDescription {
            group_id: "billing".to_owned(),
            group_type: "classic",
            state: "Stable".to_owned(),
            protocol_type: "consumer".to_owned(),
            assignor: Some("range".to_owned()),
            coordinator: Node {
                node_id: 1,
                host: "127.0.0.1".to_owned(),
                port: 9092,
            },
            members: vec![Member {
                member_id: "consumer-1-4f1c".to_owned(),
                group_instance_id: None,
                client_id: "consumer-1".to_owned(),
                host: "/10.0.0.7".to_owned(),
                assignment: vec![TopicPartitions {
                    topic: "orders".to_owned(),
                    partitions: vec![0, 1],
                }],
                assignment_error: None,
            }],
            partitions: vec![
                PartitionLag {
                    topic: "orders".to_owned(),
                    partition: 0,
                    committed_offset: Some(40),
                    log_end_offset: Some(42),
                    lag: Some(2),
                    member_id: Some("consumer-1-4f1c".to_owned()),
                    error: None,
                },
                PartitionLag {
                    topic: "orders".to_owned(),
                    partition: 1,
                    committed_offset: None,
                    log_end_offset: Some(7),
                    lag: None,
                    member_id: Some("consumer-1-4f1c".to_owned()),
                    error: None,
                },
            ],
        }
    }

    #[test]
    fn describe_prints_aligned_tables() {
        assert_eq!(
            describe_table(&description()),
            "\
Group:       billing
State:       Stable
Type:        classic
Protocol:    consumer (range)
Coordinator: node 1 at 127.0.0.1:9092

MEMBER-ID        INSTANCE-ID  CLIENT-ID   HOST       ASSIGNMENT
consumer-1-4f1c  -            consumer-1  /10.0.0.7  orders:0,1

TOPIC   PARTITION  COMMITTED-OFFSET  LOG-END-OFFSET  LAG  MEMBER-ID
orders  0          40                42              2    consumer-1-4f1c
orders  1          -                 7               -    consumer-1-4f1c
"
        );
    }

    #[test]
    fn list_prints_dashes_for_what_old_brokers_do_not_say() {
        let groups = [
            GroupListing {
                group_id: "audit".to_owned(),
                protocol_type: String::new(),
                state: Some("Empty".to_owned()),
                group_type: Some("classic".to_owned()),
            },
            GroupListing {
                group_id: "billing-consumers".to_owned(),
                protocol_type: "consumer".to_owned(),
                state: None,
                group_type: None,
            },
        ];
        assert_eq!(
            list_table(&groups),
            "\
GROUP              STATE  TYPE     PROTOCOL-TYPE
audit              Empty  classic  -
billing-consumers  -      -        consumer
"
        );
    }

    #[test]
    fn json_keeps_unknowns_as_null() {
        let value: serde_json::Value =
            serde_json::from_str(&json(&description()).expect("json")).expect("parses");
        assert_eq!(value["group_type"], "classic");
        assert_eq!(value["partitions"][0]["lag"], 2);
        assert_eq!(
            value["partitions"][1]["committed_offset"],
            serde_json::Value::Null
        );
        assert_eq!(value["partitions"][1]["lag"], serde_json::Value::Null);
    }

    #[test]
    fn resets_stay_within_the_log() {
        let log = LogBounds {
            earliest: 10,
            latest: 50,
            at_time: None,
        };
        let reset = |spec, current| new_offset(spec, current, log);
        assert_eq!(reset(ResetSpec::Earliest, Some(30)), Ok(10));
        assert_eq!(reset(ResetSpec::Latest, None), Ok(50));
        assert_eq!(reset(ResetSpec::Offset(5), None), Ok(10));
        assert_eq!(reset(ResetSpec::Offset(70), None), Ok(50));
        assert_eq!(reset(ResetSpec::Offset(20), Some(40)), Ok(20));
        assert_eq!(reset(ResetSpec::ShiftBy(-5), Some(30)), Ok(25));
        assert_eq!(reset(ResetSpec::ShiftBy(-100), Some(30)), Ok(10));
        assert_eq!(reset(ResetSpec::ShiftBy(100), Some(30)), Ok(50));
        assert!(reset(ResetSpec::ShiftBy(1), None).is_err());
    }

    #[test]
    fn offsets_files_are_topic_partition_offset_lines() {
        let parsed = parse_offsets_csv(
            "# from kafka-consumer-groups --export\n\
             orders,0,10\n\
             \n\
             orders, 2 , 7\n\
             audit.log,0,0\n",
        )
        .expect("parses");
        assert_eq!(
            parsed,
            BTreeMap::from([
                ("audit.log".to_owned(), vec![(0, ResetSpec::Offset(0))]),
                (
                    "orders".to_owned(),
                    vec![(0, ResetSpec::Offset(10)), (2, ResetSpec::Offset(7))]
                ),
            ])
        );
        for (text, problem) in [
            ("orders,0", "line 1: expected topic,partition,offset"),
            ("orders,x,1", "line 1: the partition is not a number"),
            ("orders,0,-1", "line 1: the offset is not a number"),
            (",0,1", "line 1: no topic"),
            ("t,0,1\nt,0,2", "line 2: this partition is listed twice"),
            ("# nothing\n", "no topic,partition,offset lines"),
        ] {
            let error = parse_offsets_csv(text).expect_err(text).to_string();
            assert!(error.starts_with(problem), "{text:?}: {error}");
        }
    }

    #[test]
    fn datetime_resets_fall_back_to_the_end() {
        let at = |at_time| LogBounds {
            earliest: 0,
            latest: 9,
            at_time: Some(at_time),
        };
        assert_eq!(new_offset(ResetSpec::Datetime(1), Some(2), at(4)), Ok(4));
        assert_eq!(new_offset(ResetSpec::Datetime(1), Some(2), at(-1)), Ok(9));
    }

    #[test]
    fn reset_table_shows_current_and_new() {
        let report = ResetReport {
            group: "g".to_owned(),
            dry_run: true,
            partitions: vec![
                PartitionReset {
                    topic: "t".to_owned(),
                    partition: 0,
                    current_offset: Some(7),
                    new_offset: 0,
                },
                PartitionReset {
                    topic: "t".to_owned(),
                    partition: 1,
                    current_offset: None,
                    new_offset: 0,
                },
            ],
        };
        assert_eq!(
            reset_table(&report.partitions),
            "\
TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET
t      0          7               0
t      1          -               0
"
        );
    }
}
