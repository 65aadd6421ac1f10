//! `runnel cluster info`: the cluster's id, its controller and its brokers.

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::output::{or_dash, summary, table, OutputArgs};

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
}

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
    }
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
