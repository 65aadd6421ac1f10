//! `runnel cluster info`: the cluster's id, its controller and its brokers, as brokers
//! report them; `runnel cluster health`: whether every replica's broker is up and every
//! partition led and fully in sync, for people and for scripts (its exit code);
//! `runnel cluster quorum`: the controller quorum, as its leader reports it;
//! `elect-leaders`, `reassign` and `reassignments`: moving leaderships and replicas;
//! `config` (in `cluster_config_cmd`): broker configs.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use runnel_client::{ClientError, ClusterHealth, Election, PartitionOutcome};
use runnel_quorum::{ControllerClient, ControllerRequest, ControllerResponse, QuorumStatus};
use serde::Serialize;

use crate::output::{
    join_ids, json, number_or_dash, or_dash, print_stdout, summary, table, Format, OutputArgs,
    Reported,
};

#[derive(Debug, Args)]
pub(crate) struct ClusterCmdArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Show the cluster id, the controller and every broker.
    Info {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Whether the cluster is healthy: no broker that holds replicas is down, every partition
    /// has a leader, none is under-replicated. Exits 0 when healthy, 1 when not.
    Health {
        /// Wait until the cluster is healthy (a cluster that does not answer yet counts as
        /// unhealthy), then print its health.
        #[arg(long)]
        exit_when_healthy: bool,
        /// With --exit-when-healthy: give up after this many seconds (default: never).
        #[arg(long, value_name = "SECONDS", requires = "exit_when_healthy")]
        timeout: Option<u64>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show the controller quorum: its leader and term, each voter and how far it has
    /// replicated the metadata log, and the brokers registered with it.
    Quorum {
        /// Controllers to ask (any of them; the leader answers).
        #[arg(
            long,
            env = "RUNNEL_CONTROLLERS",
            value_name = "HOST:PORT[,HOST:PORT...]"
        )]
        bootstrap_controller: String,
        /// `table` for people, `json` for scripts (one object).
        #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Give partitions back to their preferred leader (the first replica), or with
    /// --unclean elect any live replica for a partition with none (records may be lost).
    ElectLeaders {
        /// Only this topic's partitions (default: every partition that needs an election).
        #[arg(long)]
        topic: Option<String>,
        /// Only these partitions of --topic (comma-separated or repeated).
        #[arg(
            long = "partitions",
            short = 'p',
            alias = "partition",
            value_delimiter = ',',
            value_name = "P,...",
            requires = "topic"
        )]
        partitions: Vec<i32>,
        /// Elect a replica outside the in-sync replicas when none of those is alive.
        #[arg(long)]
        unclean: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move a partition to other replicas (KIP-455): the new ones catch up, then the old
    /// ones leave; --cancel stops a move under way.
    Reassign {
        topic: String,
        #[arg(long)]
        partition: i32,
        /// The target replicas by broker id, the preferred leader first.
        #[arg(long, value_delimiter = ',', required_unless_present = "cancel")]
        replicas: Vec<i32>,
        /// Cancel the move under way instead.
        #[arg(long, conflicts_with = "replicas")]
        cancel: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// List the partition moves under way.
    Reassignments {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Broker configs: get them, or set and delete the dynamic ones at runtime.
    Config(crate::cluster_config_cmd::ConfigArgs),
}

#[derive(Debug, Serialize)]
struct Outcome {
    topic: String,
    partition: i32,
    /// `None` when done.
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct Reassignment {
    topic: String,
    partition: i32,
    replicas: Vec<i32>,
    adding: Vec<i32>,
    removing: Vec<i32>,
}

/// How long `cluster quorum` looks for the leader.
const QUORUM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
struct ClusterInfo {
    cluster_id: Option<String>,
    controller_id: Option<i32>,
    brokers: Vec<Broker>,
}

#[derive(Debug, Serialize)]
struct Broker {
    node_id: i32,
    host: String,
    port: i32,
    rack: Option<String>,
}

pub(crate) async fn run(args: ClusterCmdArgs) -> anyhow::Result<()> {
    match args.command {
        ClusterCommand::Config(args) => crate::cluster_config_cmd::run(args).await,
        ClusterCommand::Info { output } => {
            let admin = output.cluster.admin().await?;
            let cluster = admin.describe_cluster().await?;
            let info = ClusterInfo {
                cluster_id: cluster.cluster_id,
                controller_id: cluster.controller_id,
                brokers: cluster
                    .brokers
                    .into_iter()
                    .map(|broker| Broker {
                        node_id: broker.node_id,
                        host: broker.host,
                        port: broker.port,
                        rack: broker.rack,
                    })
                    .collect(),
            };
            output.print(&info, info_table)
        }
        ClusterCommand::Health {
            exit_when_healthy,
            timeout,
            output,
        } => {
            let health = if exit_when_healthy {
                wait_until_healthy(&output, timeout.map(Duration::from_secs)).await?
            } else {
                let admin = output.cluster.admin().await?;
                health(&admin).await?
            };
            output.print(&health, health_table)?;
            if !health.healthy {
                return Err(Reported("the cluster is unhealthy".to_owned()).into());
            }
            Ok(())
        }
        ClusterCommand::Quorum {
            bootstrap_controller,
            format,
        } => {
            let addresses: Vec<String> = bootstrap_controller
                .split(',')
                .map(|address| address.trim().to_owned())
                .filter(|address| !address.is_empty())
                .collect();
            let mut client = ControllerClient::new(&addresses);
            let status = match client
                .call(ControllerRequest::DescribeQuorum, QUORUM_TIMEOUT)
                .await?
            {
                ControllerResponse::Quorum(status) => status,
                other => bail!("unexpected answer from the controller: {other:?}"),
            };
            let text = match format {
                Format::Table => quorum_table(&status),
                Format::Json => json(&status)?,
            };
            print_stdout(&text)
        }
        ClusterCommand::ElectLeaders {
            topic,
            partitions,
            unclean,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let election = if unclean {
                Election::Unclean
            } else {
                Election::Preferred
            };
            let wanted = match topic {
                None => None,
                Some(topic) => {
                    let partitions = if partitions.is_empty() {
                        admin
                            .describe_topic(&topic)
                            .await?
                            .partitions
                            .iter()
                            .map(|partition| partition.partition)
                            .collect()
                    } else {
                        partitions
                    };
                    Some(vec![(topic, partitions)])
                }
            };
            let outcomes = admin.elect_leaders(election, wanted).await?;
            print_outcomes(&output, outcomes, &[ResponseError::ElectionNotNeeded])
        }
        ClusterCommand::Reassign {
            topic,
            partition,
            replicas,
            cancel,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let target = (!cancel).then_some(replicas);
            let outcomes = admin
                .alter_partition_reassignments(vec![(topic, partition, target)])
                .await?;
            print_outcomes(&output, outcomes, &[])
        }
        ClusterCommand::Reassignments { output } => {
            let admin = output.cluster.admin().await?;
            let moves: Vec<Reassignment> = admin
                .list_partition_reassignments()
                .await?
                .into_iter()
                .map(|r| Reassignment {
                    topic: r.topic,
                    partition: r.partition,
                    replicas: r.replicas,
                    adding: r.adding,
                    removing: r.removing,
                })
                .collect();
            output.print(&moves, |moves| {
                let ids = |ids: &[i32]| {
                    if ids.is_empty() {
                        "-".to_owned()
                    } else {
                        ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
                    }
                };
                let rows: Vec<Vec<String>> = moves
                    .iter()
                    .map(|m| {
                        vec![
                            m.topic.clone(),
                            m.partition.to_string(),
                            ids(&m.replicas),
                            ids(&m.adding),
                            ids(&m.removing),
                        ]
                    })
                    .collect();
                table(
                    &["TOPIC", "PARTITION", "REPLICAS", "ADDING", "REMOVING"],
                    &rows,
                )
            })
        }
    }
}

/// How often `cluster health --exit-when-healthy` looks again.
const HEALTH_POLL: Duration = Duration::from_secs(1);

async fn health(admin: &runnel_client::Admin) -> anyhow::Result<ClusterHealth> {
    let cluster = admin.describe_cluster().await?;
    let topics = admin.list_topics(true).await?;
    Ok(ClusterHealth::assess(&cluster, &topics))
}

/// Asks for the cluster's health until it is healthy or `timeout` has passed; the last answer.
async fn wait_until_healthy(
    output: &OutputArgs,
    timeout: Option<Duration>,
) -> anyhow::Result<ClusterHealth> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut admin: Option<runnel_client::Admin> = None;
    loop {
        // A cluster that is starting does not answer at first: that is unhealthy, not an error.
        let answer = match &admin {
            Some(admin) => health(admin).await,
            None => match output.cluster.admin().await {
                Ok(connected) => {
                    let answer = health(&connected).await;
                    admin = Some(connected);
                    answer
                }
                Err(error) => Err(error),
            },
        };
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let timed_out = left.is_some_and(|left| left.is_zero());
        match answer {
            Ok(health) if health.healthy || timed_out => return Ok(health),
            Err(error) if timed_out => return Err(error),
            Ok(_) => {}
            // Connect afresh next time: the brokers it knew may be the ones that are down.
            Err(_) => admin = None,
        }
        tokio::time::sleep(left.map_or(HEALTH_POLL, |left| left.min(HEALTH_POLL))).await;
    }
}

fn health_table(health: &ClusterHealth) -> String {
    let ids = |ids: &[i32]| {
        if ids.is_empty() {
            "-".to_owned()
        } else {
            join_ids(ids)
        }
    };
    let partitions = |partitions: &mut dyn Iterator<Item = (&str, i32)>| {
        let listed: Vec<String> = partitions
            .map(|(topic, partition)| format!("{topic}/{partition}"))
            .collect();
        if listed.is_empty() {
            "-".to_owned()
        } else {
            listed.join(" ")
        }
    };
    summary(&[
        (
            "Healthy",
            if health.healthy { "yes" } else { "no" }.to_owned(),
        ),
        (
            "Unhealthy reasons",
            if health.unhealthy_reasons.is_empty() {
                "-".to_owned()
            } else {
                health.unhealthy_reasons.join(", ")
            },
        ),
        (
            "Controller",
            number_or_dash(health.controller_id.map(i64::from)),
        ),
        ("All nodes", ids(&health.all_nodes)),
        ("Nodes down", ids(&health.nodes_down)),
        (
            "Leaderless partitions",
            partitions(
                &mut health
                    .leaderless_partitions
                    .iter()
                    .map(|p| (p.topic.as_str(), p.partition)),
            ),
        ),
        (
            "Under-replicated partitions",
            partitions(
                &mut health
                    .under_replicated_partitions
                    .iter()
                    .map(|p| (p.topic.as_str(), p.partition)),
            ),
        ),
    ])
}

/// Prints each partition's outcome; fails if any failed other than with a code in `benign`.
fn print_outcomes(
    output: &OutputArgs,
    outcomes: Vec<PartitionOutcome>,
    benign: &[ResponseError],
) -> anyhow::Result<()> {
    let mut failed = 0;
    let rows: Vec<Outcome> = outcomes
        .into_iter()
        .map(|outcome| {
            let error = outcome.result.err().map(|error| {
                let harmless =
                    matches!(&error, ClientError::Broker { code, .. } if benign.contains(code));
                if !harmless {
                    failed += 1;
                }
                error.to_string()
            });
            Outcome {
                topic: outcome.topic,
                partition: outcome.partition,
                error,
            }
        })
        .collect();
    output.print(&rows, |rows| {
        let rows: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                vec![
                    row.topic.clone(),
                    row.partition.to_string(),
                    row.error.clone().unwrap_or_else(|| "done".to_owned()),
                ]
            })
            .collect();
        table(&["TOPIC", "PARTITION", "RESULT"], &rows)
    })?;
    if failed > 0 {
        bail!("{failed} partition(s) failed");
    }
    Ok(())
}

fn quorum_table(status: &QuorumStatus) -> String {
    let mut text = summary(&[
        ("Leader", status.leader.to_string()),
        ("Term", status.term.to_string()),
        ("Applied offset", status.applied_offset.to_string()),
        ("Brokers", status.brokers.len().to_string()),
    ]);
    text.push('\n');
    let leader_offset = status
        .voters
        .iter()
        .find(|voter| voter.id == status.leader)
        .and_then(|voter| voter.matched_offset);
    let rows: Vec<Vec<String>> = status
        .voters
        .iter()
        .map(|voter| {
            let lag = leader_offset
                .zip(voter.matched_offset)
                .map(|(leader, matched)| leader.saturating_sub(matched) as i64);
            vec![
                if voter.id == status.leader {
                    format!("{}*", voter.id)
                } else {
                    voter.id.to_string()
                },
                voter.address.clone(),
                number_or_dash(voter.matched_offset.map(|offset| offset as i64)),
                number_or_dash(lag),
            ]
        })
        .collect();
    text.push_str(&table(&["VOTER", "ADDRESS", "OFFSET", "LAG"], &rows));
    if !status.brokers.is_empty() {
        text.push('\n');
        let rows: Vec<Vec<String>> = status
            .brokers
            .iter()
            .map(|broker| {
                let registration = &broker.registration;
                let state = if registration.in_controlled_shutdown {
                    "shutting down"
                } else if registration.fenced {
                    "fenced"
                } else {
                    "active"
                };
                vec![
                    registration.id.to_string(),
                    registration.epoch.to_string(),
                    state.to_owned(),
                    or_dash(registration.rack.as_deref()),
                ]
            })
            .collect();
        text.push_str(&table(&["BROKER", "EPOCH", "STATE", "RACK"], &rows));
    }
    text
}

fn info_table(info: &ClusterInfo) -> String {
    let mut text = summary(&[
        ("Cluster", or_dash(info.cluster_id.as_deref())),
        (
            "Controller",
            info.controller_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
        ),
        ("Brokers", info.brokers.len().to_string()),
    ]);
    text.push('\n');
    let rows: Vec<Vec<String>> = info
        .brokers
        .iter()
        .map(|broker| {
            let id = if Some(broker.node_id) == info.controller_id {
                format!("{}*", broker.node_id)
            } else {
                broker.node_id.to_string()
            };
            vec![
                id,
                broker.host.clone(),
                broker.port.to_string(),
                or_dash(broker.rack.as_deref()),
            ]
        })
        .collect();
    text.push_str(&table(&["ID", "HOST", "PORT", "RACK"], &rows));
    text
}

#[cfg(test)]
mod tests {
    use runnel_client::{BrokerInfo, ClusterDescription, PartitionMetadata, TopicMetadata};

    use super::*;

    fn broker(node_id: i32) -> BrokerInfo {
        BrokerInfo {
            node_id,
            host: "127.0.0.1".to_owned(),
            port: 9091 + node_id,
            rack: None,
        }
    }

    fn partition(partition: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionMetadata {
        PartitionMetadata {
            partition,
            leader,
            leader_epoch: 0,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            error: None,
        }
    }

    fn topic(name: &str, partitions: Vec<PartitionMetadata>) -> TopicMetadata {
        TopicMetadata {
            name: name.to_owned(),
            id: uuid::Uuid::nil(),
            is_internal: false,
            partitions,
            error: None,
        }
    }

    #[test]
    fn healthy_when_every_replica_is_up_led_and_in_sync() {
        let cluster = ClusterDescription {
            cluster_id: Some("c".to_owned()),
            controller_id: Some(1),
            brokers: vec![broker(1), broker(2)],
        };
        let topics = [topic("t", vec![partition(0, 1, &[1, 2], &[1, 2])])];
        let health = ClusterHealth::assess(&cluster, &topics);
        assert!(health.healthy, "{health:?}");
        assert_eq!(health.all_nodes, vec![1, 2]);
        assert_eq!(
            health_table(&health),
            "\
Healthy:                     yes
Unhealthy reasons:           -
Controller:                  1
All nodes:                   1,2
Nodes down:                  -
Leaderless partitions:       -
Under-replicated partitions: -
"
        );
    }

    #[test]
    fn a_dead_replica_is_a_node_down_and_what_it_held_suffers() {
        let cluster = ClusterDescription {
            cluster_id: None,
            controller_id: Some(1),
            brokers: vec![broker(1)],
        };
        let topics = [topic(
            "t",
            vec![
                partition(0, 1, &[1, 2], &[1]),
                partition(1, 2, &[2, 1], &[2, 1]),
                partition(2, -1, &[3], &[3]),
            ],
        )];
        let health = ClusterHealth::assess(&cluster, &topics);
        assert!(!health.healthy);
        assert_eq!(health.nodes_down, vec![2, 3]);
        assert_eq!(health.all_nodes, vec![1, 2, 3]);
        assert_eq!(
            health.unhealthy_reasons,
            vec![
                "nodes_down",
                "leaderless_partitions",
                "under_replicated_partitions"
            ]
        );
        let leaderless: Vec<i32> = health
            .leaderless_partitions
            .iter()
            .map(|p| p.partition)
            .collect();
        assert_eq!(leaderless, vec![1, 2]);
        assert_eq!(health.under_replicated_partitions.len(), 1);
        assert!(health_table(&health).contains("Leaderless partitions:       t/1 t/2\n"));
    }

    #[test]
    fn the_controller_is_starred() {
        let info = ClusterInfo {
            cluster_id: Some("runnel-abc".to_owned()),
            controller_id: Some(1),
            brokers: vec![
                Broker {
                    node_id: 1,
                    host: "10.0.0.1".to_owned(),
                    port: 9092,
                    rack: None,
                },
                Broker {
                    node_id: 2,
                    host: "10.0.0.2".to_owned(),
                    port: 9092,
                    rack: Some("a".to_owned()),
                },
            ],
        };
        assert_eq!(
            info_table(&info),
            "\
Cluster:    runnel-abc
Controller: 1
Brokers:    2

ID  HOST      PORT  RACK
1*  10.0.0.1  9092  -
2   10.0.0.2  9092  a
"
        );
    }
}
