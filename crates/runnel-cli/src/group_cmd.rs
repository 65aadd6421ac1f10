//! `runnel group list|describe`: consumer groups, their members, and per partition the committed
//! offset and lag, as aligned tables for people or one JSON object for scripts.

use std::io::Write;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use crate::admin::{AdminClient, GroupDescription, GroupListing};

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
}

#[derive(Debug, Args)]
struct OutputArgs {
    /// Brokers to bootstrap from.
    #[arg(
        long,
        env = "RUNNEL_BROKERS",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT[,HOST:PORT...]"
    )]
    bootstrap: String,
    /// `table` for people, `json` for scripts (one object).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

pub(crate) fn run(args: GroupArgs) -> anyhow::Result<()> {
    let text = match args.command {
        GroupCommand::List { output } => {
            let groups = AdminClient::connect(&output.bootstrap)?.list_groups()?;
            match output.format {
                Format::Table => list_table(&groups),
                Format::Json => json(&GroupList { groups })?,
            }
        }
        GroupCommand::Describe { group, output } => {
            let description = AdminClient::connect(&output.bootstrap)?.describe_group(&group)?;
            match output.format {
                Format::Table => describe_table(&description),
                Format::Json => json(&description)?,
            }
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

#[derive(Debug, Serialize)]
struct GroupList {
    groups: Vec<GroupListing>,
}

fn json(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
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
    let summary = [
        ("Group", group.group_id.clone()),
        ("State", group.state.clone()),
        ("Type", group.group_type.as_str().to_owned()),
        ("Protocol", protocol),
        (
            "Coordinator",
            format!(
                "node {} at {}",
                group.coordinator.node_id,
                group.coordinator.address()
            ),
        ),
    ];
    let mut text = String::new();
    for (label, value) in summary {
        text.push_str(&format!("{:<13}{value}\n", format!("{label}:")));
    }

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
            let number =
                |value: Option<i64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
            let mut row = vec![
                partition.topic.clone(),
                partition.partition.to_string(),
                number(partition.committed_offset),
                number(partition.log_end_offset),
                number(partition.lag),
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

fn or_dash(text: Option<&str>) -> String {
    match text {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    }
}

/// Left-aligned columns two spaces apart, no trailing spaces. Widths count characters, which is
/// right for the ASCII that ids and topic names nearly always are.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::{GroupType, Member, Node, PartitionLag, TopicPartitions};

    fn description() -> GroupDescription {
        GroupDescription {
            group_id: "billing".to_owned(),
            group_type: GroupType::Classic,
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
}
