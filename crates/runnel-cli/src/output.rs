//! What every client command shares: where the cluster is and how to talk to it
//! (`-b/--bootstrap`, `--profile`, `-X KEY=VALUE`), how results are printed
//! (`-f/--format table|json`), and how a connection failure reads.

use std::io::Write;
use std::path::PathBuf;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use runnel_client::{Admin, ClientConfig, ClientError};
use serde::Serialize;

use crate::profile::{self, ClientProperty, DEFAULT_BOOTSTRAP};

/// Where the cluster is, and how to talk to it.
#[derive(Debug, Clone, Args)]
pub(crate) struct ClusterArgs {
    /// Brokers to bootstrap from (RUNNEL_BROKERS is read too); else the profile's.
    #[arg(
        long,
        short = 'b',
        env = "RUNNEL_BOOTSTRAP",
        default_value = DEFAULT_BOOTSTRAP,
        value_name = "HOST:PORT[,HOST:PORT...]"
    )]
    pub(crate) bootstrap: String,
    /// The CLI's config file, with [profiles.NAME] tables (default:
    /// $XDG_CONFIG_HOME/runnel/cli.toml or ~/.config/runnel/cli.toml, if it exists).
    #[arg(long, env = "RUNNEL_CLI_CONFIG", value_name = "FILE")]
    pub(crate) config_file: Option<PathBuf>,
    /// The profile of the config file to use (default: its current_profile).
    #[arg(long, env = "RUNNEL_PROFILE", value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// A Kafka client property, e.g. -X client.id=ops (repeatable); over the profile's.
    #[arg(
        short = 'X',
        value_name = "KEY=VALUE",
        value_parser = ClientProperty::parse,
        long_help = profile::properties_help()
    )]
    pub(crate) client_properties: Vec<ClientProperty>,
}

impl ClusterArgs {
    /// The client's settings: the brokers, then the profile's properties, then `-X`'s.
    pub(crate) fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new(self.bootstrap.as_str());
        let profile = profile::select(self.config_file.as_deref(), self.profile.as_deref())?;
        let from_profile = profile.iter().flat_map(|profile| &profile.properties);
        for property in from_profile.chain(&self.client_properties) {
            property.apply(&mut config).map_err(anyhow::Error::msg)?;
        }
        Ok(config)
    }

    pub(crate) async fn admin(&self) -> anyhow::Result<Admin> {
        Admin::connect(self.client_config()?)
            .await
            .map_err(|error| self.connect_error(error))
    }

    /// `cannot connect to HOST:PORT: Connection refused (os error 111)` rather than the
    /// client's per-address account, when no bootstrap broker answered.
    pub(crate) fn connect_error(&self, error: ClientError) -> anyhow::Error {
        match &error {
            ClientError::NoBrokers(detail) => {
                let mut reasons: Vec<&str> = detail
                    .split("; ")
                    .map(|failure| failure.rsplit_once("failed: ").map_or(failure, |(_, r)| r))
                    .collect();
                reasons.dedup();
                anyhow!(
                    "cannot connect to {}: {}",
                    self.bootstrap,
                    reasons.join("; ")
                )
            }
            _ => error.into(),
        }
    }
}

/// An error the command has already reported on stdout (`cluster health` printing an
/// unhealthy cluster): the process exits 1 and prints nothing more.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Reported(pub(crate) String);

/// The cluster and `--format`, which nearly every command takes.
#[derive(Debug, Clone, Args)]
pub(crate) struct OutputArgs {
    #[command(flatten)]
    pub(crate) cluster: ClusterArgs,
    /// `table` for people, `json` for scripts (one object; a failure is {"error": "..."} on
    /// stderr).
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Table)]
    pub(crate) format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Table,
    Json,
}

impl OutputArgs {
    /// Prints `value` as JSON, or the table `table` makes of it.
    pub(crate) fn print<T: Serialize>(
        &self,
        value: &T,
        table: impl FnOnce(&T) -> String,
    ) -> anyhow::Result<()> {
        let text = match self.format {
            Format::Table => table(value),
            Format::Json => json(value)?,
        };
        print_stdout(&text)
    }
}

pub(crate) fn json(value: &impl Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Writes `text` to stdout. A closed pipe (`| head`) is the reader's choice, not a failure.
pub(crate) fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

/// Completes on Ctrl-C or SIGTERM: tools stop cleanly (a consumer leaves its group, a
/// producer flushes) rather than die.
pub(crate) async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub(crate) fn or_dash(text: Option<&str>) -> String {
    match text {
        Some(text) if !text.is_empty() => text.to_owned(),
        _ => "-".to_owned(),
    }
}

pub(crate) fn number_or_dash(value: Option<i64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

pub(crate) fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// `label:` and value lines with the values aligned.
pub(crate) fn summary(lines: &[(&str, String)]) -> String {
    let width = lines
        .iter()
        .map(|(label, _)| label.len() + 2)
        .max()
        .unwrap_or(0);
    lines
        .iter()
        .map(|(label, value)| format!("{:<width$}{value}\n", format!("{label}:")))
        .collect()
}

/// Left-aligned columns two spaces apart, no trailing spaces. Widths count characters, which is
/// right for the ASCII that ids and topic names nearly always are.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
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

/// `KEY=VALUE`, for `--config`, `--set`, `--header`.
pub(crate) fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_brokers_reads_as_one_reason() {
        let args = ClusterArgs {
            bootstrap: "127.0.0.1:1".to_owned(),
            config_file: None,
            profile: None,
            client_properties: Vec::new(),
        };
        let error = ClientError::NoBrokers(
            "127.0.0.1:1: connection to 127.0.0.1:1 failed: Connection refused (os error 111)"
                .to_owned(),
        );
        assert_eq!(
            args.connect_error(error).to_string(),
            "cannot connect to 127.0.0.1:1: Connection refused (os error 111)"
        );
    }

    #[test]
    fn key_values_split_at_the_first_equals() {
        assert_eq!(key_value("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert_eq!(key_value("a="), Ok(("a".to_owned(), String::new())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }

    #[test]
    fn summaries_align_values() {
        assert_eq!(
            summary(&[("Topic", "t".to_owned()), ("Partitions", "3".to_owned())]),
            "Topic:      t\nPartitions: 3\n"
        );
    }
}
