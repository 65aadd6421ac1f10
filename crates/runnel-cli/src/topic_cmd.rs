//! `runnel topic create|list|describe|delete|alter-config|add-partitions|trim-prefix`.

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use runnel_client::{
    AlterConfigOp, ClientError, ConfigEntry, ConfigSource, NewTopic, TopicMetadata,
};
use serde::Serialize;

use crate::output::{join_ids, key_value, number_or_dash, or_dash, summary, table, OutputArgs};

#[derive(Debug, Args)]
pub(crate) struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Create a topic.
    Create {
        topic: String,
        /// Partitions (default: the broker's num.partitions).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replicas of each partition (default: the broker's default.replication.factor).
        #[arg(long, short = 'r')]
        replication_factor: Option<i16>,
        /// A topic config, e.g. cleanup.policy=compact (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = key_value)]
        configs: Vec<(String, String)>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List topics with their partition counts and replication factors.
    List {
        /// Include internal topics such as __consumer_offsets.
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a topic's partitions (leader, replicas, ISR) and the configs set on it.
    Describe {
        topic: String,
        /// Show every config, defaults included.
        #[arg(long)]
        all_configs: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete topics and their records.
    Delete {
        #[arg(required = true)]
        topics: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Set or remove configs of a topic, all or none.
    AlterConfig {
        topic: String,
        /// Set a config (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = key_value)]
        set: Vec<(String, String)>,
        /// Remove a config's override, so the default applies again (repeatable).
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Grow a topic to a number of partitions. Keyed records of existing keys may then land on
    /// other partitions.
    AddPartitions {
        topic: String,
        /// The partition count after the change.
        #[arg(long)]
        total: i32,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete the records below an offset (DeleteRecords): each partition's log start offset
    /// moves up to it. Prints each partition's new log start offset, or why it did not move.
    TrimPrefix {
        /// The topic.
        topic: String,
        /// The new log start offset; -1 for each partition's high watermark (every record
        /// goes).
        #[arg(
            long,
            short = 'o',
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(i64).range(-1..)
        )]
        offset: i64,
        #[command(flatten)]
        partitions: PartitionsArg,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// `-p/--partitions 0,1` (or `--partition 0 --partition 1`): the partitions a command acts
/// on, every partition of the topic when none is given.
#[derive(Debug, Clone, Args)]
pub(crate) struct PartitionsArg {
    /// Only these partitions, comma-separated or repeated (default: every partition).
    #[arg(
        long = "partitions",
        short = 'p',
        alias = "partition",
        value_delimiter = ',',
        value_name = "P,..."
    )]
    pub(crate) partitions: Vec<i32>,
}

/// `wanted` partitions of `topic`, checked against its metadata; every partition if none.
pub(crate) fn select_partitions(topic: &TopicMetadata, wanted: &[i32]) -> anyhow::Result<Vec<i32>> {
    let all: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    if wanted.is_empty() {
        return Ok(all);
    }
    if let Some(missing) = wanted.iter().find(|p| !all.contains(p)) {
        bail!(
            "topic {:?} has no partition {missing} (it has {} partitions)",
            topic.name,
            all.len()
        );
    }
    let mut wanted = wanted.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    Ok(wanted)
}

pub(crate) async fn run(args: TopicArgs) -> anyhow::Result<()> {
    match args.command {
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let mut new_topic = NewTopic::new(topic.as_str(), partitions.unwrap_or(-1))
                .with_replication_factor(replication_factor.unwrap_or(-1));
            new_topic.configs = configs;
            admin.create_topic(new_topic).await?;
            // What the broker chose for the defaults.
            let created = admin.describe_topic(&topic).await?;
            let summary = TopicSummary::of(&created);
            output.print(&summary, |topic| {
                format!(
                    "Created topic {:?} with {} partitions, replication factor {}.\n",
                    topic.name, topic.partitions, topic.replication_factor
                )
            })
        }
        TopicCommand::List { internal, output } => {
            let admin = output.cluster.admin().await?;
            let topics: Vec<TopicSummary> = admin
                .list_topics(internal)
                .await?
                .iter()
                .map(TopicSummary::of)
                .collect();
            output.print(&TopicList { topics }, |list| list_table(&list.topics))
        }
        TopicCommand::Describe {
            topic,
            all_configs,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let metadata = admin
                .describe_topic(&topic)
                .await
                .map_err(|error| topic_error(&topic, error))?;
            let configs = admin.describe_topic_configs(&topic).await?;
            let description = TopicDescription::of(&metadata, &configs, all_configs);
            output.print(&description, describe_table)
        }
        TopicCommand::Delete { topics, output } => {
            let admin = output.cluster.admin().await?;
            let mut deleted = Vec::new();
            let mut failures = Vec::new();
            for (topic, result) in admin.delete_topics(&topics).await? {
                match result {
                    Ok(()) => deleted.push(topic),
                    Err(error) => failures.push(error.to_string()),
                }
            }
            if !failures.is_empty() {
                for topic in &deleted {
                    eprintln!("Deleted topic {topic:?}.");
                }
                bail!("{}", failures.join("; "));
            }
            output.print(&Deleted { deleted }, |deleted| {
                deleted
                    .deleted
                    .iter()
                    .map(|topic| format!("Deleted topic {topic:?}.\n"))
                    .collect()
            })
        }
        TopicCommand::AlterConfig {
            topic,
            set,
            delete,
            output,
        } => {
            if set.is_empty() && delete.is_empty() {
                bail!("nothing to change: give --set KEY=VALUE or --delete KEY");
            }
            let admin = output.cluster.admin().await?;
            let ops = set
                .iter()
                .map(|(name, value)| AlterConfigOp::set(name, value))
                .chain(delete.iter().map(AlterConfigOp::delete))
                .collect();
            admin
                .alter_topic_configs(&topic, ops)
                .await
                .map_err(|error| topic_error(&topic, error))?;
            let altered = Altered {
                topic,
                set: set.into_iter().collect(),
                deleted: delete,
            };
            output.print(&altered, |altered| {
                let mut text = String::new();
                for (name, value) in &altered.set {
                    text.push_str(&format!(
                        "Set {name}={value} on topic {:?}.\n",
                        altered.topic
                    ));
                }
                for name in &altered.deleted {
                    text.push_str(&format!("Removed {name} from topic {:?}.\n", altered.topic));
                }
                text
            })
        }
        TopicCommand::AddPartitions {
            topic,
            total,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            admin
                .create_partitions(&topic, total)
                .await
                .map_err(|error| topic_error(&topic, error))?;
            let grown = admin.describe_topic(&topic).await?;
            let summary = TopicSummary::of(&grown);
            output.print(&summary, |topic| {
                format!(
                    "Topic {:?} now has {} partitions.\n",
                    topic.name, topic.partitions
                )
            })
        }
        TopicCommand::TrimPrefix {
            topic,
            offset,
            partitions,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let metadata = admin
                .describe_topic(&topic)
                .await
                .map_err(|error| topic_error(&topic, error))?;
            let partitions = select_partitions(&metadata, &partitions.partitions)?;
            // One request per partition, so that one partition's refusal (an offset past its
            // high watermark) does not hide what happened to the others.
            let (admin, name) = (&admin, topic.as_str());
            let results =
                futures::future::join_all(partitions.iter().map(|&partition| async move {
                    admin.delete_records(name, &[(partition, offset)]).await
                }))
                .await;
            let trimmed = Trimmed {
                topic: topic.clone(),
                offset,
                partitions: partitions
                    .iter()
                    .zip(results)
                    .map(|(&partition, result)| match result {
                        Ok(answers) => TrimmedPartition {
                            partition,
                            low_watermark: answers.first().map(|&(_, low)| low),
                            error: None,
                        },
                        Err(error) => TrimmedPartition {
                            partition,
                            low_watermark: None,
                            error: Some(error.to_string()),
                        },
                    })
                    .collect(),
            };
            output.print(&trimmed, trimmed_table)?;
            let failed = trimmed
                .partitions
                .iter()
                .filter(|p| p.error.is_some())
                .count();
            if failed > 0 {
                bail!(
                    "{failed} of {} partition(s) of topic {topic:?} were not trimmed",
                    trimmed.partitions.len()
                );
            }
            Ok(())
        }
    }
}

#[derive(Debug, Serialize)]
struct Trimmed {
    topic: String,
    /// As given: -1 for the high watermark.
    offset: i64,
    partitions: Vec<TrimmedPartition>,
}

#[derive(Debug, Serialize)]
struct TrimmedPartition {
    partition: i32,
    /// The log start offset after the trim; `None` when it failed.
    low_watermark: Option<i64>,
    error: Option<String>,
}

fn trimmed_table(trimmed: &Trimmed) -> String {
    let rows: Vec<Vec<String>> = trimmed
        .partitions
        .iter()
        .map(|p| {
            vec![
                trimmed.topic.clone(),
                p.partition.to_string(),
                number_or_dash(p.low_watermark),
                or_dash(p.error.as_deref()),
            ]
        })
        .collect();
    table(&["TOPIC", "PARTITION", "LOW-WATERMARK", "ERROR"], &rows)
}

/// "topic "t" does not exist" rather than UNKNOWN_TOPIC_OR_PARTITION, which the client
/// counts as retriable (the topic may be being created).
pub(crate) fn topic_error(topic: &str, error: ClientError) -> anyhow::Error {
    match error.code() {
        Some(ResponseError::UnknownTopicOrPartition) => anyhow!("topic {topic:?} does not exist"),
        _ => error.into(),
    }
}

#[derive(Debug, Serialize)]
struct TopicList {
    topics: Vec<TopicSummary>,
}

#[derive(Debug, Serialize)]
struct TopicSummary {
    name: String,
    partitions: usize,
    /// The replica count of partition 0 (all partitions have the same, unless reassigned).
    replication_factor: usize,
    internal: bool,
}

impl TopicSummary {
    fn of(topic: &TopicMetadata) -> Self {
        TopicSummary {
            name: topic.name.clone(),
            partitions: topic.partitions.len(),
            replication_factor: topic.partitions.first().map_or(0, |p| p.replicas.len()),
            internal: topic.is_internal,
        }
    }
}

#[derive(Debug, Serialize)]
struct Deleted {
    deleted: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Altered {
    topic: String,
    set: std::collections::BTreeMap<String, String>,
    deleted: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TopicDescription {
    name: String,
    /// Nil from brokers older than Metadata v10.
    id: String,
    internal: bool,
    partitions: Vec<PartitionDescription>,
    /// The configs not at their built-in defaults (every config with `--all-configs`).
    configs: Vec<ConfigDescription>,
}

#[derive(Debug, Serialize)]
struct PartitionDescription {
    partition: i32,
    /// -1 when there is none.
    leader: i32,
    leader_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ConfigDescription {
    name: String,
    /// `None` for sensitive values.
    value: Option<String>,
    /// `topic`, `broker`, `default`...
    source: &'static str,
    read_only: bool,
    sensitive: bool,
}

impl TopicDescription {
    fn of(topic: &TopicMetadata, configs: &[ConfigEntry], all_configs: bool) -> Self {
        let mut configs: Vec<ConfigDescription> = configs
            .iter()
            .filter(|config| all_configs || !config.is_default)
            .map(|config| ConfigDescription {
                name: config.name.clone(),
                value: config.value.clone(),
                source: source_name(config.source),
                read_only: config.read_only,
                sensitive: config.is_sensitive,
            })
            .collect();
        configs.sort_by(|a, b| a.name.cmp(&b.name));
        TopicDescription {
            name: topic.name.clone(),
            id: topic.id.to_string(),
            internal: topic.is_internal,
            partitions: topic
                .partitions
                .iter()
                .map(|partition| PartitionDescription {
                    partition: partition.partition,
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                    replicas: partition.replicas.clone(),
                    isr: partition.isr.clone(),
                    error: partition.error.map(|code| format!("{code:?}")),
                })
                .collect(),
            configs,
        }
    }
}

/// Where a config's value comes from, in the words every command prints.
pub(crate) fn source_name(source: ConfigSource) -> &'static str {
    match source {
        ConfigSource::DynamicTopicConfig => "topic",
        ConfigSource::DynamicBrokerConfig => "broker (dynamic)",
        ConfigSource::DynamicDefaultBrokerConfig => "cluster default (dynamic)",
        ConfigSource::StaticBrokerConfig => "broker",
        ConfigSource::DefaultConfig => "default",
        ConfigSource::DynamicBrokerLoggerConfig => "broker logger",
        ConfigSource::ClientMetricsConfig => "client metrics",
        ConfigSource::GroupConfig => "group",
        _ => "unknown",
    }
}

fn list_table(topics: &[TopicSummary]) -> String {
    if topics.is_empty() {
        return "No topics.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = topics
        .iter()
        .map(|topic| {
            vec![
                topic.name.clone(),
                topic.partitions.to_string(),
                topic.replication_factor.to_string(),
            ]
        })
        .collect();
    table(&["TOPIC", "PARTITIONS", "REPLICAS"], &rows)
}

fn describe_table(topic: &TopicDescription) -> String {
    let replication_factor = topic.partitions.first().map_or(0, |p| p.replicas.len());
    let mut text = summary(&[
        ("Topic", topic.name.clone()),
        ("ID", topic.id.clone()),
        (
            "Internal",
            if topic.internal { "yes" } else { "no" }.to_owned(),
        ),
        ("Partitions", topic.partitions.len().to_string()),
        ("Replication", replication_factor.to_string()),
    ]);
    text.push('\n');
    let with_errors = topic.partitions.iter().any(|p| p.error.is_some());
    let mut headers = vec!["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR"];
    if with_errors {
        headers.push("ERROR");
    }
    let rows: Vec<Vec<String>> = topic
        .partitions
        .iter()
        .map(|partition| {
            let mut row = vec![
                partition.partition.to_string(),
                if partition.leader < 0 {
                    "-".to_owned()
                } else {
                    partition.leader.to_string()
                },
                if partition.leader_epoch < 0 {
                    "-".to_owned()
                } else {
                    partition.leader_epoch.to_string()
                },
                join_ids(&partition.replicas),
                join_ids(&partition.isr),
            ];
            if with_errors {
                row.push(or_dash(partition.error.as_deref()));
            }
            row
        })
        .collect();
    text.push_str(&table(&headers, &rows));
    text.push('\n');
    if topic.configs.is_empty() {
        text.push_str("No configs set; every config has its default.\n");
    } else {
        let rows: Vec<Vec<String>> = topic
            .configs
            .iter()
            .map(|config| {
                let value = if config.sensitive {
                    "(sensitive)".to_owned()
                } else {
                    or_dash(config.value.as_deref())
                };
                vec![config.name.clone(), value, config.source.to_owned()]
            })
            .collect();
        text.push_str(&table(&["CONFIG", "VALUE", "SOURCE"], &rows));
    }
    text
}

#[cfg(test)]
mod tests {
    use runnel_client::PartitionMetadata;

    use super::*;

    fn config(name: &str, value: &str, source: ConfigSource) -> ConfigEntry {
        ConfigEntry {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            source,
            read_only: false,
            is_default: source == ConfigSource::DefaultConfig,
            is_sensitive: false,
            synonyms: Vec::new(),
            documentation: None,
        }
    }

    #[test]
    fn describe_shows_partitions_and_configs_not_at_defaults() {
        let metadata = TopicMetadata {
            name: "orders".to_owned(),
            id: uuid_nil(),
            is_internal: false,
            partitions: vec![
                PartitionMetadata {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 0,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    error: None,
                },
                PartitionMetadata {
                    partition: 1,
                    leader: -1,
                    leader_epoch: 3,
                    replicas: vec![2, 1],
                    isr: vec![],
                    error: Some(ResponseError::LeaderNotAvailable),
                },
            ],
            error: None,
        };
        let configs = [
            config("retention.ms", "3600000", ConfigSource::DynamicTopicConfig),
            config("cleanup.policy", "delete", ConfigSource::DefaultConfig),
            config("segment.bytes", "1048576", ConfigSource::StaticBrokerConfig),
        ];
        let description = TopicDescription::of(&metadata, &configs, false);
        assert_eq!(
            describe_table(&description),
            "\
Topic:       orders
ID:          00000000-0000-0000-0000-000000000000
Internal:    no
Partitions:  2
Replication: 2

PARTITION  LEADER  EPOCH  REPLICAS  ISR  ERROR
0          1       0      1,2       1,2  -
1          -       3      2,1            LeaderNotAvailable

CONFIG         VALUE    SOURCE
retention.ms   3600000  topic
segment.bytes  1048576  broker
"
        );
        assert_eq!(
            TopicDescription::of(&metadata, &configs, true)
                .configs
                .len(),
            3
        );
    }

    fn uuid_nil() -> uuid::Uuid {
        uuid::Uuid::nil()
    }

    #[test]
    fn list_prints_one_row_a_topic() {
        let topics = [TopicSummary {
            name: "orders".to_owned(),
            partitions: 3,
            replication_factor: 1,
            internal: false,
        }];
        assert_eq!(
            list_table(&topics),
            "TOPIC   PARTITIONS  REPLICAS\norders  3           1\n"
        );
        assert_eq!(list_table(&[]), "No topics.\n");
    }
}
