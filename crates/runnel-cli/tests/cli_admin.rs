//! The admin tools that bring `runnel` to `rpk`'s level, against the real broker binary and
//! cross-checked with kcat where kcat can do the same: `topic trim-prefix`, `offsets`,
//! `group offset-delete` and the wider `group reset-offsets`, `cluster health` (healthy on
//! one broker, unhealthy with a replica's broker killed), the flags every command shares
//! (`-b`, `-f`, `-X`, profiles, JSON errors), and the completion scripts and man pages.
//!
//! One broker serves every check that needs a healthy one, to keep the file quick.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use runnel_client::{ProduceRecord, Producer, ProducerConfig};
use runnel_testkit::run_command;
use serde_json::{json, Value};
use support::{free_port, BrokerProcess, ControllerProcess};

/// Longest any one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct Output {
    /// `None` when killed after [`COMMAND_TIMEOUT`].
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Output {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|error| panic!("no JSON on stdout ({error}): {self:?}"))
    }

    /// The one `{"error": ...}` object a command failing under `--format json` prints.
    fn json_error(&self) -> String {
        assert_eq!(self.code, Some(1), "{self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        let error: Value = serde_json::from_str(&self.stderr)
            .unwrap_or_else(|error| panic!("stderr is not JSON ({error}): {self:?}"));
        error["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no \"error\" string: {self:?}"))
            .to_owned()
    }
}

/// `runnel args` with `env` and nothing else of the caller's Runnel settings: no RUNNEL_*
/// variables and no config file unless the test gives them.
fn isolated_runnel(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runnel"));
    command.args(args);
    for name in [
        "RUNNEL_BOOTSTRAP",
        "RUNNEL_BROKERS",
        "RUNNEL_PROFILE",
        "RUNNEL_CLI_CONFIG",
    ] {
        command.env_remove(name);
    }
    command.env("XDG_CONFIG_HOME", "/nonexistent/runnel-test-config");
    command.envs(env.iter().copied());
    command
}

/// Runs [`isolated_runnel`] to its end.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let run = run_command(isolated_runnel(args, env), None, COMMAND_TIMEOUT);
    Output {
        code: run.code,
        stdout: run.stdout_text(),
        stderr: run.stderr,
    }
}

/// `runnel args -b broker`, which must succeed; its stdout.
fn ok(broker: &str, args: &[&str]) -> String {
    let mut args = args.to_vec();
    args.extend(["-b", broker]);
    let output = run(&args, &[]);
    assert_eq!(output.code, Some(0), "runnel {args:?}: {output:?}");
    output.stdout
}

/// `runnel args -b broker -f json`, which must succeed; its JSON.
fn ok_json(broker: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-f", "json"]);
    let stdout = ok(broker, &args);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("runnel {args:?} printed no JSON ({error}):\n{stdout}"))
}

/// `kcat args`, which must succeed; its stdout.
fn kcat(args: &[&str]) -> String {
    let mut command = Command::new("kcat");
    command.args(args);
    let output = run_command(command, None, COMMAND_TIMEOUT);
    assert!(output.success(), "kcat {args:?}: {}", output.stderr);
    output.stdout_text()
}

/// The offset `kcat -Q -t topic:partition:time` finds (-1: none; time -2: the log start).
fn kcat_offset_for(broker: &str, topic: &str, partition: i32, time: i64) -> i64 {
    let answer = kcat(&[
        "-b",
        broker,
        "-Q",
        "-t",
        &format!("{topic}:{partition}:{time}"),
    ]);
    // "topic [0] offset 4"
    answer
        .split_whitespace()
        .last()
        .and_then(|offset| offset.parse().ok())
        .unwrap_or_else(|| panic!("kcat -Q answered {answer:?}"))
}

/// The offsets kcat reads from `partition` of `topic`, from the beginning to the end.
fn kcat_offsets(broker: &str, topic: &str, partition: i32) -> Vec<i64> {
    kcat(&[
        "-b",
        broker,
        "-C",
        "-t",
        topic,
        "-p",
        &partition.to_string(),
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        "%o\n",
    ])
    .lines()
    .map(|line| line.parse().expect("an offset"))
    .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// Writes `(timestamp, value)` records to `partition` of `topic`, acknowledged by all.
fn produce(broker: &str, topic: &str, partition: i32, records: &[(i64, String)]) {
    runtime().block_on(async {
        let producer = Producer::connect(ProducerConfig::new(broker))
            .await
            .expect("producer");
        for (timestamp, value) in records {
            let record = ProduceRecord::new(topic)
                .partition(partition)
                .timestamp(*timestamp)
                .value(value.clone());
            producer.send_and_wait(record).await.expect("produced");
        }
        producer.close().await.expect("closed");
    });
}

fn values(count: usize) -> Vec<(i64, String)> {
    (0..count).map(|i| (now_ms(), format!("v{i}"))).collect()
}

fn start_broker() -> BrokerProcess {
    BrokerProcess::start(&[
        "--auto-create-topics",
        "false",
        "--group-initial-rebalance-delay-ms",
        "0",
        "--offsets-topic-num-partitions",
        "1",
        "--transaction-state-log-num-partitions",
        "1",
    ])
}

#[test]
fn admin_tools_against_one_broker() {
    let broker = start_broker();
    let address = broker.address();
    trim_prefix_moves_the_log_start_as_kcat_sees_it(&address);
    offsets_show_each_end_and_times_as_kcat_finds_them(&address);
    group_offsets_reset_across_topics_and_from_a_file_then_delete(&address);
    one_broker_is_healthy_as_kcat_sees_the_cluster(&address);
    bootstrap_comes_from_the_flag_the_environment_or_the_profile(&address);
    cluster_config_changes_topic_defaults_at_runtime(&address);
}

/// The source and value `cluster config get` shows for `key`.
fn broker_config(broker: &str, args: &[&str], key: &str) -> (String, String) {
    let lines = ok_json(
        broker,
        &[&["cluster", "config", "get", key][..], args].concat(),
    );
    let line = &lines[0];
    (
        line["value"].as_str().unwrap_or_default().to_owned(),
        line["source"].as_str().unwrap_or_default().to_owned(),
    )
}

/// A record of `bytes` bytes to `topic`, acknowledged or refused.
fn produce_sized(broker: &str, topic: &str, bytes: usize) -> Result<(), String> {
    runtime().block_on(async {
        let producer = Producer::connect(ProducerConfig::new(broker))
            .await
            .expect("producer");
        let sent = producer
            .send_and_wait(ProduceRecord::new(topic).value(vec![b'x'; bytes]))
            .await
            .map(|_| ())
            .map_err(|error| error.to_string());
        let _ = producer.close().await;
        sent
    })
}

fn cluster_config_changes_topic_defaults_at_runtime(broker: &str) {
    ok(broker, &["topic", "create", "cfg-topic"]);
    assert_eq!(
        broker_config(broker, &[], "message.max.bytes"),
        ("1048588".to_owned(), "default".to_owned())
    );
    produce_sized(broker, "cfg-topic", 500).expect("a small record fits the default");

    // For every broker: topics without an override follow at once.
    ok(
        broker,
        &[
            "cluster",
            "config",
            "set",
            "message.max.bytes=200",
            "log.retention.ms=3600000",
        ],
    );
    assert_eq!(
        broker_config(broker, &[], "message.max.bytes"),
        ("200".to_owned(), "cluster default (dynamic)".to_owned())
    );
    let set = ok_json(broker, &["cluster", "config", "get", "--cluster-default"]);
    let names: Vec<&str> = set
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|line| line["name"].as_str())
        .collect();
    assert_eq!(names, ["log.retention.ms", "message.max.bytes"]);
    let refused = produce_sized(broker, "cfg-topic", 500).expect_err("too large now");
    assert!(refused.to_lowercase().contains("large"), "{refused}");

    // For one broker, over the cluster default.
    ok(
        broker,
        &[
            "cluster",
            "config",
            "set",
            "message.max.bytes=100000",
            "--broker",
            "0",
        ],
    );
    assert_eq!(
        broker_config(broker, &["--broker", "0"], "message.max.bytes"),
        ("100000".to_owned(), "broker (dynamic)".to_owned())
    );
    produce_sized(broker, "cfg-topic", 500).expect("this broker's own setting wins");

    // What is read only at start, and bad values, are refused with the reason.
    let fixed = run(
        &["cluster", "config", "set", "num.io.threads=3", "-b", broker],
        &[],
    );
    assert_eq!(fixed.code, Some(1), "{fixed:?}");
    assert!(
        fixed
            .stderr
            .contains("Cannot update num.io.threads dynamically"),
        "{fixed:?}"
    );
    let bad = run(
        &[
            "cluster",
            "config",
            "set",
            "log.retention.ms=soon",
            "-b",
            broker,
        ],
        &[],
    );
    assert_eq!(bad.code, Some(1), "{bad:?}");
    assert!(bad.stderr.contains("log.retention.ms"), "{bad:?}");

    // Deleted, the defaults come back.
    ok(
        broker,
        &[
            "cluster",
            "config",
            "delete",
            "message.max.bytes",
            "--broker",
            "0",
        ],
    );
    ok(
        broker,
        &[
            "cluster",
            "config",
            "delete",
            "message.max.bytes",
            "log.retention.ms",
        ],
    );
    assert_eq!(
        broker_config(broker, &[], "log.retention.ms"),
        ("604800000".to_owned(), "default".to_owned())
    );
    produce_sized(broker, "cfg-topic", 500).expect("the default again");
}

fn trim_prefix_moves_the_log_start_as_kcat_sees_it(broker: &str) {
    ok(broker, &["topic", "create", "trim", "-p", "2"]);
    produce(broker, "trim", 0, &values(10));
    produce(broker, "trim", 1, &values(5));

    let trimmed = ok_json(
        broker,
        &["topic", "trim-prefix", "trim", "--offset", "4", "-p", "0"],
    );
    assert_eq!(
        trimmed,
        json!({"topic": "trim", "offset": 4, "partitions": [
            {"partition": 0, "low_watermark": 4, "error": null}
        ]})
    );
    assert_eq!(kcat_offset_for(broker, "trim", 0, -2), 4);
    assert_eq!(kcat_offsets(broker, "trim", 0), (4..10).collect::<Vec<_>>());
    assert_eq!(kcat_offsets(broker, "trim", 1), (0..5).collect::<Vec<_>>());

    // Past the high watermark: each partition says why, and the command fails.
    let output = run(
        &[
            "topic",
            "trim-prefix",
            "trim",
            "--offset",
            "50",
            "-b",
            broker,
            "-f",
            "json",
        ],
        &[],
    );
    let error = output.json_error();
    assert!(error.contains("2 of 2 partition(s)"), "{error}");
    let report = output.json();
    for partition in report["partitions"].as_array().expect("partitions") {
        assert_eq!(partition["low_watermark"], Value::Null, "{report:#}");
        assert!(
            partition["error"]
                .as_str()
                .is_some_and(|error| error.contains("OffsetOutOfRange")),
            "{report:#}"
        );
    }
    let table = run(
        &[
            "topic",
            "trim-prefix",
            "trim",
            "--offset",
            "50",
            "-b",
            broker,
        ],
        &[],
    );
    assert_eq!(table.code, Some(1));
    assert!(
        table
            .stdout
            .starts_with("TOPIC  PARTITION  LOW-WATERMARK  ERROR\n"),
        "{table:?}"
    );
    assert!(table.stderr.starts_with("runnel: error: "), "{table:?}");

    // -1: up to each partition's high watermark.
    let all = ok_json(broker, &["topic", "trim-prefix", "trim", "--offset", "-1"]);
    assert_eq!(all["partitions"][0]["low_watermark"], 10, "{all:#}");
    assert_eq!(all["partitions"][1]["low_watermark"], 5, "{all:#}");
    assert_eq!(kcat_offset_for(broker, "trim", 0, -2), 10);
    assert_eq!(kcat_offset_for(broker, "trim", 1, -2), 5);
    assert!(kcat_offsets(broker, "trim", 1).is_empty());

    let missing = run(
        &[
            "topic",
            "trim-prefix",
            "nope",
            "--offset",
            "1",
            "-b",
            broker,
            "-f",
            "json",
        ],
        &[],
    );
    assert_eq!(missing.json_error(), "topic \"nope\" does not exist");
}

fn offsets_show_each_end_and_times_as_kcat_finds_them(broker: &str) {
    ok(broker, &["topic", "create", "times", "--partitions", "2"]);
    // A second apart, a minute ago: times between records have one answer.
    let base = now_ms() - 60_000;
    let stamped: Vec<(i64, String)> = (0..6)
        .map(|i| (base + i * 1000, format!("at {i}")))
        .collect();
    produce(broker, "times", 0, &stamped);

    let offsets = ok_json(broker, &["offsets", "times"]);
    assert_eq!(
        offsets,
        json!({"time": null, "partitions": [
            {"topic": "times", "partition": 0, "log_start_offset": 0, "high_watermark": 6,
             "last_stable_offset": 6, "at_time": null},
            {"topic": "times", "partition": 1, "log_start_offset": 0, "high_watermark": 0,
             "last_stable_offset": 0, "at_time": null},
        ]})
    );

    for (time, expected) in [
        (base + 2500, Some(3)),
        (base, Some(0)),
        (base + 600_000, None),
    ] {
        let time_text = time.to_string();
        let at = ok_json(
            broker,
            &["offsets", "times", "-p", "0", "--time", &time_text],
        );
        let found = &at["partitions"][0]["at_time"];
        assert_eq!(found["offset"], json!(expected), "{at:#}");
        let kcat_found = kcat_offset_for(broker, "times", 0, time);
        assert_eq!(kcat_found, expected.unwrap_or(-1), "kcat -Q at {time}");
        if let Some(offset) = expected {
            assert_eq!(found["timestamp"], base + offset * 1000, "{at:#}");
        }
    }

    // An open transaction holds the last stable offset back; committing releases it.
    runtime().block_on(async {
        let mut config = ProducerConfig::new(broker);
        config.transactional_id = Some("offsets-test".to_owned());
        let producer = Producer::connect(config).await.expect("producer");
        producer.init_transactions().await.expect("init");
        producer.begin_transaction().await.expect("begin");
        for value in ["t0", "t1"] {
            let record = ProduceRecord::new("times").partition(1).value(value);
            producer.send_and_wait(record).await.expect("produced");
        }
        let open = ok_json(broker, &["offsets", "times", "--partitions", "1"]);
        let partition = &open["partitions"][0];
        assert_eq!(partition["high_watermark"], 2, "{open:#}");
        assert_eq!(partition["last_stable_offset"], 0, "{open:#}");
        producer.commit_transaction().await.expect("commit");
        let committed = ok_json(broker, &["offsets", "times", "--partitions", "1"]);
        let partition = &committed["partitions"][0];
        // The commit marker takes an offset too.
        assert_eq!(partition["high_watermark"], 3, "{committed:#}");
        assert_eq!(partition["last_stable_offset"], 3, "{committed:#}");
        producer.close().await.expect("closed");
    });

    let table = ok(
        broker,
        &["offsets", "times", "--time", "2026-01-01T00:00:00Z"],
    );
    assert!(
        table.starts_with(
            "TOPIC  PARTITION  LOG-START  HIGH-WATERMARK  LAST-STABLE  OFFSET-AT-TIME  TIMESTAMP\n"
        ),
        "{table}"
    );
    let bad_time = run(
        &["offsets", "times", "--time", "yesterday", "-b", broker],
        &[],
    );
    assert_eq!(bad_time.code, Some(2), "{bad_time:?}");
    assert!(
        bad_time.stderr.contains("milliseconds since the epoch"),
        "{bad_time:?}"
    );
}

/// The group's committed offsets, by `topic/partition`.
fn committed(broker: &str, group: &str) -> Vec<(String, i64)> {
    let described = ok_json(broker, &["group", "describe", group]);
    described["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .filter(|row| !row["committed_offset"].is_null())
        .map(|row| {
            (
                format!(
                    "{}/{}",
                    row["topic"].as_str().expect("topic"),
                    row["partition"]
                ),
                row["committed_offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, i64)]) -> Vec<(String, i64)> {
    expected
        .iter()
        .map(|(at, offset)| ((*at).to_owned(), *offset))
        .collect()
}

fn group_offsets_reset_across_topics_and_from_a_file_then_delete(broker: &str) {
    ok(broker, &["topic", "create", "ga", "-p", "2"]);
    ok(broker, &["topic", "create", "gb", "-p", "1"]);
    produce(broker, "ga", 0, &values(4));
    produce(broker, "ga", 1, &values(3));
    produce(broker, "gb", 0, &values(5));

    // Several --topic flags: a new group gets its first offsets.
    let reset = ok_json(
        broker,
        &[
            "group",
            "reset-offsets",
            "billing",
            "-t",
            "ga",
            "--topic",
            "gb",
            "--to-latest",
        ],
    );
    assert_eq!(
        reset["partitions"].as_array().map(Vec::len),
        Some(3),
        "{reset:#}"
    );
    let latest = pairs(&[("ga/0", 4), ("ga/1", 3), ("gb/0", 5)]);
    assert_eq!(committed(broker, "billing"), latest);

    // --all-topics: every topic with committed offsets; --dry-run changes nothing.
    let dry = ok_json(
        broker,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--all-topics",
            "--to-earliest",
            "--dry-run",
        ],
    );
    assert_eq!(dry["dry_run"], true);
    let planned: Vec<(String, i64, i64)> = dry["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|row| {
            (
                format!(
                    "{}/{}",
                    row["topic"].as_str().expect("topic"),
                    row["partition"]
                ),
                row["current_offset"].as_i64().expect("current"),
                row["new_offset"].as_i64().expect("new"),
            )
        })
        .collect();
    assert_eq!(
        planned,
        vec![
            ("ga/0".to_owned(), 4, 0),
            ("ga/1".to_owned(), 3, 0),
            ("gb/0".to_owned(), 5, 0)
        ]
    );
    assert_eq!(committed(broker, "billing"), latest);

    // --from-file, as kafka-consumer-groups reads it; offsets past the end are kept within
    // the log.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("offsets.csv");
    std::fs::write(&file, "ga,0,2\n\ngb,0,99\n").expect("write offsets");
    let file = file.to_str().expect("utf-8 path");
    ok(
        broker,
        &["group", "reset-offsets", "billing", "--from-file", file],
    );
    assert_eq!(
        committed(broker, "billing"),
        pairs(&[("ga/0", 2), ("ga/1", 3), ("gb/0", 5)])
    );

    ok(
        broker,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "ga",
            "--partition",
            "1",
            "--shift-by",
            "-2",
        ],
    );
    assert_eq!(
        committed(broker, "billing"),
        pairs(&[("ga/0", 2), ("ga/1", 1), ("gb/0", 5)])
    );

    let no_target = run(
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "ga",
            "-b",
            broker,
        ],
        &[],
    );
    assert_eq!(no_target.code, Some(1), "{no_target:?}");
    assert!(no_target.stderr.contains("--from-file"), "{no_target:?}");

    // offset-delete: the group forgets one partition, then the rest of the topic.
    let deleted = ok_json(
        broker,
        &[
            "group",
            "offset-delete",
            "billing",
            "--topic",
            "ga",
            "--partitions",
            "1",
        ],
    );
    assert_eq!(
        deleted,
        json!({"group": "billing", "partitions": [
            {"topic": "ga", "partition": 1, "committed_offset": 1, "error": null}
        ]})
    );
    assert_eq!(
        committed(broker, "billing"),
        pairs(&[("ga/0", 2), ("gb/0", 5)])
    );
    let table = ok(broker, &["group", "offset-delete", "billing", "-t", "ga"]);
    assert_eq!(
        table,
        "TOPIC  PARTITION  COMMITTED-OFFSET  RESULT\nga     0          2                 deleted\n"
    );
    assert_eq!(committed(broker, "billing"), pairs(&[("gb/0", 5)]));
    let again = run(
        &[
            "group",
            "offset-delete",
            "billing",
            "-t",
            "ga",
            "-b",
            broker,
            "-f",
            "json",
        ],
        &[],
    );
    assert_eq!(
        again.json_error(),
        "group \"billing\" has no committed offsets on topic \"ga\""
    );
}

fn one_broker_is_healthy_as_kcat_sees_the_cluster(broker: &str) {
    let table = ok(broker, &["cluster", "health"]);
    assert!(table.starts_with("Healthy:"), "{table}");
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|line| line.ends_with("yes")),
        "{table}"
    );

    let health = ok_json(broker, &["cluster", "health"]);
    assert_eq!(health["healthy"], true, "{health:#}");
    assert_eq!(health["unhealthy_reasons"], json!([]), "{health:#}");
    assert_eq!(health["nodes_down"], json!([]), "{health:#}");
    assert_eq!(health["leaderless_partitions"], json!([]), "{health:#}");
    assert_eq!(
        health["under_replicated_partitions"],
        json!([]),
        "{health:#}"
    );

    let metadata: Value =
        serde_json::from_str(&kcat(&["-b", broker, "-L", "-J"])).expect("kcat -L -J");
    let kcat_brokers: Vec<Value> = metadata["brokers"]
        .as_array()
        .expect("brokers")
        .iter()
        .map(|b| b["id"].clone())
        .collect();
    assert_eq!(
        health["all_nodes"],
        Value::Array(kcat_brokers),
        "{metadata:#}"
    );

    // Already healthy: --exit-when-healthy answers at once.
    let waited = ok_json(
        broker,
        &[
            "cluster",
            "health",
            "--exit-when-healthy",
            "--timeout",
            "10",
        ],
    );
    assert_eq!(waited["healthy"], true);
}

fn bootstrap_comes_from_the_flag_the_environment_or_the_profile(broker: &str) {
    let topics = |output: &Output| -> Vec<String> {
        assert_eq!(output.code, Some(0), "{output:?}");
        output.json()["topics"]
            .as_array()
            .expect("topics")
            .iter()
            .map(|topic| topic["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let list = ["topic", "list", "--format", "json"];
    let dead = "127.0.0.1:1";

    // The environment: RUNNEL_BOOTSTRAP, and RUNNEL_BROKERS as its older name.
    let by_new = run(&list, &[("RUNNEL_BOOTSTRAP", broker)]);
    assert!(topics(&by_new).contains(&"trim".to_owned()));
    let by_old = run(&list, &[("RUNNEL_BROKERS", broker)]);
    assert_eq!(topics(&by_old), topics(&by_new));
    let both = run(
        &list,
        &[("RUNNEL_BOOTSTRAP", broker), ("RUNNEL_BROKERS", dead)],
    );
    assert_eq!(topics(&both), topics(&by_new));

    // A profile, below the environment and the flag.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "current_profile = \"here\"\n\n\
             [profiles.here]\nbootstrap = \"{broker}\"\n\"client.id\" = \"profile-test\"\n\n\
             [profiles.gone]\nbootstrap = [\"{dead}\"]\n"
        ),
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let with_config = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = list.to_vec();
        args.extend(extra);
        let mut env = env.to_vec();
        env.push(("RUNNEL_CLI_CONFIG", config));
        run(&args, &env)
    };
    assert_eq!(topics(&with_config(&[], &[])), topics(&by_new));
    let gone = with_config(&["--profile", "gone"], &[]);
    assert_eq!(
        gone.json_error(),
        format!("cannot connect to {dead}: Connection refused (os error 111)")
    );
    assert_eq!(
        topics(&with_config(&["--profile", "gone", "-b", broker], &[])),
        topics(&by_new)
    );
    let gone_by_env = with_config(
        &[],
        &[("RUNNEL_PROFILE", "gone"), ("RUNNEL_BOOTSTRAP", broker)],
    );
    assert_eq!(topics(&gone_by_env), topics(&by_new));
    let flag_over_env = with_config(&["-b", dead], &[("RUNNEL_BOOTSTRAP", broker)]);
    assert_eq!(flag_over_env.code, Some(1), "{flag_over_env:?}");
    // XDG_CONFIG_HOME/runnel/cli.toml is the file when none is named.
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(xdg.join("runnel")).expect("mkdir");
    std::fs::copy(config, xdg.join("runnel/cli.toml")).expect("copy config");
    let by_default_file = run(&list, &[("XDG_CONFIG_HOME", xdg.to_str().expect("utf-8"))]);
    assert_eq!(topics(&by_default_file), topics(&by_new));
}

/// The client id of the first request `runnel args -b LISTENER` sends to a listener that
/// never answers.
fn client_id_sent(args: &[&str], env: &[(&str, &str)]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let address = listener.local_addr().expect("address").to_string();
    let mut child = isolated_runnel(args, env)
        .args(["-b", &address])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run runnel");
    let (mut stream, _) = listener.accept().expect("runnel connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    // Size, API key, version, correlation id, then the client id as an INT16-sized string.
    let mut head = [0u8; 14];
    stream.read_exact(&mut head).expect("a request header");
    let length = i16::from_be_bytes([head[12], head[13]]);
    let mut client_id = vec![0u8; usize::try_from(length).expect("a client id")];
    stream.read_exact(&mut client_id).expect("the client id");
    let _ = child.kill();
    let _ = child.wait();
    String::from_utf8(client_id).expect("utf-8")
}

#[test]
fn client_properties_reach_the_wire_over_the_profiles() {
    assert_eq!(
        client_id_sent(&["topic", "list", "-X", "client.id=from-flag"], &[]),
        "from-flag"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        "[profiles.ops]\n\"client.id\" = \"from-profile\"\nrequest.timeout.ms = 20000\n",
    )
    .expect("write config");
    let config = config.to_str().expect("utf-8 path");
    let profile = [("RUNNEL_PROFILE", "ops")];
    assert_eq!(
        client_id_sent(&["cluster", "info", "--config-file", config], &profile),
        "from-profile"
    );
    assert_eq!(
        client_id_sent(
            &[
                "cluster",
                "info",
                "--config-file",
                config,
                "-X",
                "client.id=flag-wins"
            ],
            &profile
        ),
        "flag-wins"
    );
}

#[test]
fn mistakes_in_flags_and_profiles_are_named() {
    let unknown = run(&["topic", "list", "-X", "acks=all"], &[]);
    assert_eq!(unknown.code, Some(2), "{unknown:?}");
    assert!(
        unknown.stderr.contains("unknown client property \"acks\""),
        "{unknown:?}"
    );
    // Under -f json, a command line clap refuses is one JSON object too.
    let unknown_json = run(&["topic", "list", "-f", "json", "-X", "acks=all"], &[]);
    assert_eq!(unknown_json.code, Some(2), "{unknown_json:?}");
    let error: Value = serde_json::from_str(&unknown_json.stderr)
        .unwrap_or_else(|error| panic!("stderr is not JSON ({error}): {unknown_json:?}"));
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|text| text.contains("unknown client property \"acks\"")),
        "{unknown_json:?}"
    );
    let bad_value = run(&["topic", "list", "-X", "request.timeout.ms=soon"], &[]);
    assert!(
        bad_value
            .stderr
            .contains("request.timeout.ms: \"soon\" is not a whole number"),
        "{bad_value:?}"
    );

    let missing = run(
        &[
            "topic",
            "list",
            "--config-file",
            "/nonexistent/cli.toml",
            "-f",
            "json",
        ],
        &[],
    );
    assert!(
        missing
            .json_error()
            .starts_with("cannot read the config file /nonexistent/cli.toml"),
        "{missing:?}"
    );
    // No default file is fine until a profile is asked for.
    let no_profile = run(&["topic", "list", "--profile", "prod"], &[]);
    assert_eq!(no_profile.code, Some(1));
    assert_eq!(
        no_profile.stderr,
        "runnel: error: no profile \"prod\": /nonexistent/runnel-test-config/runnel/cli.toml \
         does not exist\n"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("cli.toml");
    std::fs::write(&config, "[profiles.a]\nclient.idd = \"x\"\n[profiles.b]\n").expect("write");
    let config = config.to_str().expect("utf-8 path");
    let typo = run(
        &["group", "list", "--profile", "a", "-f", "json"],
        &[("RUNNEL_CLI_CONFIG", config)],
    );
    let error = typo.json_error();
    assert!(
        error.contains("profile \"a\": unknown client property \"client.idd\""),
        "{error}"
    );
    let unknown_profile = run(
        &["cluster", "health", "--profile", "c"],
        &[("RUNNEL_CLI_CONFIG", config)],
    );
    assert!(
        unknown_profile
            .stderr
            .contains("no profile \"c\" (it has a, b)"),
        "{unknown_profile:?}"
    );
}

#[test]
fn completions_and_man_pages_cover_every_command() {
    let bash = run(&["completions", "bash"], &[]);
    assert_eq!(bash.code, Some(0), "{bash:?}");
    assert!(bash.stdout.contains("topic"), "{}", bash.stdout);
    assert!(bash.stdout.contains("trim-prefix"));
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("runnel.bash");
    std::fs::write(&script, &bash.stdout).expect("write script");
    let syntax = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash");
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    for shell in ["zsh", "fish"] {
        let script = run(&["completions", shell], &[]);
        assert_eq!(script.code, Some(0), "{script:?}");
        assert!(script.stdout.contains("offset-delete"), "{shell}");
    }

    let pages = dir.path().join("man/man1");
    let made = run(&["man", "--dir", pages.to_str().expect("utf-8 path")], &[]);
    assert_eq!(made.code, Some(0), "{made:?}");
    for page in [
        "runnel.1",
        "runnel-topic.1",
        "runnel-topic-create.1",
        "runnel-topic-trim-prefix.1",
        "runnel-offsets.1",
        "runnel-group-offset-delete.1",
        "runnel-cluster-health.1",
    ] {
        let roff = std::fs::read_to_string(pages.join(page))
            .unwrap_or_else(|error| panic!("{page}: {error}"));
        assert!(roff.contains(".TH"), "{page}: {roff}");
    }
    let topic_page = read(&pages.join("runnel-topic-create.1"));
    assert!(topic_page.contains("bootstrap"), "{topic_page}");
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Polls `runnel cluster health -f json` until `done` accepts its answer.
fn health_until(broker: &str, done: impl Fn(&Output, &Value) -> bool) -> (Output, Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = run(&["cluster", "health", "-b", broker, "-f", "json"], &[]);
        let health = output.json();
        if done(&output, &health) {
            return (output, health);
        }
        assert!(
            Instant::now() < deadline,
            "cluster health never got there: {health:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A controller and two brokers; one broker is killed: its replicas' node is down, and the
/// command says so with exit code 1.
#[test]
fn a_killed_broker_makes_the_cluster_unhealthy() {
    let root = tempfile::tempdir().expect("temp dir");
    let controller_port = free_port();
    let quorum = format!("1@127.0.0.1:{controller_port}");
    let _controller = ControllerProcess::start(
        1,
        controller_port,
        &quorum,
        root.path(),
        &["--broker-session-timeout-ms", "1500"],
    );
    let broker_args = |id: &str| -> Vec<String> {
        [
            "--roles",
            "broker",
            "--node-id",
            id,
            "--controller-quorum",
            &quorum,
            "--broker-heartbeat-interval-ms",
            "250",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect()
    };
    let start = |id: &str| {
        let args = broker_args(id);
        BrokerProcess::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let survivor = start("2");
    let mut victim = start("3");
    let address = survivor.address();

    let both_up = |_: &Output, health: &Value| health["all_nodes"] == json!([2, 3]);
    health_until(&address, both_up);
    ok(
        &address,
        &["topic", "create", "replicated", "-p", "2", "-r", "2"],
    );
    let waited = ok_json(
        &address,
        &[
            "cluster",
            "health",
            "--exit-when-healthy",
            "--timeout",
            "30",
        ],
    );
    assert_eq!(waited["healthy"], true, "{waited:#}");

    victim.kill9();
    let (output, health) = health_until(&address, |_, health| health["nodes_down"] == json!([3]));
    assert_eq!(output.code, Some(1), "{output:?}");
    assert_eq!(output.stderr, "", "the report says it all");
    assert_eq!(health["healthy"], false, "{health:#}");
    assert!(
        health["unhealthy_reasons"]
            .as_array()
            .is_some_and(|reasons| reasons.contains(&json!("nodes_down"))),
        "{health:#}"
    );
    assert_eq!(health["all_nodes"], json!([2, 3]), "{health:#}");

    let table = run(&["cluster", "health", "-b", &address], &[]);
    assert_eq!(table.code, Some(1), "{table:?}");
    assert!(table.stdout.starts_with("Healthy:"), "{table:?}");
    assert!(
        table
            .stdout
            .lines()
            .next()
            .is_some_and(|line| line.ends_with("no")),
        "{table:?}"
    );
    assert!(table.stdout.contains("Nodes down:"), "{table:?}");

    // kcat sees the same: broker 3 gone from the metadata, still named as a replica.
    let metadata: Value =
        serde_json::from_str(&kcat(&["-b", &address, "-L", "-J", "-t", "replicated"]))
            .expect("kcat -L -J");
    assert_eq!(
        metadata["brokers"].as_array().map(Vec::len),
        Some(1),
        "{metadata:#}"
    );

    let gave_up = run(
        &[
            "cluster",
            "health",
            "-b",
            &address,
            "--exit-when-healthy",
            "--timeout",
            "1",
        ],
        &[],
    );
    assert_eq!(gave_up.code, Some(1), "{gave_up:?}");
}
