//! `runnel cluster info`: the cluster's id, its controller and its brokers, as brokers
//! report them; `runnel cluster quorum`: the controller quorum, as its leader reports it;
//! `elect-leaders`, `reassign` and `reassignments`: moving leaderships and replicas.

use std::time::Duration;

use anyhow::bail;
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use runnel_client::{ClientError, Election, PartitionOutcome};
use runnel_quorum::{ControllerClient, ControllerRequest, ControllerResponse, QuorumStatus};
use serde::Serialize;

use crate::output::{
    json, number_or_dash, or_dash, print_stdout, summary, table, Format, OutputArgs,
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
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Give partitions back to their preferred leader (the first replica), or with
    /// --unclean elect any live replica for a partition with none (records may be lost).
    ElectLeaders {
        /// Only this topic's partitions (default: every partition that needs an election).
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of --topic (repeatable).
        #[arg(long = "partition", requires = "topic")]
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
    use super::*;

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
