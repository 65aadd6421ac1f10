//! `runnel streams reset`: puts a Streams application back at the start of its input, so that
//! it reprocesses it, as Kafka's `kafka-streams-application-reset.sh` (StreamsResetter) does.
//! It moves the committed offsets of the application's consumer group (the application id) on
//! its input topics, deletes its internal topics (changelogs and repartition topics) and the
//! group's offsets on them, and removes the application's local state directory.
//!
//! It owns only the parts that are the application's: what it deliberately leaves alone are
//! output topics (their records stay; delete them with `runnel topic delete` if wanted) and
//! topics it does not recognise as internal. Kafka's `--intermediate-topics`,
//! `--internal-topics`, `--force` and `--from-file` are not offered. Moving offsets reuses
//! `runnel group reset-offsets`' flags and planning (`group_cmd`).

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::group_cmd::{self, PartitionReset, ResetTo};
use crate::output::OutputArgs;

/// Where Streams applications keep their local state by default (their `state.dir`), one
/// directory per application id, as Kafka Streams does under its own default
/// (`${java.io.tmpdir}/kafka-streams`): `runnel_streams::DEFAULT_STATE_DIR`, repeated here so
/// that the CLI does not build the Streams library; the two must stay equal.
pub(crate) const DEFAULT_STATE_DIR: &str = "./runnel-streams-state";

/// The suffixes of the topics a Streams application creates for itself, after
/// `<application id>-`: each store's changelog and each repartition topic.
const INTERNAL_TOPIC_SUFFIXES: [&str; 2] = ["-changelog", "-repartition"];

#[derive(Debug, Args)]
pub(crate) struct StreamsArgs {
    #[command(subcommand)]
    command: StreamsCommand,
}

#[derive(Debug, Subcommand)]
enum StreamsCommand {
    /// Reset a Streams application so that it reprocesses its input: move its committed input
    /// offsets (to the earliest by default), delete its internal topics (changelogs,
    /// repartition topics) and its local state. Every instance of it must be stopped. Prints
    /// what it did; changes nothing with --dry-run.
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
// Unlike `group reset-offsets`, no target is required: as Kafka's tool, a reset starts the
// application over from the earliest offsets unless told otherwise.
#[command(mut_group("ResetTo", |group| group.required(false)))]
struct ResetArgs {
    /// The application id (application.id): its consumer group, and the prefix of its
    /// internal topics.
    #[arg(long, value_name = "ID")]
    application_id: String,
    /// The input topics whose offsets move (comma-separated or repeated). Default: every
    /// topic the application has committed offsets on, its internal topics aside.
    #[arg(long = "input-topics", value_delimiter = ',', value_name = "TOPIC,...")]
    input_topics: Vec<String>,
    #[command(flatten)]
    to: ResetTo,
    /// The applications' state directory (state.dir); this application's local state is
    /// DIR/ID, which is removed.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// Show what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub(crate) async fn run(args: StreamsArgs) -> anyhow::Result<()> {
    match args.command {
        StreamsCommand::Reset(args) => reset(args).await,
    }
}

/// Whether `topic` is one the application `application_id` created for itself, by Kafka's
/// rule: `<application id>-`, then anything, then `-changelog` or `-repartition`. The prefix
/// and the suffix may not overlap (`app-changelog` is not one): the runtime names them
/// `<application id>-<store>-changelog` and `<application id>-<store>-repartition`.
fn is_internal_topic(application_id: &str, topic: &str) -> bool {
    topic
        .strip_prefix(application_id)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|rest| {
            INTERNAL_TOPIC_SUFFIXES
                .iter()
                .any(|suffix| rest.ends_with(suffix))
        })
}

/// `DIR/ID`, where the application's local state lives. An id that is not one plain file name
/// (`..`, `a/b`, `a/`) would name a directory outside DIR, or another application's: removing
/// that could remove anything, so such an id is refused.
fn application_state_dir(state_dir: &Path, application_id: &str) -> anyhow::Result<PathBuf> {
    if Path::new(application_id).file_name() != Some(OsStr::new(application_id)) {
        bail!(
            "application id {application_id:?} is not a plain directory name, so its local \
             state cannot be under {}",
            state_dir.display()
        );
    }
    Ok(state_dir.join(application_id))
}

async fn reset(args: ResetArgs) -> anyhow::Result<()> {
    let ResetArgs {
        application_id,
        input_topics,
        to,
        state_dir,
        dry_run,
        output,
    } = args;
    let id = application_id.as_str();
    let state_dir = application_state_dir(&state_dir, id)?;
    let admin = output.cluster.admin().await?;

    // A running instance would commit its own positions over the reset, and would go on
    // writing to the changelogs and repartition topics deleted under it.
    if let Some(active) = group_cmd::active_members(&admin, id).await? {
        let message =
            format!("{active}; stop every instance of application {id:?} before resetting it");
        if !dry_run {
            bail!(message);
        }
        eprintln!("warning: {message}");
    }

    let topics: BTreeSet<String> = admin
        .list_topics(false)
        .await?
        .into_iter()
        .map(|topic| topic.name)
        .collect();
    let committed = group_cmd::committed_offsets(&admin, id).await?;

    let input_topics: BTreeSet<String> = if input_topics.is_empty() {
        // Offsets committed on a topic since deleted have nothing to move to; they are left.
        committed
            .keys()
            .map(|(topic, _)| topic)
            .filter(|topic| !is_internal_topic(id, topic) && topics.contains(*topic))
            .cloned()
            .collect()
    } else {
        for topic in &input_topics {
            if is_internal_topic(id, topic) {
                bail!(
                    "{topic:?} is an internal topic of application {id:?}: it is deleted, not \
                     reset; leave it out of --input-topics"
                );
            }
            if !topics.contains(topic) {
                bail!("input topic {topic:?} does not exist");
            }
        }
        input_topics.into_iter().collect()
    };
    let mut input_offsets = Vec::new();
    for topic in &input_topics {
        input_offsets
            .extend(group_cmd::plan_reset(&admin, topic, &[], to.spec(), &committed).await?);
    }
    let internal_topics: Vec<String> = topics
        .iter()
        .filter(|topic| is_internal_topic(id, topic))
        .cloned()
        .collect();
    // Deleted explicitly, including those on internal topics already gone. Runnel's broker
    // drops a deleted topic's offsets itself, but not every Kafka-compatible broker in every
    // case (a coordinator loading its partition when the topic went), and a repartition topic
    // recreated by the next run would otherwise be read from stale offsets, not its start.
    let internal_offsets: Vec<(String, i32)> = committed
        .keys()
        .filter(|(topic, _)| is_internal_topic(id, topic))
        .cloned()
        .collect();
    let state_dir_exists = match std::fs::symlink_metadata(&state_dir) {
        Ok(_) => true,
        Err(error) if error.kind() == ErrorKind::NotFound => false,
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot read the local state at {}", state_dir.display()))
        }
    };

    // Each step can be done again, so a run that fails part way is finished by running it
    // again. Offsets go before topics: OffsetDelete names topics, not topic ids.
    if !dry_run {
        if !input_offsets.is_empty() {
            group_cmd::apply_reset(&admin, id, &input_offsets).await?;
        }
        if !internal_offsets.is_empty() {
            admin
                .delete_group_offsets(id, &internal_offsets)
                .await
                .with_context(|| {
                    format!("cannot delete the offsets of group {id:?} on its internal topics")
                })?;
        }
        if !internal_topics.is_empty() {
            let failures: Vec<String> = admin
                .delete_topics(&internal_topics)
                .await?
                .into_iter()
                .filter_map(|(topic, result)| {
                    result
                        .err()
                        .map(|error| format!("cannot delete internal topic {topic:?}: {error}"))
                })
                .collect();
            if !failures.is_empty() {
                bail!("{}", failures.join("; "));
            }
        }
        if state_dir_exists {
            std::fs::remove_dir_all(&state_dir).with_context(|| {
                format!("cannot remove the local state at {}", state_dir.display())
            })?;
        }
    }

    let report = ResetReport {
        application_id: application_id.clone(),
        dry_run,
        input_offsets,
        deleted_internal_topics: internal_topics,
        deleted_internal_offsets: internal_offsets
            .into_iter()
            .map(|(topic, partition)| TopicPartition { topic, partition })
            .collect(),
        state_dir: state_dir.display().to_string(),
        state_dir_removed: state_dir_exists,
    };
    output.print(&report, report_text)?;
    if dry_run {
        eprintln!("Dry run: application {application_id:?} was not reset.");
    }
    Ok(())
}

/// What a reset did, or in a dry run would do.
#[derive(Debug, Serialize)]
struct ResetReport {
    application_id: String,
    dry_run: bool,
    /// Each input partition's committed offset before and after.
    input_offsets: Vec<PartitionReset>,
    deleted_internal_topics: Vec<String>,
    /// The group's committed offsets on internal topics.
    deleted_internal_offsets: Vec<TopicPartition>,
    /// `DIR/ID`.
    state_dir: String,
    /// Whether it existed, and so was removed; its absence is not an error.
    state_dir_removed: bool,
}

#[derive(Debug, Serialize)]
struct TopicPartition {
    topic: String,
    partition: i32,
}

fn report_text(report: &ResetReport) -> String {
    let (delete, remove) = if report.dry_run {
        ("Would delete", "Would remove")
    } else {
        ("Deleted", "Removed")
    };
    let mut text = if report.input_offsets.is_empty() {
        "No input offsets to reset.\n".to_owned()
    } else {
        group_cmd::reset_table(&report.input_offsets)
    };
    text.push('\n');
    if report.deleted_internal_topics.is_empty() {
        text.push_str("No internal topics.\n");
    } else {
        text.push_str(&format!(
            "{delete} internal topics: {}\n",
            report.deleted_internal_topics.join(", ")
        ));
    }
    if !report.deleted_internal_offsets.is_empty() {
        let partitions: Vec<String> = report
            .deleted_internal_offsets
            .iter()
            .map(|tp| format!("{}-{}", tp.topic, tp.partition))
            .collect();
        text.push_str(&format!(
            "{delete} committed offsets on internal topics: {}\n",
            partitions.join(", ")
        ));
    }
    if report.state_dir_removed {
        text.push_str(&format!("{remove} local state {}\n", report.state_dir));
    } else {
        text.push_str(&format!("No local state at {}\n", report.state_dir));
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::group_cmd::ResetSpec;

    #[test]
    fn internal_topics_are_the_application_changelogs_and_repartition_topics() {
        for topic in [
            "wc-counts-changelog",
            "wc-KSTREAM-x-repartition",
            "wc--changelog",
            "wc-a-b-c-repartition",
        ] {
            assert!(is_internal_topic("wc", topic), "{topic}");
        }
        for topic in [
            "wc-other",
            "wc-changelog",
            "wc-repartition",
            "wcx-counts-changelog",
            "other-wc-counts-changelog",
            "wc-counts-changelog-2",
            "wc_counts-changelog",
            "counts-changelog",
            "wc",
        ] {
            assert!(!is_internal_topic("wc", topic), "{topic}");
        }
    }

    #[test]
    fn state_dir_is_one_directory_below_dir() {
        let dir = Path::new("/var/state");
        assert_eq!(
            application_state_dir(dir, "wordcount").expect("plain id"),
            Path::new("/var/state/wordcount")
        );
        for id in ["", ".", "..", "a/b", "a/", "/etc", "a/.."] {
            assert!(application_state_dir(dir, id).is_err(), "{id:?}");
        }
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ResetArgs,
    }

    fn parse(args: &[&str]) -> Result<ResetArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("reset").chain(args.iter().copied()))
            .map(|cli| cli.args)
    }

    #[test]
    fn flags_default_to_earliest_and_take_comma_separated_or_repeated_topics() {
        let args = parse(&[
            "--application-id",
            "wc",
            "--input-topics",
            "a,b",
            "--input-topics",
            "c",
        ])
        .expect("parses");
        assert_eq!(args.input_topics, ["a", "b", "c"]);
        assert_eq!(args.to.spec(), ResetSpec::Earliest);
        assert_eq!(args.state_dir, Path::new(DEFAULT_STATE_DIR));
        assert!(!args.dry_run);

        let args = parse(&["--application-id", "wc", "--to-offset", "7"]).expect("parses");
        assert_eq!(args.to.spec(), ResetSpec::Offset(7));
        assert!(args.input_topics.is_empty());
        assert!(parse(&["--application-id", "wc", "--to-latest", "--to-earliest"]).is_err());
        assert!(parse(&["--to-earliest"]).is_err(), "the id is required");
    }

    #[test]
    fn report_says_what_was_done() {
        let report = ResetReport {
            application_id: "wc".to_owned(),
            dry_run: false,
            input_offsets: vec![PartitionReset {
                topic: "lines".to_owned(),
                partition: 0,
                current_offset: Some(12),
                new_offset: 0,
            }],
            deleted_internal_topics: vec![
                "wc-counts-changelog".to_owned(),
                "wc-counts-repartition".to_owned(),
            ],
            deleted_internal_offsets: vec![TopicPartition {
                topic: "wc-counts-repartition".to_owned(),
                partition: 0,
            }],
            state_dir: "state/wc".to_owned(),
            state_dir_removed: true,
        };
        assert_eq!(
            report_text(&report),
            "\
TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET
lines  0          12              0

Deleted internal topics: wc-counts-changelog, wc-counts-repartition
Deleted committed offsets on internal topics: wc-counts-repartition-0
Removed local state state/wc
"
        );

        let nothing = ResetReport {
            dry_run: true,
            input_offsets: Vec::new(),
            deleted_internal_topics: Vec::new(),
            deleted_internal_offsets: Vec::new(),
            state_dir_removed: false,
            ..report
        };
        assert_eq!(
            report_text(&nothing),
            "No input offsets to reset.\n\nNo internal topics.\nNo local state at state/wc\n"
        );
    }
}
