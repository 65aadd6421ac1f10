//! `runnel cluster config get|set|delete`: broker configs, read with DescribeConfigs and
//! changed at runtime with IncrementalAlterConfigs, for every broker (the cluster default)
//! or one. Only the dynamic ones change (the broker-level defaults of topic configs, such
//! as `log.retention.ms`); the broker refuses the others with a message saying so.

use anyhow::Context;
use clap::{Args, Subcommand};
use runnel_client::{Admin, AlterConfigOp, ConfigEntry, ConfigTarget};
use serde::Serialize;

use crate::output::{key_value, or_dash, table, OutputArgs};

#[derive(Debug, Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Show a broker's configs with their values in force and where each comes from
    /// (default: the broker with the lowest id).
    Get {
        /// Only these configs.
        keys: Vec<String>,
        /// The broker to ask, by node id.
        #[arg(long, value_name = "ID", conflicts_with = "cluster_default")]
        broker: Option<i32>,
        /// Show only what was set at runtime for every broker.
        #[arg(long)]
        cluster_default: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Set dynamic configs, KEY=VALUE, for every broker (default) or one (--broker).
    Set {
        #[arg(required = true, value_parser = key_value, value_name = "KEY=VALUE")]
        settings: Vec<(String, String)>,
        /// Only this broker, by node id.
        #[arg(long, value_name = "ID")]
        broker: Option<i32>,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Remove configs set at runtime, for every broker (default) or one (--broker): the
    /// broker falls back to its next source (its command line, then the built-in default).
    Delete {
        #[arg(required = true)]
        keys: Vec<String>,
        /// Only this broker, by node id.
        #[arg(long, value_name = "ID")]
        broker: Option<i32>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// One config as `get` prints it.
#[derive(Debug, Serialize)]
struct Line {
    name: String,
    value: Option<String>,
    source: String,
    dynamic: bool,
    documentation: Option<String>,
}

#[derive(Debug, Serialize)]
struct Changed {
    target: String,
    changed: Vec<String>,
}

pub(crate) async fn run(args: ConfigArgs) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Get {
            keys,
            broker,
            cluster_default,
            output,
        } => {
            let admin = output.cluster.admin().await?;
            let target = match (cluster_default, broker) {
                (true, _) => ConfigTarget::EveryBroker,
                (false, Some(id)) => ConfigTarget::Broker(id),
                (false, None) => ConfigTarget::Broker(lowest_broker(&admin).await?),
            };
            let entries = admin.describe_configs(&target).await?;
            // What was set for every broker is a subset: a key not among it is simply unset.
            let lines = select(entries, &keys, !cluster_default)?;
            output.print(&lines, |lines| {
                let rows: Vec<Vec<String>> = lines
                    .iter()
                    .map(|line| {
                        vec![
                            line.name.clone(),
                            or_dash(line.value.as_deref()),
                            line.source.clone(),
                            if line.dynamic { "yes" } else { "no" }.to_owned(),
                        ]
                    })
                    .collect();
                table(&["NAME", "VALUE", "SOURCE", "DYNAMIC"], &rows)
            })
        }
        ConfigCommand::Set {
            settings,
            broker,
            output,
        } => {
            let ops = settings
                .into_iter()
                .map(|(name, value)| AlterConfigOp::set(name, value))
                .collect();
            alter(output, broker, ops).await
        }
        ConfigCommand::Delete {
            keys,
            broker,
            output,
        } => {
            let ops = keys.iter().map(AlterConfigOp::delete).collect();
            alter(output, broker, ops).await
        }
    }
}

async fn alter(
    output: OutputArgs,
    broker: Option<i32>,
    ops: Vec<AlterConfigOp>,
) -> anyhow::Result<()> {
    let admin = output.cluster.admin().await?;
    let target = broker.map_or(ConfigTarget::EveryBroker, ConfigTarget::Broker);
    let changed: Vec<String> = ops.iter().map(|op| op.name.clone()).collect();
    admin.alter_configs(&target, ops).await?;
    let report = Changed {
        target: target.to_string(),
        changed,
    };
    output.print(&report, |report| {
        format!(
            "Changed {} of {}.\n",
            report.changed.join(", "),
            report.target
        )
    })
}

/// The broker `get` asks when none is named: the one with the lowest id.
async fn lowest_broker(admin: &Admin) -> anyhow::Result<i32> {
    let cluster = admin.describe_cluster().await?;
    cluster
        .brokers
        .iter()
        .map(|broker| broker.node_id)
        .min()
        .context("the cluster reports no brokers")
}

/// The entries named by `keys` (all when empty), in the broker's order; with `strict`, a
/// name the broker does not know is an error.
fn select(entries: Vec<ConfigEntry>, keys: &[String], strict: bool) -> anyhow::Result<Vec<Line>> {
    if let Some(unknown) = keys
        .iter()
        .find(|key| strict && !entries.iter().any(|entry| &entry.name == *key))
    {
        anyhow::bail!("the broker has no config {unknown:?}");
    }
    Ok(entries
        .into_iter()
        .filter(|entry| keys.is_empty() || keys.contains(&entry.name))
        .map(|entry| Line {
            source: crate::topic_cmd::source_name(entry.source).to_owned(),
            dynamic: !entry.read_only,
            name: entry.name,
            value: entry.value,
            documentation: entry.documentation,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use runnel_client::ConfigSource;

    use super::*;

    fn entry(name: &str, read_only: bool) -> ConfigEntry {
        ConfigEntry {
            name: name.to_owned(),
            value: Some("1".to_owned()),
            source: ConfigSource::DynamicDefaultBrokerConfig,
            read_only,
            is_default: false,
            is_sensitive: false,
            synonyms: Vec::new(),
            documentation: None,
        }
    }

    #[test]
    fn get_selects_the_named_configs_and_refuses_unknown_ones() {
        let entries = vec![entry("log.retention.ms", false), entry("node.id", true)];
        let lines = select(entries, &["log.retention.ms".to_owned()], true).expect("known");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].dynamic);
        assert_eq!(lines[0].source, "cluster default (dynamic)");
        assert!(select(vec![], &["log.retention.ms".to_owned()], false)
            .expect("unset for every broker")
            .is_empty());
        let error =
            select(vec![entry("node.id", true)], &["nope".to_owned()], true).expect_err("unknown");
        assert!(error.to_string().contains("\"nope\""));
    }
}
