//! `runnel produce` and `runnel consume` round trip against the real broker binary, with kcat
//! as the reference where it does the same thing: offset and time ranges, tails, several
//! topics and patterns, keys, nulls, headers, delimiters, binary records, input templates
//! and delivery reports. kcat must be installed (scripts/test.sh installs it): a test that
//! cannot compare fails rather than passes unchecked.
//!
//! The tests share one broker while any of them runs (each uses its own topics), so that the
//! file costs one broker start, not one a test.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use runnel_testkit::{run_command, CommandRun};
use serde_json::Value;
use support::BrokerProcess;

/// Longest any one command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The broker the running tests share; stopped when the last of them drops it.
fn broker() -> Arc<BrokerProcess> {
    static SHARED: Mutex<Weak<BrokerProcess>> = Mutex::new(Weak::new());
    let mut shared = SHARED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(broker) = shared.upgrade() {
        return broker;
    }
    let broker = Arc::new(BrokerProcess::start(&[
        "--group-initial-rebalance-delay-ms",
        "0",
        "--auto-create-topics",
        "false",
    ]));
    *shared = Arc::downgrade(&broker);
    broker
}

/// Runs `program` with `args`, feeding `stdin`.
fn run(program: &str, args: &[&str], stdin: &[u8]) -> CommandRun {
    let mut command = Command::new(program);
    command.args(args);
    run_command(command, Some(stdin), COMMAND_TIMEOUT)
}

fn runnel_run(broker: &BrokerProcess, args: &[&str], stdin: &[u8]) -> CommandRun {
    let address = broker.address();
    let mut args = args.to_vec();
    args.extend(["--bootstrap", &address]);
    run(env!("CARGO_BIN_EXE_runnel"), &args, stdin)
}

/// `runnel args`, which must succeed; its stdout.
fn runnel(broker: &BrokerProcess, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let output = runnel_run(broker, args, stdin);
    assert!(
        output.success(),
        "runnel {args:?} failed:\n{}\n{}",
        output.stderr,
        String::from_utf8_lossy(&output.stdout)
    );
    output.stdout
}

/// `runnel args`, which must fail; its stderr.
fn runnel_fails(broker: &BrokerProcess, args: &[&str], stdin: &[u8]) -> String {
    let output = runnel_run(broker, args, stdin);
    assert!(!output.success(), "runnel {args:?} succeeded");
    output.stderr
}

/// `kcat -b BROKER -q args`, which must succeed; its stdout.
fn kcat(broker: &BrokerProcess, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let address = broker.address();
    let mut all = vec!["-b", &address, "-q"];
    all.extend(args);
    let output = run("kcat", &all, stdin);
    assert!(output.success(), "kcat {all:?} failed:\n{}", output.stderr);
    output.stdout
}

/// Asserts kcat prints what we printed.
fn same_as_kcat(broker: &BrokerProcess, ours: &[u8], kcat_args: &[&str]) {
    let theirs = kcat(broker, kcat_args, b"");
    assert_eq!(text(ours), text(&theirs), "ours, then kcat {kcat_args:?}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The lines, sorted: records of several partitions come in no fixed order.
fn sorted(bytes: &[u8]) -> Vec<String> {
    let mut lines: Vec<String> = text(bytes).lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

fn create(broker: &BrokerProcess, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let created = support::create_topic(broker, topic, partitions, configs);
    assert_eq!(created.topics[0].error_code, 0, "create {topic}");
}

/// `0 k0 v0\n1 k1 v1\n...` up to `count` - 1, as records with keys.
fn keyed_lines(count: usize) -> String {
    (0..count).map(|i| format!("k{i} v{i}\n")).collect()
}

#[test]
fn offset_ranges_and_tails_match_kcat() {
    let broker = broker();
    create(&broker, "ranges", 1, &[]);
    runnel(
        &broker,
        &["produce", "ranges", "-K", " "],
        keyed_lines(20).as_bytes(),
    );
    let format = "%o %k %s\\n";

    let range = runnel(
        &broker,
        &["consume", "ranges", "-o", "10:15", "-f", format],
        b"",
    );
    assert_eq!(
        text(&range),
        "10 k10 v10\n11 k11 v11\n12 k12 v12\n13 k13 v13\n14 k14 v14\n",
        "the end is exclusive"
    );
    let flags = runnel(
        &broker,
        &[
            "consume",
            "ranges",
            "-o",
            "+2",
            "--end-offset",
            "5",
            "-f",
            "%o\\n",
        ],
        b"",
    );
    assert_eq!(text(&flags), "2\n3\n4\n");
    let until = runnel(
        &broker,
        &["consume", "ranges", "-o", ":3", "-f", "%o\\n"],
        b"",
    );
    assert_eq!(text(&until), "", "the default start is the end");
    let head = runnel(
        &broker,
        &["consume", "ranges", "-o", "beginning:3", "-f", "%o\\n"],
        b"",
    );
    assert_eq!(text(&head), "0\n1\n2\n");
    let empty = runnel(&broker, &["consume", "ranges", "-o", "5:5"], b"");
    assert_eq!(text(&empty), "");

    for (ours, theirs) in [
        (&["-o", "-3", "-e"][..], &["-o", "-3", "-e"][..]),
        (&["-o", "-3:end"], &["-o", "-3", "-e"]),
        (&["-o", "-100", "-e"], &["-o", "-100", "-e"]),
        (&["-o", "beginning", "-e"], &["-o", "beginning", "-e"]),
        (&["-o", "18", "-e"], &["-o", "18", "-e"]),
        (&["-o", "5", "-c", "2"], &["-o", "5", "-c", "2"]),
    ] {
        let mut args = vec!["consume", "ranges", "-f", format];
        args.extend(ours);
        let printed = runnel(&broker, &args, b"");
        let mut kcat_args = vec!["-C", "-t", "ranges", "-f", format];
        kcat_args.extend(theirs);
        same_as_kcat(&broker, &printed, &kcat_args);
    }

    // Tails are per partition.
    create(&broker, "ranges3", 3, &[]);
    for partition in 0..3 {
        let lines = keyed_lines(2 * partition + 1);
        let p = partition.to_string();
        runnel(&broker, &["produce", "ranges3", "-p", &p], lines.as_bytes());
    }
    let tails = runnel(
        &broker,
        &["consume", "ranges3", "-o", "-2", "-e", "-f", "%p %o %s\\n"],
        b"",
    );
    assert_eq!(
        sorted(&tails),
        [
            "0 0 k0 v0",
            "1 1 k1 v1",
            "1 2 k2 v2",
            "2 3 k3 v3",
            "2 4 k4 v4"
        ]
    );
    let theirs = kcat(
        &broker,
        &["-C", "-t", "ranges3", "-o", "-2", "-e", "-f", "%p %o %s\\n"],
        b"",
    );
    assert_eq!(sorted(&tails), sorted(&theirs));

    let one = runnel(
        &broker,
        &[
            "consume", "ranges3", "-p", "2", "-o", "1:3", "-f", "%p %o\\n",
        ],
        b"",
    );
    assert_eq!(text(&one), "2 1\n2 2\n");

    for (args, complaint) in [
        (&["-o", "20:10"][..], "before it starts"),
        (&["-o", "10:x"], "\"x\" is not an end"),
        (&["-o", "1:2", "-e"], "give one end"),
        (&["-o", ":end", "--end-offset", "3"], "give one end"),
        (&["-o", "s@1", "-o", "@2"], "two starts"),
    ] {
        let mut all = vec!["consume", "ranges"];
        all.extend(args);
        let stderr = runnel_fails(&broker, &all, b"");
        assert!(stderr.contains(complaint), "{args:?}: {stderr}");
    }
}

/// 2024-01-01T00:00:00Z: records are stamped a second apart from it.
const T0: i64 = 1_704_067_200_000;

#[test]
fn time_ranges_in_every_syntax_match_kcat() {
    let broker = broker();
    // Records stamped in 2024 must outlive retention for the length of the test.
    create(&broker, "stamped", 1, &[("retention.ms", "-1")]);
    let input: String = (0..10)
        .map(|i| format!("{} v{i}\n", T0 + i * 1000))
        .collect();
    runnel(
        &broker,
        &["produce", "stamped", "-f", "%T %v\\n"],
        input.as_bytes(),
    );
    let stamps = runnel(
        &broker,
        &["consume", "stamped", "-o", "beginning", "-e", "-f", "%T\\n"],
        b"",
    );
    assert!(text(&stamps).starts_with(&format!("{T0}\n{}\n", T0 + 1000)));

    let (t2, t5) = ((T0 + 2000).to_string(), (T0 + 5000).to_string());
    let expected = "2 v2\n3 v3\n4 v4\n";
    for range in [
        format!("@{t2}:@{t5}"),
        format!("@{t2}:{t5}"),
        "@2024-01-01T00:00:02Z:@2024-01-01T00:00:05Z".to_owned(),
        "@2024-01-01T00:00:02Z:2024-01-01T00:00:04.5Z".to_owned(),
        "@2024-01-01T01:00:02+01:00:@2024-01-01T00:00:05Z".to_owned(),
    ] {
        let printed = runnel(
            &broker,
            &["consume", "stamped", "-o", &range, "-f", "%o %s\\n"],
            b"",
        );
        assert_eq!(text(&printed), expected, "-o {range}");
    }
    let kcat_style = runnel(
        &broker,
        &[
            "consume",
            "stamped",
            "-o",
            &format!("s@{t2}"),
            "-o",
            &format!("e@{t5}"),
            "-f",
            "%o %s\\n",
        ],
        b"",
    );
    assert_eq!(text(&kcat_style), expected);
    same_as_kcat(
        &broker,
        &kcat_style,
        &[
            "-C",
            "-t",
            "stamped",
            "-o",
            &format!("s@{t2}"),
            "-o",
            &format!("e@{t5}"),
            "-f",
            "%o %s\\n",
        ],
    );
    let end_time = runnel(
        &broker,
        &[
            "consume",
            "stamped",
            "-o",
            "8",
            "--end-time",
            "2025-01-01T00:00:00Z",
            "-f",
            "%o\\n",
        ],
        b"",
    );
    assert_eq!(
        text(&end_time),
        "8\n9\n",
        "a past time after every record: the end"
    );
    let before = runnel(
        &broker,
        &[
            "consume",
            "stamped",
            "-o",
            "beginning",
            "--end-time",
            &t2,
            "-f",
            "%o\\n",
        ],
        b"",
    );
    assert_eq!(text(&before), "0\n1\n");

    // Relative times: these records are 2024's, older than an hour.
    let last_hour = runnel(&broker, &["consume", "stamped", "-o", "@-1h", "-e"], b"");
    assert_eq!(text(&last_hour), "");
    let older = runnel(
        &broker,
        &[
            "consume",
            "stamped",
            "-o",
            "@2023-12-31:@-1h",
            "-f",
            "%o\\n",
        ],
        b"",
    );
    assert_eq!(text(&older).lines().count(), 10);
}

#[test]
fn an_end_time_still_to_come_waits_for_the_clock() {
    let broker = broker();
    create(&broker, "live", 1, &[]);
    runnel(&broker, &["produce", "live"], b"a\nb\nc\n");
    // Stamped now: within the last hour, and none before an hour ago.
    let recent = runnel(&broker, &["consume", "live", "-o", "@-1h", "-e"], b"");
    assert_eq!(text(&recent), "a\nb\nc\n");
    let old = runnel(&broker, &["consume", "live", "-o", "@-2h:@-1h"], b"");
    assert_eq!(
        text(&old),
        "",
        "a past range with nothing in it ends at once"
    );

    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let started = Instant::now();
    let until = (now_ms + 1500).to_string();
    let waited = runnel(
        &broker,
        &["consume", "live", "-o", "beginning", "--end-time", &until],
        b"",
    );
    assert_eq!(text(&waited), "a\nb\nc\n");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "read until the time came: {:?}",
        started.elapsed()
    );
}

#[test]
fn several_topics_and_patterns_with_and_without_a_group() {
    let broker = broker();
    for topic in ["orders.eu", "orders.us", "payments"] {
        create(&broker, topic, 2, &[]);
        let lines = format!("{topic}-a\n{topic}-b\n");
        runnel(&broker, &["produce", topic], lines.as_bytes());
    }
    let both = ["orders.eu orders.eu-a", "orders.eu orders.eu-b"];
    let named = runnel(
        &broker,
        &[
            "consume",
            "orders.eu",
            "payments",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%t %s\\n",
        ],
        b"",
    );
    assert_eq!(
        sorted(&named),
        [
            both[0],
            both[1],
            "payments payments-a",
            "payments payments-b"
        ]
    );
    let theirs = kcat(
        &broker,
        &[
            "-C",
            "-t",
            "orders.eu",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%t %s\\n",
        ],
        b"",
    );
    let ours = runnel(
        &broker,
        &[
            "consume",
            "orders.eu",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%t %s\\n",
        ],
        b"",
    );
    assert_eq!(sorted(&ours), sorted(&theirs));

    let orders = [
        "orders.eu orders.eu-a",
        "orders.eu orders.eu-b",
        "orders.us orders.us-a",
        "orders.us orders.us-b",
    ];
    for flag in ["-r", "--regex"] {
        let matched = runnel(
            &broker,
            &[
                "consume",
                flag,
                "orders\\..*",
                "-o",
                "beginning",
                "-e",
                "-f",
                "%t %s\\n",
            ],
            b"",
        );
        assert_eq!(sorted(&matched), orders, "{flag}");
    }
    let two_patterns = runnel(
        &broker,
        &[
            "consume",
            "-r",
            "orders\\.e.*",
            "pay.*",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%t\\n",
        ],
        b"",
    );
    assert_eq!(
        sorted(&two_patterns),
        ["orders.eu", "orders.eu", "payments", "payments"]
    );
    let none = runnel_fails(&broker, &["consume", "-r", "nothing.*", "-e"], b"");
    assert!(none.contains("no topic matches"), "{none}");

    // A group reads the pattern's topics once, and commits what it printed.
    let grouped = runnel(
        &broker,
        &[
            "consume",
            "-r",
            "orders\\..*",
            "-g",
            "g-orders",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%t %s\\n",
        ],
        b"",
    );
    assert_eq!(sorted(&grouped), orders);
    // To the partition the group printed nothing of: it committed its end all the same.
    runnel(
        &broker,
        &["produce", "orders.us", "-p", "0"],
        b"orders.us-c\n",
    );
    let rest = runnel(
        &broker,
        &[
            "consume",
            "-r",
            "orders\\..*",
            "-g",
            "g-orders",
            "-e",
            "-f",
            "%t %s\\n",
        ],
        b"",
    );
    assert_eq!(text(&rest), "orders.us orders.us-c\n");
    let named_group = runnel(
        &broker,
        &[
            "consume",
            "orders.eu",
            "payments",
            "-g",
            "g-named",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%t\\n",
        ],
        b"",
    );
    assert_eq!(
        sorted(&named_group),
        ["orders.eu", "orders.eu", "payments", "payments"]
    );
    let refused = runnel_fails(
        &broker,
        &["consume", "orders.eu", "-g", "g-named", "-o", "-1"],
        b"",
    );
    assert!(refused.contains("with --group"), "{refused}");
}

/// Produces `input` with `args` twice, by us into `ours` and by kcat -P into `theirs`
/// (1-partition topics), and asserts kcat reads both back alike with `format`.
fn produce_like_kcat(
    broker: &BrokerProcess,
    topics: (&str, &str),
    ours: &[&str],
    theirs: &[&str],
    input: &[u8],
    format: &str,
) -> Vec<u8> {
    let (our_topic, their_topic) = topics;
    create(broker, our_topic, 1, &[]);
    let mut args = vec!["produce", our_topic];
    args.extend(ours);
    runnel(broker, &args, input);
    let consumed = runnel(
        broker,
        &["consume", our_topic, "-o", "beginning", "-e", "-f", format],
        b"",
    );
    create(broker, their_topic, 1, &[]);
    let mut kcat_args = vec!["-P", "-t", their_topic];
    kcat_args.extend(theirs);
    kcat(broker, &kcat_args, input);
    same_as_kcat(
        broker,
        &consumed,
        &[
            "-C",
            "-t",
            their_topic,
            "-o",
            "beginning",
            "-e",
            "-f",
            format,
        ],
    );

    consumed
}

#[test]
fn produce_keys_nulls_and_headers_as_kcat_does() {
    let broker = broker();
    let format = "%K %S [%k] [%s] [%h]\\n";
    let keyed = produce_like_kcat(
        &broker,
        ("keys-ours", "keys-kcat"),
        &["-K", ":"],
        &["-K", ":"],
        b"k1:a\n:b\nno separator\nk2:c:d\n",
        format,
    );
    assert_eq!(
        text(&keyed),
        "2 1 [k1] [a] []\n0 1 [] [b] []\n-1 12 [] [no separator] []\n2 3 [k2] [c:d] []\n"
    );
    // -Z: empty keys and values are null; a null value is a tombstone.
    let nulls = produce_like_kcat(
        &broker,
        ("nulls-ours", "nulls-kcat"),
        &["-K", ":", "-Z"],
        &["-K", ":", "-Z"],
        b"k1:\n:v\nx:y\n",
        format,
    );
    assert_eq!(
        text(&nulls),
        "2 -1 [k1] [] []\n-1 1 [] [v] []\n1 1 [x] [y] []\n"
    );
    let null_text = runnel(
        &broker,
        &[
            "consume",
            "nulls-ours",
            "-o",
            "beginning",
            "-e",
            "-Z",
            "-f",
            "[%k] [%s]\\n",
        ],
        b"",
    );
    assert_eq!(text(&null_text), "[k1] [NULL]\n[NULL] [v]\n[x] [y]\n");
    let json = runnel(
        &broker,
        &[
            "consume",
            "nulls-ours",
            "-o",
            "beginning",
            "-e",
            "-f",
            "json",
        ],
        b"",
    );
    let first: Value =
        serde_json::from_str(text(&json).lines().next().expect("a record")).expect("JSON");
    assert_eq!(first["key"], "k1");
    assert!(first["value"].is_null(), "{first}");

    let fixed = produce_like_kcat(
        &broker,
        ("fixed-ours", "fixed-kcat"),
        &["-k", "same", "-K", "\\t", "-H", "a=1", "-H", "b=2"],
        &["-k", "same", "-K", "\\t", "-H", "a=1", "-H", "b=2"],
        b"own\tx\ny\n",
        format,
    );
    assert_eq!(
        text(&fixed),
        "3 1 [own] [x] [a=1,b=2]\n4 1 [same] [y] [a=1,b=2]\n"
    );

    create(&broker, "parted", 2, &[]);
    runnel(&broker, &["produce", "parted", "-p", "1"], b"p\n");
    let placed = runnel(
        &broker,
        &[
            "consume",
            "parted",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%p %s\\n",
        ],
        b"",
    );
    assert_eq!(text(&placed), "1 p\n");
}

/// Standard base64 decoding, for the JSON form's binary fields.
fn from_base64(text: &str) -> Vec<u8> {
    let sextet = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {text}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(sextet).collect();
    let mut bytes = Vec::new();
    for chunk in digits.chunks(4) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |group, (i, &d)| group | u32::from(d) << (18 - 6 * i));
        bytes.extend(&group.to_be_bytes()[1..chunk.len()]);
    }
    bytes
}

#[test]
fn custom_delimiters_and_json_keep_binary_records_whole() {
    let broker = broker();
    // Records with newlines and bytes that are not UTF-8, cut at NUL.
    let records: [&[u8]; 3] = [b"a\xffb\nline two", b"k|v", b"\x80"];
    let printed: Vec<u8> = records
        .iter()
        .flat_map(|r| r.iter().chain(b"|"))
        .copied()
        .collect();
    // kcat cannot split at NUL (its -D is a C string): compared at \x1e.
    let input: Vec<u8> = records.join(&b"\x1e"[..]);
    let ours = produce_like_kcat(
        &broker,
        ("binary-ours", "binary-kcat"),
        &["-D", "\\x1e"],
        &["-D", "\\x1e"],
        &input,
        "%s|",
    );
    assert_eq!(ours, printed);
    create(&broker, "binary-nul", 1, &[]);
    runnel(
        &broker,
        &["produce", "binary-nul", "-D", "\\x00"],
        &records.join(&b"\0"[..]),
    );
    let nul = runnel(
        &broker,
        &[
            "consume",
            "binary-nul",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%s|",
        ],
        b"",
    );
    assert_eq!(nul, printed);

    let json = runnel(
        &broker,
        &[
            "consume",
            "binary-ours",
            "-o",
            "beginning",
            "-e",
            "-f",
            "json",
        ],
        b"",
    );
    let values: Vec<Vec<u8>> = text(&json)
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).expect("JSON");
            let value = record["value"].as_str().expect("a value");
            match record.get("value_encoding") {
                Some(encoding) => {
                    assert_eq!(encoding, "base64");
                    from_base64(value)
                }
                None => value.as_bytes().to_vec(),
            }
        })
        .collect();
    assert_eq!(values, records);
    assert!(
        text(&json)
            .lines()
            .nth(1)
            .is_some_and(|line| !line.contains("encoding")),
        "UTF-8 stays text: {}",
        text(&json)
    );

    create(&broker, "piped", 1, &[]);
    runnel(&broker, &["produce", "piped", "-D", "|"], b"x|1|y");
    let piped = runnel(
        &broker,
        &["consume", "piped", "-o", "beginning", "-e", "-f", "%s\\x00"],
        b"",
    );
    assert_eq!(piped, b"x\x001\x00y\x00");
}

#[test]
fn input_templates_and_delivery_reports() {
    let broker = broker();
    create(&broker, "templated", 1, &[("retention.ms", "-1")]);
    let delivered = runnel(
        &broker,
        &[
            "produce",
            "templated",
            "-f",
            "%T,%h,%k,%v\\n",
            "--print-delivery",
        ],
        format!("{T0},a=1,k1,v1\n{},,k2,v,2\n", T0 + 1).as_bytes(),
    );
    assert_eq!(text(&delivered), "templated 0 0\ntemplated 0 1\n");
    let read = runnel(
        &broker,
        &[
            "consume",
            "templated",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%T %k %s [%h]\\n",
        ],
        b"",
    );
    assert_eq!(
        text(&read),
        format!("{T0} k1 v1 [a=1]\n{} k2 v,2 []\n", T0 + 1)
    );
    let theirs = kcat(
        &broker,
        &[
            "-C",
            "-t",
            "templated",
            "-o",
            "beginning",
            "-e",
            "-f",
            "%T %k %s [%h]\\n",
        ],
        b"",
    );
    assert_eq!(text(&read), text(&theirs));

    // Delivery reports in input order, as a template or JSON.
    let input: String = (0..50).map(|i| format!("k{i} v{i}\n")).collect();
    let reports = runnel(
        &broker,
        &[
            "produce",
            "templated",
            "-f",
            "%k %v\\n",
            "--print-delivery=%o %k=%v\\n",
        ],
        input.as_bytes(),
    );
    let expected: String = (0..50).map(|i| format!("{} k{i}=v{i}\n", i + 2)).collect();
    assert_eq!(text(&reports), expected);
    let json = runnel(
        &broker,
        &[
            "produce",
            "templated",
            "-k",
            "fixed",
            "--print-delivery=json",
        ],
        b"one\n",
    );
    let report: Value = serde_json::from_slice(&json).expect("one JSON object");
    assert_eq!(report["topic"], "templated");
    assert_eq!(report["partition"], 0);
    assert_eq!(report["offset"], 52);
    assert_eq!(report["key"], "fixed");
    assert_eq!(report["value"], "one");

    for (args, complaint) in [
        (&["-f", "%k%v\\n"][..], "two fields touch"),
        (&["-f", "%k %v"], "must end with"),
        (&["-f", "%k %v\\n", "-k", "x"], "--key"),
        (&["-D", "\\q"], "--delimiter"),
    ] {
        let mut all = vec!["produce", "templated"];
        all.extend(args);
        let stderr = runnel_fails(&broker, &all, b"");
        assert!(stderr.contains(complaint), "{args:?}: {stderr}");
    }
    let mismatch = runnel_fails(
        &broker,
        &["produce", "templated", "-f", "%k %v\\n"],
        b"a b\nc\n",
    );
    assert!(mismatch.contains("record 2"), "{mismatch}");
}
