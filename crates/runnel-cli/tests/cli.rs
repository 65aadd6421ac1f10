//! The `runnel` tools against the real broker binary, read back through their JSON output:
//! topics, the cluster, producing and consuming lines (across segments whose files the
//! broker closes and reopens), resetting a group's offsets, and the benchmark's one-line
//! summary and its subcommands' own flags.

mod support;

use std::process::Command;
use std::time::Duration;

use runnel_testkit::run_command;
use serde_json::{json, Value};
use support::BrokerProcess;

/// Longest any one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `runnel` with `args` against `broker`, feeding `stdin` if given.
fn runnel_with_input(broker: &BrokerProcess, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runnel"));
    command
        .args(args)
        .env("RUNNEL_BROKERS", format!("127.0.0.1:{}", broker.port));
    let run = run_command(command, stdin, COMMAND_TIMEOUT);
    Output {
        success: run.success(),
        stdout: run.stdout_text(),
        stderr: run.stderr,
    }
}

fn runnel(broker: &BrokerProcess, args: &[&str]) -> Output {
    runnel_with_input(broker, args, None)
}

fn runnel_ok(broker: &BrokerProcess, args: &[&str]) -> String {
    let output = runnel(broker, args);
    assert!(
        output.success,
        "runnel {args:?} failed:\n{}\n{}",
        output.stderr, output.stdout
    );
    output.stdout
}

fn runnel_json(broker: &BrokerProcess, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let stdout = runnel_ok(broker, &args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("runnel {args:?} printed no JSON ({error}):\n{stdout}"))
}

fn start_broker() -> BrokerProcess {
    BrokerProcess::start(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--auto-create-topics",
        "false",
    ])
}

#[test]
fn topic_lifecycle_through_json() {
    let broker = start_broker();
    let created = runnel_json(
        &broker,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--replication-factor",
            "1",
            "--config",
            "retention.ms=3600000",
        ],
    );
    assert_eq!(
        created,
        json!({"name": "orders", "partitions": 3, "replication_factor": 1, "internal": false})
    );

    let again = runnel(&broker, &["topic", "create", "orders", "--partitions", "3"]);
    assert!(!again.success);
    assert!(
        again.stderr.contains("TopicAlreadyExists") && again.stderr.lines().count() == 1,
        "one clear line: {}",
        again.stderr
    );

    let listed = runnel_json(&broker, &["topic", "list"]);
    let names: Vec<&str> = listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["orders"], "no internal topics without --internal");

    let described = runnel_json(&broker, &["topic", "describe", "orders"]);
    assert_eq!(described["name"], "orders");
    let partitions = described["partitions"].as_array().expect("partitions");
    assert_eq!(partitions.len(), 3);
    for (index, partition) in partitions.iter().enumerate() {
        assert_eq!(partition["partition"], index);
        assert!(partition["leader"].as_i64().expect("leader") >= 0);
        assert_eq!(partition["replicas"], json!([partition["leader"]]));
        assert_eq!(partition["isr"], partition["replicas"]);
    }
    let config = |described: &Value, name: &str| {
        described["configs"]
            .as_array()
            .expect("configs")
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    };
    assert_eq!(
        config(&described, "retention.ms"),
        Some(
            json!({"name": "retention.ms", "value": "3600000", "source": "topic",
                    "read_only": false, "sensitive": false})
        )
    );

    let altered = runnel_json(
        &broker,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "cleanup.policy=compact",
            "--delete",
            "retention.ms",
        ],
    );
    assert_eq!(
        altered,
        json!({"topic": "orders", "set": {"cleanup.policy": "compact"}, "deleted": ["retention.ms"]})
    );
    let described = runnel_json(&broker, &["topic", "describe", "orders"]);
    assert_eq!(
        config(&described, "cleanup.policy").map(|c| c["value"].clone()),
        Some(json!("compact"))
    );
    assert_ne!(
        config(&described, "retention.ms").map(|c| c["source"].clone()),
        Some(json!("topic")),
        "the override is gone"
    );

    let grown = runnel_json(
        &broker,
        &["topic", "add-partitions", "orders", "--total", "5"],
    );
    assert_eq!(grown["partitions"], 5);
    let described = runnel_json(&broker, &["topic", "describe", "orders"]);
    assert_eq!(
        described["partitions"]
            .as_array()
            .expect("partitions")
            .len(),
        5
    );

    let table = runnel_ok(&broker, &["topic", "describe", "orders"]);
    assert!(table.starts_with("Topic:"), "{table}");
    assert!(table.contains("PARTITION  LEADER"), "{table}");
    assert!(table.contains("cleanup.policy"), "{table}");

    let deleted = runnel_json(&broker, &["topic", "delete", "orders"]);
    assert_eq!(deleted, json!({"deleted": ["orders"]}));
    let listed = runnel_json(&broker, &["topic", "list"]);
    assert_eq!(listed, json!({"topics": []}));
    let missing = runnel(&broker, &["topic", "describe", "orders"]);
    assert!(!missing.success);
    assert!(
        missing.stderr.contains("topic \"orders\" does not exist"),
        "{}",
        missing.stderr
    );
}

#[test]
fn cluster_info_names_the_broker() {
    let broker = start_broker();
    let info = runnel_json(&broker, &["cluster", "info"]);
    let brokers = info["brokers"].as_array().expect("brokers");
    assert_eq!(brokers.len(), 1, "{info:#}");
    assert_eq!(brokers[0]["port"], broker.port);
    assert_eq!(info["controller_id"], brokers[0]["node_id"]);
    assert!(info["cluster_id"].is_string(), "{info:#}");

    let table = runnel_ok(&broker, &["cluster", "info"]);
    assert!(table.starts_with("Cluster:"), "{table}");
}

#[test]
fn unreachable_bootstrap_fails_with_one_line() {
    let port = support::free_port();
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["topic", "list", "--bootstrap", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run runnel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{stderr}"
    );
}

fn lines(from: u64, to: u64) -> String {
    (from..=to).map(|i| format!("{i}\n")).collect()
}

#[test]
fn sealed_segment_files_close_beyond_the_pool_and_reopen_when_read() {
    // fsync before every acknowledgement: each rolled segment is fsynced, so closable.
    let broker = BrokerProcess::start(&[
        "--sealed-segment-files-max",
        "2",
        "--flush-messages",
        "1",
        "--auto-create-topics",
        "false",
    ]);
    runnel_ok(
        &broker,
        &[
            "topic",
            "create",
            "rolled",
            "--partitions",
            "1",
            "--config",
            "segment.bytes=1024",
        ],
    );
    let input = lines(1, 3_000);
    let produced = runnel_with_input(
        &broker,
        &["produce", "rolled", "--batch-size", "600"],
        Some(input.as_bytes()),
    );
    assert!(produced.success, "{}", produced.stderr);
    let segments = std::fs::read_dir(broker.data_dir().join("rolled-0"))
        .expect("partition directory")
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        })
        .count();
    assert!(segments > 10, "{segments} segments");
    let open_logs = |broker: &BrokerProcess| {
        broker
            .open_files_ending(".log")
            .into_iter()
            .filter(|path| path.to_string_lossy().contains("rolled-0"))
            .count()
    };
    assert!(
        open_logs(&broker) <= 3,
        "the active segment and two sealed ones"
    );
    // Reading from the start opens each closed file again, in turn.
    let consumed = runnel_ok(
        &broker,
        &["consume", "rolled", "--offset", "earliest", "--exit-at-end"],
    );
    assert!(consumed == input, "every line, in order");
    assert!(open_logs(&broker) <= 3, "still bounded after reading");
}

#[test]
fn produce_ten_thousand_lines_and_consume_them_back_in_order() {
    let broker = start_broker();
    runnel_ok(&broker, &["topic", "create", "lines", "--partitions", "1"]);
    let input = lines(1, 10_000);
    let produced = runnel_with_input(&broker, &["produce", "lines"], Some(input.as_bytes()));
    assert!(produced.success, "{}", produced.stderr);
    assert!(
        produced.stderr.contains("Produced 10000 records"),
        "{}",
        produced.stderr
    );
    assert_eq!(produced.stdout, "", "produce keeps stdout for data");

    let consumed = runnel_ok(
        &broker,
        &["consume", "lines", "--offset", "earliest", "--exit-at-end"],
    );
    assert!(consumed == input, "the same lines in the same order");

    // Keys, headers and a template.
    let keyed = runnel_with_input(
        &broker,
        &[
            "produce",
            "lines",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--acks",
            "1",
            "--compression",
            "zstd",
        ],
        Some(b"user-1:hello\n"),
    );
    assert!(keyed.success, "{}", keyed.stderr);
    // Waits for the record: acks=1 answers before the fsync that lets consumers see it.
    let formatted = runnel_ok(
        &broker,
        &[
            "consume",
            "lines",
            "--offset",
            "10000",
            "-n",
            "1",
            "--format",
            "%t/%p@%o %k=%v [%h]\\n",
        ],
    );
    assert_eq!(formatted, "lines/0@10000 user-1=hello [source=cli]\n");
    let json_line = runnel_ok(
        &broker,
        &[
            "consume", "lines", "--offset", "10000", "-n", "1", "--format", "json",
        ],
    );
    let record: Value = serde_json::from_str(json_line.trim()).expect("one JSON object");
    assert_eq!(record["key"], "user-1");
    assert_eq!(record["value"], "hello");
    assert_eq!(record["offset"], 10_000);
    assert_eq!(
        record["headers"],
        json!([{"key": "source", "value": "cli"}])
    );
}

fn committed(broker: &BrokerProcess, group: &str) -> Value {
    let described = runnel_json(broker, &["group", "describe", group]);
    described["partitions"][0]["committed_offset"].clone()
}

#[test]
fn group_reset_offsets_then_reconsume_from_the_reset_point() {
    let broker = start_broker();
    runnel_ok(&broker, &["topic", "create", "events", "--partitions", "1"]);
    let input = lines(1, 10);
    let produced = runnel_with_input(&broker, &["produce", "events"], Some(input.as_bytes()));
    assert!(produced.success, "{}", produced.stderr);

    // Read everything as the group; closing commits the position.
    let first = runnel_ok(
        &broker,
        &[
            "consume",
            "events",
            "--group",
            "replay",
            "--offset",
            "earliest",
            "--exit-at-end",
        ],
    );
    assert_eq!(first, input);
    assert_eq!(committed(&broker, "replay"), 10);

    let dry_run = runnel_json(
        &broker,
        &[
            "group",
            "reset-offsets",
            "replay",
            "--topic",
            "events",
            "--to-offset",
            "4",
            "--dry-run",
        ],
    );
    assert_eq!(
        dry_run,
        json!({"group": "replay", "dry_run": true, "partitions": [
            {"topic": "events", "partition": 0, "current_offset": 10, "new_offset": 4}
        ]})
    );
    assert_eq!(
        committed(&broker, "replay"),
        10,
        "a dry run changes nothing"
    );

    let shifted = runnel_json(
        &broker,
        &[
            "group",
            "reset-offsets",
            "replay",
            "--topic",
            "events",
            "--shift-by",
            "-100",
            "--dry-run",
        ],
    );
    assert_eq!(
        shifted["partitions"][0]["new_offset"], 0,
        "kept within the log"
    );

    let table = runnel_ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            "replay",
            "--topic",
            "events",
            "--to-offset",
            "4",
        ],
    );
    assert_eq!(
        table,
        "TOPIC   PARTITION  CURRENT-OFFSET  NEW-OFFSET\nevents  0          10              4\n"
    );
    assert_eq!(committed(&broker, "replay"), 4);

    let again = runnel_ok(
        &broker,
        &["consume", "events", "--group", "replay", "--exit-at-end"],
    );
    assert_eq!(again, lines(5, 10));
    assert_eq!(committed(&broker, "replay"), 10);

    // -n commits what was printed, not what was fetched (regression: it committed 10).
    runnel_ok(
        &broker,
        &[
            "group",
            "reset-offsets",
            "replay",
            "--topic",
            "events",
            "--to-offset",
            "2",
        ],
    );
    let three = runnel_ok(
        &broker,
        &["consume", "events", "--group", "replay", "-n", "3"],
    );
    assert_eq!(three, lines(3, 5));
    assert_eq!(committed(&broker, "replay"), 5);

    let deleted = runnel_json(&broker, &["group", "delete", "replay"]);
    assert_eq!(deleted, json!({"deleted": ["replay"]}));
    let gone = runnel(&broker, &["group", "describe", "replay"]);
    assert!(!gone.success);
    assert!(
        gone.stderr.contains("\"replay\" does not exist"),
        "{}",
        gone.stderr
    );
}

#[test]
fn bench_produce_prints_one_json_summary_last() {
    let broker = start_broker();
    let output = runnel(
        &broker,
        &[
            "bench",
            "produce",
            "--topic",
            "bench",
            "--partitions",
            "2",
            "--records",
            "2000",
            "--record-size",
            "100",
            "--acks",
            "all",
            "--format",
            "json",
        ],
    );
    assert!(output.success, "{}", output.stderr);
    let last = output.stdout.lines().last().expect("a summary line");
    let summary: Value = serde_json::from_str(last).expect("the last line is JSON");
    assert_eq!(summary["mode"], "produce");
    assert_eq!(summary["records"], 2000);
    assert_eq!(summary["bytes"], 200_000);
    assert_eq!(summary["partitions"], 2);
    assert_eq!(summary["errors"], 0);
    let latency = &summary["latency_ms"];
    for field in ["p50", "p95", "p99", "p99.9", "max"] {
        assert!(latency[field].as_f64().is_some(), "{field}: {summary}");
    }
    assert!(latency["p50"].as_f64() <= latency["max"].as_f64());
    assert!(summary["records_per_sec"].as_f64().expect("rate") > 0.0);

    // `-f`, the short spelling every command takes.
    let consumed = runnel(
        &broker,
        &["bench", "consume", "--topic", "bench", "-f", "json"],
    );
    assert!(consumed.success, "{}", consumed.stderr);
    let summary: Value =
        serde_json::from_str(consumed.stdout.lines().last().expect("summary")).expect("JSON");
    assert_eq!(summary["mode"], "consume");
    assert_eq!(summary["records"], 2000);
    assert_eq!(summary["consumers"], 1);
    assert_eq!(summary["producers"], 0);
    assert_eq!(
        summary["acks"],
        Value::Null,
        "consume has no producer settings"
    );
    assert_eq!(summary["record_size"], 100, "the mean size read");

    // e2e reports what the consumers read, each record once.
    let e2e = runnel(
        &broker,
        &[
            "bench",
            "e2e",
            "--topic",
            "bench-e2e",
            "--partitions",
            "2",
            "--consumers",
            "2",
            "--records",
            "2000",
            "--record-size",
            "100",
            "-f",
            "json",
        ],
    );
    assert!(e2e.success, "{}", e2e.stderr);
    let summary: Value =
        serde_json::from_str(e2e.stdout.lines().last().expect("summary")).expect("JSON");
    assert_eq!(summary["mode"], "e2e");
    assert_eq!(summary["records"], 2000, "{summary}");
    assert_eq!(summary["bytes"], 200_000, "{summary}");
    assert!(
        summary["e2e_latency_ms"]["p50"].as_f64().is_some(),
        "{summary}"
    );

    // A failure under `-f json` is one JSON object on stderr, as for every command.
    let missing = runnel(
        &broker,
        &["bench", "consume", "--topic", "never-written", "-f", "json"],
    );
    assert!(!missing.success);
    let error: Value = serde_json::from_str(missing.stderr.lines().last().unwrap_or_default())
        .unwrap_or_else(|error| panic!("no JSON error ({error}):\n{}", missing.stderr));
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|message| message.contains("does not exist")),
        "{error}"
    );
}

/// `runnel bench SUBCOMMAND --help`, which needs no broker.
fn bench_help(subcommand: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["bench", subcommand, "--help"])
        .output()
        .expect("run runnel");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn bench_subcommands_list_only_their_own_flags() {
    let consume = bench_help("consume");
    for producer_flag in ["--acks", "--linger-ms", "--producers", "--record-size"] {
        assert!(
            !consume.contains(producer_flag),
            "{producer_flag} in:\n{consume}"
        );
    }
    assert!(consume.contains("--consumers"), "{consume}");
    let produce = bench_help("produce");
    for flag in [
        "--acks",
        "--linger-ms",
        "-b, --bootstrap",
        "-f, --format",
        "-X",
    ] {
        assert!(produce.contains(flag), "{flag} not in:\n{produce}");
    }
    assert!(!produce.contains("--consumers"), "{produce}");
    let e2e = bench_help("e2e");
    for flag in ["--acks", "--linger-ms", "--consumers", "--producers"] {
        assert!(e2e.contains(flag), "{flag} not in:\n{e2e}");
    }

    // A producer flag on consume is refused rather than ignored.
    let refused = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(["bench", "consume", "--acks", "1"])
        .output()
        .expect("run runnel");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--acks"),
        "{refused:?}"
    );
}
