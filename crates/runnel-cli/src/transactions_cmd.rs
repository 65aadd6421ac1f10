//! `runnel transactions list|describe` and `runnel producers describe TOPIC`: what the
//! transaction coordinators and the partitions know of transactional and idempotent
//! producers, for operators looking for a hung transaction or a fenced producer.

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::output::{or_dash, summary, table, OutputArgs};

#[derive(Debug, Args)]
pub(crate) struct TransactionsArgs {
    #[command(subcommand)]
    command: TransactionsCommand,
}

#[derive(Debug, Subcommand)]
enum TransactionsCommand {
    /// Every transactional id, with its producer id and state.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// One transactional id: state, producer id and epoch, timeout, open transaction.
    Describe {
        /// The producer's transactional.id.
        transactional_id: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Args)]
pub(crate) struct ProducersArgs {
    #[command(subcommand)]
    command: ProducersCommand,
}

#[derive(Debug, Subcommand)]
enum ProducersCommand {
    /// The idempotent and transactional producers each partition of a topic remembers.
    Describe {
        /// The topic.
        topic: String,
        /// Only this partition (repeatable).
        #[arg(long = "partition", short = 'p', value_name = "P")]
        partitions: Vec<i32>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Serialize)]
struct Listing {
    transactional_id: String,
    producer_id: i64,
    state: String,
}

#[derive(Debug, Serialize)]
struct Description {
    transactional_id: String,
    coordinator: i32,
    state: String,
    producer_id: i64,
    producer_epoch: i16,
    timeout_ms: i32,
    start_ms: Option<i64>,
    partitions: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Producer {
    partition: i32,
    producer_id: i64,
    producer_epoch: i32,
    last_sequence: i32,
    last_timestamp_ms: i64,
    coordinator_epoch: i32,
    transaction_start_offset: Option<i64>,
}

pub(crate) async fn run_transactions(args: TransactionsArgs) -> anyhow::Result<()> {
    match args.command {
        TransactionsCommand::List { output } => {
            let admin = output.cluster.admin().await?;
            let listed: Vec<Listing> = admin
                .list_transactions()
                .await?
                .into_iter()
                .map(|listing| Listing {
                    transactional_id: listing.transactional_id,
                    producer_id: listing.producer_id,
                    state: listing.state,
                })
                .collect();
            output.print(&listed, |listed| {
                let rows: Vec<Vec<String>> = listed
                    .iter()
                    .map(|l| {
                        vec![
                            l.transactional_id.clone(),
                            l.producer_id.to_string(),
                            l.state.clone(),
                        ]
                    })
                    .collect();
                table(&["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"], &rows)
            })
        }
        TransactionsCommand::Describe {
            transactional_id,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let described = admin.describe_transaction(&transactional_id).await?;
            let description = Description {
                transactional_id: described.transactional_id,
                coordinator: described.coordinator_id,
                state: described.state,
                producer_id: described.producer_id,
                producer_epoch: described.producer_epoch,
                timeout_ms: described.timeout_ms,
                start_ms: described.start_ms,
                partitions: described
                    .partitions
                    .iter()
                    .map(|(topic, partition)| format!("{topic}-{partition}"))
                    .collect(),
            };
            output.print(&description, describe_table)
        }
    }
}

fn describe_table(description: &Description) -> String {
    summary(&[
        ("Transactional id", description.transactional_id.clone()),
        ("Coordinator", description.coordinator.to_string()),
        ("State", description.state.clone()),
        ("Producer id", description.producer_id.to_string()),
        ("Producer epoch", description.producer_epoch.to_string()),
        ("Timeout (ms)", description.timeout_ms.to_string()),
        (
            "Started (ms)",
            description
                .start_ms
                .map_or_else(|| "-".to_owned(), |start| start.to_string()),
        ),
        (
            "Partitions",
            or_dash(Some(description.partitions.join(", ").as_str())),
        ),
    ])
}

pub(crate) async fn run_producers(args: ProducersArgs) -> anyhow::Result<()> {
    match args.command {
        ProducersCommand::Describe {
            topic,
            partitions,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let producers: Vec<Producer> = admin
                .describe_producers(&topic, &partitions)
                .await?
                .into_iter()
                .map(|p| Producer {
                    partition: p.partition,
                    producer_id: p.producer_id,
                    producer_epoch: p.producer_epoch,
                    last_sequence: p.last_sequence,
                    last_timestamp_ms: p.last_timestamp_ms,
                    coordinator_epoch: p.coordinator_epoch,
                    transaction_start_offset: p.transaction_start_offset,
                })
                .collect();
            output.print(&producers, |producers| {
                let rows: Vec<Vec<String>> = producers
                    .iter()
                    .map(|p| {
                        vec![
                            p.partition.to_string(),
                            p.producer_id.to_string(),
                            p.producer_epoch.to_string(),
                            p.last_sequence.to_string(),
                            p.last_timestamp_ms.to_string(),
                            p.transaction_start_offset
                                .map_or_else(|| "-".to_owned(), |offset| offset.to_string()),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "PARTITION",
                        "PRODUCER-ID",
                        "EPOCH",
                        "LAST-SEQUENCE",
                        "LAST-TIMESTAMP",
                        "TXN-START",
                    ],
                    &rows,
                )
            })
        }
    }
}
