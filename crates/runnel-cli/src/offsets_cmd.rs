//! `runnel offsets TOPIC...`: for each partition, where its log starts, its high watermark
//! (where a read_uncommitted consumer's reading ends) and its last stable offset (where a
//! read_committed one's ends: below the oldest open transaction), from ListOffsets; with
//! `--time`, the offset of the first record at or after that time, as `kcat -Q` looks it up.

use clap::Args;
use runnel_client::{Admin, IsolationLevel, OffsetSpec};
use serde::Serialize;

use crate::datetime;
use crate::output::{number_or_dash, table, OutputArgs};
use crate::topic_cmd::{select_partitions, topic_error, PartitionsArg};

#[derive(Debug, Args)]
pub(crate) struct OffsetsArgs {
    /// The topics.
    #[arg(required = true, value_name = "TOPIC")]
    topics: Vec<String>,
    /// Also the offset of the first record at or after this time: RFC 3339
    /// (2026-01-01T00:00:00Z; UTC unless a zone is given) or milliseconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    time: Option<i64>,
    #[command(flatten)]
    partitions: PartitionsArg,
    #[command(flatten)]
    output: OutputArgs,
}

/// The CLI's time syntax: an RFC 3339 date-time, or milliseconds since the epoch (with or
/// without consume's `@`).
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    let digits = text.strip_prefix('@').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return digits
            .parse::<i64>()
            .map_err(|_| format!("{text:?} is too large for milliseconds since the epoch"));
    }
    let ms = datetime::parse_ms(text)
        .map_err(|error| format!("{error}, or milliseconds since the epoch"))?;
    // ListOffsets reads negative timestamps as "earliest" and "latest".
    if ms < 0 {
        return Err(format!("{text:?} is before 1970"));
    }
    Ok(ms)
}

#[derive(Debug, Serialize)]
struct Report {
    /// `--time` in milliseconds since the epoch, if given.
    time: Option<i64>,
    partitions: Vec<PartitionOffsets>,
}

#[derive(Debug, Serialize)]
struct PartitionOffsets {
    topic: String,
    partition: i32,
    /// The first offset still in the log.
    log_start_offset: i64,
    /// The offset the next record will get.
    high_watermark: i64,
    /// The end of what read_committed consumers may read: the high watermark unless a
    /// transaction is open.
    last_stable_offset: i64,
    /// With `--time`: the first record at or after it; `null` without `--time`.
    at_time: Option<AtTime>,
}

#[derive(Debug, Serialize)]
struct AtTime {
    /// `null` when no record is that recent (kcat prints -1).
    offset: Option<i64>,
    /// That record's timestamp.
    timestamp: Option<i64>,
}

pub(crate) async fn run(args: OffsetsArgs) -> anyhow::Result<()> {
    if args.topics.len() > 1 && !args.partitions.partitions.is_empty() {
        anyhow::bail!("--partitions needs exactly one topic");
    }
    let admin = args.output.cluster.admin().await?;
    let mut partitions = Vec::new();
    for topic in &args.topics {
        partitions
            .extend(topic_offsets(&admin, topic, &args.partitions.partitions, args.time).await?);
    }
    let report = Report {
        time: args.time,
        partitions,
    };
    args.output.print(&report, offsets_table)
}

async fn topic_offsets(
    admin: &Admin,
    topic: &str,
    wanted: &[i32],
    time: Option<i64>,
) -> anyhow::Result<Vec<PartitionOffsets>> {
    let metadata = admin
        .describe_topic(topic)
        .await
        .map_err(|error| topic_error(topic, error))?;
    let partitions = select_partitions(&metadata, wanted)?;
    let uncommitted = IsolationLevel::ReadUncommitted;
    let (starts, ends, stable) = tokio::try_join!(
        admin.list_offsets(topic, &partitions, OffsetSpec::Earliest),
        admin.list_offsets_isolated(topic, &partitions, OffsetSpec::Latest, uncommitted),
        admin.list_offsets_isolated(
            topic,
            &partitions,
            OffsetSpec::Latest,
            IsolationLevel::ReadCommitted
        ),
    )?;
    let at_time = match time {
        Some(ms) => Some(
            admin
                .list_offsets(topic, &partitions, OffsetSpec::Timestamp(ms))
                .await?,
        ),
        None => None,
    };
    // The client answers in the order asked, one entry per partition.
    Ok(partitions
        .iter()
        .enumerate()
        .map(|(index, &partition)| PartitionOffsets {
            topic: topic.to_owned(),
            partition,
            log_start_offset: starts[index].1.offset,
            high_watermark: ends[index].1.offset,
            last_stable_offset: stable[index].1.offset,
            at_time: at_time.as_ref().map(|found| {
                let listed = found[index].1;
                let found = listed.offset >= 0;
                AtTime {
                    offset: found.then_some(listed.offset),
                    timestamp: (found && listed.timestamp >= 0).then_some(listed.timestamp),
                }
            }),
        })
        .collect())
}

fn offsets_table(report: &Report) -> String {
    let mut headers = vec![
        "TOPIC",
        "PARTITION",
        "LOG-START",
        "HIGH-WATERMARK",
        "LAST-STABLE",
    ];
    if report.time.is_some() {
        headers.extend(["OFFSET-AT-TIME", "TIMESTAMP"]);
    }
    let rows: Vec<Vec<String>> = report
        .partitions
        .iter()
        .map(|p| {
            let mut row = vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.log_start_offset.to_string(),
                p.high_watermark.to_string(),
                p.last_stable_offset.to_string(),
            ];
            if let Some(at) = &p.at_time {
                row.push(number_or_dash(at.offset));
                row.push(number_or_dash(at.timestamp));
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_epoch_milliseconds() {
        assert_eq!(parse_time("1767225600000"), Ok(1_767_225_600_000));
        assert_eq!(parse_time("@1767225600000"), Ok(1_767_225_600_000));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert_eq!(parse_time("0"), Ok(0));
        assert!(parse_time("1969-12-31T23:59:59Z").is_err());
        assert!(parse_time("-5").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
        assert!(parse_time("99999999999999999999").is_err());
    }

    #[test]
    fn the_table_grows_time_columns_with_time() {
        let row = |at_time| PartitionOffsets {
            topic: "t".to_owned(),
            partition: 0,
            log_start_offset: 2,
            high_watermark: 9,
            last_stable_offset: 7,
            at_time,
        };
        let without = Report {
            time: None,
            partitions: vec![row(None)],
        };
        assert_eq!(
            offsets_table(&without),
            "TOPIC  PARTITION  LOG-START  HIGH-WATERMARK  LAST-STABLE\n\
             t      0          2          9               7\n"
        );
        let with = Report {
            time: Some(5),
            partitions: vec![row(Some(AtTime {
                offset: None,
                timestamp: None,
            }))],
        };
        assert!(offsets_table(&with).ends_with("7            -               -\n"));
    }
}
