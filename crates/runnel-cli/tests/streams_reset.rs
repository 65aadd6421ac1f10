//! `runnel streams reset` against the real broker binary: an application's committed input
//! offsets, internal topics (a changelog and a repartition topic) and local state set up as a
//! Streams runtime leaves them, next to a topic of the same prefix that is not internal; then
//! reset, dry run, and refused while a consumer is in the application's group, each read back
//! through the command line's JSON.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::BrokerProcess;

const APP: &str = "wc";
const INPUT: &str = "lines";
const CHANGELOG: &str = "wc-counts-changelog";
const REPARTITION: &str = "wc-KSTREAM-x-repartition";
const UNRELATED: &str = "wc-other";

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

fn runnel(broker: &BrokerProcess, args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_runnel"))
        .args(args)
        .env("RUNNEL_BROKERS", broker.address())
        .stdin(Stdio::null())
        .output()
        .expect("run runnel");
    Output {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn runnel_ok(broker: &BrokerProcess, args: &[&str]) -> Output {
    let output = runnel(broker, args);
    assert!(
        output.success,
        "runnel {args:?} failed:\n{}\n{}",
        output.stderr, output.stdout
    );
    output
}

fn runnel_json(broker: &BrokerProcess, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["--format", "json"]);
    let stdout = runnel_ok(broker, &args).stdout;
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("runnel {args:?} printed no JSON ({error}):\n{stdout}"))
}

/// The topics' names, `__consumer_offsets` aside.
fn topics(broker: &BrokerProcess) -> Vec<String> {
    runnel_json(broker, &["topic", "list"])["topics"]
        .as_array()
        .expect("topics array")
        .iter()
        .map(|topic| topic["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The group's committed offsets, as `topic-partition=offset`.
fn committed(broker: &BrokerProcess) -> Vec<String> {
    let described = runnel_json(broker, &["group", "describe", APP]);
    described["partitions"]
        .as_array()
        .expect("partitions array")
        .iter()
        .filter(|p| !p["committed_offset"].is_null())
        .map(|p| {
            format!(
                "{}-{}={}",
                p["topic"].as_str().expect("topic"),
                p["partition"],
                p["committed_offset"]
            )
        })
        .collect()
}

/// What a Streams application `wc` that counted words from `lines` leaves behind: committed
/// offsets at the end of `lines` (3 and 2 records) and of its repartition topic (4 records),
/// its changelog, an unrelated `wc-other`, and its local state under `state/wc` beside
/// another application's.
fn application_left_behind(broker: &BrokerProcess, state: &Path) {
    for (topic, partitions) in [(INPUT, 2), (CHANGELOG, 1), (REPARTITION, 1), (UNRELATED, 1)] {
        let created = support::create_topic(broker, topic, partitions, &[]);
        assert_eq!(created.topics[0].error_code, 0, "create {topic}");
    }
    let answers = support::produce_to(
        broker,
        9,
        INPUT,
        vec![
            (0, support::batch(&[b"a b", b"b c", b"c d"])),
            (1, support::batch(&[b"d e", b"e f"])),
        ],
    );
    assert!(answers.iter().all(|answer| answer.error_code == 0));
    let answer = support::produce(
        broker,
        9,
        REPARTITION,
        support::batch(&[b"a", b"b", b"b", b"c"]),
    );
    assert_eq!(answer.error_code, 0);
    for topic in [INPUT, REPARTITION] {
        runnel_ok(
            broker,
            &[
                "group",
                "reset-offsets",
                APP,
                "--topic",
                topic,
                "--to-latest",
            ],
        );
    }
    std::fs::create_dir_all(state.join("wc/0_0")).expect("state dir");
    std::fs::write(state.join("wc/0_0/counts"), b"a=1").expect("state file");
    std::fs::create_dir_all(state.join("other-app")).expect("other state dir");
}

const BEFORE: [&str; 3] = ["lines-0=3", "lines-1=2", "wc-KSTREAM-x-repartition-0=4"];

fn assert_unchanged(broker: &BrokerProcess, state: &Path) {
    assert_eq!(committed(broker), BEFORE);
    let topics = topics(broker);
    for topic in [INPUT, CHANGELOG, REPARTITION, UNRELATED] {
        assert!(topics.iter().any(|t| t == topic), "{topic} in {topics:?}");
    }
    assert!(state.join("wc/0_0/counts").is_file());
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
fn reset_rewinds_input_deletes_internal_topics_and_local_state() {
    let broker = start_broker();
    let state = tempfile::tempdir().expect("temp dir");
    let state_dir = state.path().to_str().expect("UTF-8 temp dir");
    application_left_behind(&broker, state.path());
    assert_eq!(committed(&broker), BEFORE);

    let report = runnel_json(
        &broker,
        &[
            "streams",
            "reset",
            "--application-id",
            APP,
            "--state-dir",
            state_dir,
        ],
    );
    assert_eq!(
        report,
        json!({
            "application_id": APP,
            "dry_run": false,
            "input_offsets": [
                {"topic": INPUT, "partition": 0, "current_offset": 3, "new_offset": 0},
                {"topic": INPUT, "partition": 1, "current_offset": 2, "new_offset": 0},
            ],
            "deleted_internal_topics": [REPARTITION, CHANGELOG],
            "deleted_internal_offsets": [{"topic": REPARTITION, "partition": 0}],
            "state_dir": state.path().join(APP).display().to_string(),
            "state_dir_removed": true,
        })
    );

    assert_eq!(
        committed(&broker),
        ["lines-0=0", "lines-1=0"],
        "input at the earliest offsets, nothing left on the repartition topic"
    );
    // Deletion goes through the metadata log; wait for the broker's metadata to show it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = topics(&broker);
    while left.iter().any(|t| t == CHANGELOG || t == REPARTITION) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        left = topics(&broker);
    }
    assert_eq!(left, [INPUT, UNRELATED]);
    assert!(!state.path().join(APP).exists(), "the local state is gone");
    assert!(
        state.path().join("other-app").is_dir(),
        "another application's state stays"
    );

    // Nothing left to delete: a second reset only rewinds again, and says so.
    let again = runnel_ok(
        &broker,
        &[
            "streams",
            "reset",
            "--application-id",
            APP,
            "--state-dir",
            state_dir,
        ],
    );
    assert_eq!(
        again.stdout,
        format!(
            "\
TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET
lines  0          0               0
lines  1          0               0

No internal topics.
No local state at {}
",
            state.path().join(APP).display()
        )
    );
}

#[test]
fn dry_run_changes_nothing() {
    let broker = start_broker();
    let state = tempfile::tempdir().expect("temp dir");
    application_left_behind(&broker, state.path());

    let output = runnel_ok(
        &broker,
        &[
            "streams",
            "reset",
            "--application-id",
            APP,
            "--input-topics",
            INPUT,
            "--state-dir",
            state.path().to_str().expect("UTF-8 temp dir"),
            "--dry-run",
        ],
    );
    assert_eq!(
        output.stdout,
        format!(
            "\
TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET
lines  0          3               0
lines  1          2               0

Would delete internal topics: {REPARTITION}, {CHANGELOG}
Would delete committed offsets on internal topics: {REPARTITION}-0
Would remove local state {}
",
            state.path().join(APP).display()
        )
    );
    assert!(output.stderr.contains("Dry run"), "{}", output.stderr);
    assert_unchanged(&broker, state.path());
}

/// A `runnel consume --group` process, killed on drop.
struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn refused_while_the_application_runs() {
    let broker = start_broker();
    let state = tempfile::tempdir().expect("temp dir");
    application_left_behind(&broker, state.path());

    let mut member = Member(
        Command::new(env!("CARGO_BIN_EXE_runnel"))
            .args(["consume", INPUT, "--group", APP])
            .env("RUNNEL_BROKERS", broker.address())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start runnel consume"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let described = runnel_json(&broker, &["group", "describe", APP]);
        if described["members"]
            .as_array()
            .is_some_and(|m| m.len() == 1)
        {
            break;
        }
        assert!(
            member.0.try_wait().expect("consumer status").is_none(),
            "runnel consume exited"
        );
        assert!(
            Instant::now() < deadline,
            "the consumer never joined: {described:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let output = runnel(
        &broker,
        &[
            "streams",
            "reset",
            "--application-id",
            APP,
            "--state-dir",
            state.path().to_str().expect("UTF-8 temp dir"),
        ],
    );
    assert!(!output.success, "{}", output.stdout);
    // Refused before anything is tried, in one line naming the group and its members.
    assert!(
        output
            .stderr
            .starts_with("runnel: error: group \"wc\" has 1 active member(s) (state "),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .trim_end()
            .ends_with("stop every instance of application \"wc\" before resetting it"),
        "{}",
        output.stderr
    );
    assert_eq!(output.stdout, "", "no report");
    assert_unchanged(&broker, state.path());
}
