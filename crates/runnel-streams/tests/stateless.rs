//! Every stateless operator of the DSL, run by the test driver without a broker.

use runnel_streams::{
    BytesSerde, Consumed, I64Serde, JsonSerde, KStream, Nullable, OutputRecord, Predicate,
    Produced, Repartitioned, StreamsBuilder, StreamsError, StringSerde, TestInputTopic,
    TestOutputTopic, TopologyTestDriver,
};

fn strings() -> Consumed<String, String> {
    Consumed::with(StringSerde, StringSerde)
}

fn to_strings() -> Produced<String, String> {
    Produced::with(StringSerde, StringSerde)
}

fn input() -> TestInputTopic<String, String> {
    TestInputTopic::new("in", StringSerde, StringSerde)
}

fn output(name: &str) -> TestOutputTopic<String, String> {
    TestOutputTopic::new(name, StringSerde, StringSerde)
}

/// Builds a topology from `describe` over the stream of topic "in", pipes `records`
/// (key, value, timestamp) through it, and returns what topic "out" got.
fn run(
    describe: impl FnOnce(KStream<String, String>),
    records: &[(&str, &str, i64)],
) -> Vec<OutputRecord<String, String>> {
    let builder = StreamsBuilder::new();
    describe(builder.stream("in", strings()));
    let topology = builder.build().expect("valid");
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    for &(key, value, timestamp) in records {
        driver
            .pipe_input(&input(), key.to_owned(), value.to_owned(), timestamp)
            .expect("piped");
    }
    driver.read_all_output(&output("out")).expect("readable")
}

fn pairs(records: &[OutputRecord<String, String>]) -> Vec<(&str, &str)> {
    records
        .iter()
        .map(|record| (record.key.as_str(), record.value.as_str()))
        .collect()
}

const RECORDS: &[(&str, &str, i64)] = &[("a", "1", 10), ("b", "22", 20), ("c", "333", 15)];

#[test]
fn filter_and_filter_not_keep_what_they_should() {
    let kept = run(
        |stream| {
            stream
                .filter(|_, value| value.len() > 1)
                .to("out", to_strings())
        },
        RECORDS,
    );
    assert_eq!(pairs(&kept), [("b", "22"), ("c", "333")]);
    let kept = run(
        |stream| {
            stream
                .filter_not(|key, _| key == "b")
                .to("out", to_strings())
        },
        RECORDS,
    );
    assert_eq!(pairs(&kept), [("a", "1"), ("c", "333")]);
}

#[test]
fn map_and_map_values_keep_timestamps() {
    let mapped = run(
        |stream| {
            stream
                .map(|key, value| (value, key))
                .map_values(|value| value.to_uppercase())
                .to("out", to_strings())
        },
        RECORDS,
    );
    assert_eq!(pairs(&mapped), [("1", "A"), ("22", "B"), ("333", "C")]);
    let timestamps: Vec<i64> = mapped.iter().map(|record| record.timestamp).collect();
    assert_eq!(
        timestamps,
        [10, 20, 15],
        "record timestamps, not stream time"
    );
}

#[test]
fn select_key_keeps_the_value() {
    let rekeyed = run(
        |stream| {
            stream
                .select_key(|key, value| format!("{key}{}", value.len()))
                .to("out", to_strings())
        },
        RECORDS,
    );
    assert_eq!(pairs(&rekeyed), [("a1", "1"), ("b2", "22"), ("c3", "333")]);
}

#[test]
fn flat_map_and_flat_map_values_fan_out_in_order() {
    let split = run(
        |stream| {
            stream
                .flat_map_values(|value: String| {
                    value.chars().map(String::from).collect::<Vec<_>>()
                })
                .to("out", to_strings())
        },
        &[("k", "xy", 1), ("l", "", 2), ("m", "z", 3)],
    );
    assert_eq!(pairs(&split), [("k", "x"), ("k", "y"), ("m", "z")]);
    let split = run(
        |stream| {
            stream
                .flat_map(|key, value| vec![(key.clone(), value.clone()), (value, key)])
                .to("out", to_strings())
        },
        &[("k", "v", 1)],
    );
    assert_eq!(pairs(&split), [("k", "v"), ("v", "k")]);
}

#[test]
fn peek_sees_every_record_and_changes_none() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let passed = run(
        move |stream| {
            stream
                .peek(move |key, _| log.lock().expect("log").push(key.clone()))
                .to("out", to_strings())
        },
        RECORDS,
    );
    assert_eq!(passed.len(), 3);
    assert_eq!(*seen.lock().expect("log"), ["a", "b", "c"]);
}

#[test]
fn branch_sends_each_record_to_its_first_match_only() {
    let builder = StreamsBuilder::new();
    let predicates: Vec<Predicate<String, String>> = vec![
        Box::new(|_, value: &String| value.len() == 1),
        Box::new(|_, value: &String| value.len() <= 2),
    ];
    let branches = builder.stream("in", strings()).branch(predicates);
    branches[0].to("short", to_strings());
    branches[1].to("medium", to_strings());
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    for &(key, value, timestamp) in RECORDS {
        driver
            .pipe_input(&input(), key.to_owned(), value.to_owned(), timestamp)
            .expect("piped");
    }
    let short = driver.read_key_values(&output("short")).expect("read");
    let medium = driver.read_key_values(&output("medium")).expect("read");
    assert_eq!(short, [("a".to_owned(), "1".to_owned())]);
    assert_eq!(
        medium,
        [("b".to_owned(), "22".to_owned())],
        "c matched none"
    );
}

#[test]
fn merge_interleaves_two_streams_and_a_stream_feeds_every_child() {
    let builder = StreamsBuilder::new();
    let left = builder.stream("left", strings());
    let right = builder.stream("right", strings());
    let merged = left.merge(&right);
    merged.to("out", to_strings());
    left.map_values(|value| format!("{value}!"))
        .to("loud", to_strings());
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    let left_topic = TestInputTopic::new("left", StringSerde, StringSerde);
    let right_topic = TestInputTopic::new("right", StringSerde, StringSerde);
    driver
        .pipe_input(&left_topic, "l".into(), "1".into(), 1)
        .expect("piped");
    driver
        .pipe_input(&right_topic, "r".into(), "2".into(), 2)
        .expect("piped");
    driver
        .pipe_input(&left_topic, "l".into(), "3".into(), 3)
        .expect("piped");
    let out = driver.read_key_values(&output("out")).expect("read");
    let values: Vec<&str> = out.iter().map(|(_, value)| value.as_str()).collect();
    assert_eq!(values, ["1", "2", "3"]);
    let loud = driver.read_key_values(&output("loud")).expect("read");
    assert_eq!(loud.len(), 2);
}

#[test]
fn serdes_carry_nulls_numbers_and_json_through() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(Nullable(StringSerde), BytesSerde))
        .map(|key: Option<String>, value: Vec<u8>| (key.unwrap_or_default(), value.len() as i64))
        .to("lengths", Produced::with(StringSerde, I64Serde));
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    driver
        .pipe_raw("in", None, Some(b"four"), 7)
        .expect("piped");
    let lengths = TestOutputTopic::new("lengths", StringSerde, I64Serde);
    let read = driver.read_all_output(&lengths).expect("read");
    assert_eq!(read[0].key, "");
    assert_eq!(read[0].value, 4);
    assert_eq!(read[0].timestamp, 7);

    let builder = StreamsBuilder::new();
    builder
        .stream(
            "in",
            Consumed::with(StringSerde, JsonSerde::<Vec<u32>>::new()),
        )
        .map_values(|numbers| numbers.iter().sum::<u32>())
        .to("sums", Produced::with(StringSerde, JsonSerde::new()));
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    driver
        .pipe_raw("in", Some(b"k"), Some(b"[1,2,3]"), 1)
        .expect("piped");
    let sums = TestOutputTopic::new("sums", StringSerde, JsonSerde::<u32>::new());
    assert_eq!(
        driver.read_key_values(&sums).expect("read"),
        [("k".to_owned(), 6)]
    );
}

#[test]
fn a_record_its_serde_cannot_read_stops_the_task_with_its_offset() {
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).to("out", to_strings());
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    driver
        .pipe_raw("in", Some(b"k"), Some(b"ok"), 1)
        .expect("piped");
    let error = driver
        .pipe_raw("in", Some(b"k"), Some(&[0xff, 0xfe]), 2)
        .expect_err("not UTF-8");
    assert!(
        matches!(
            &error,
            StreamsError::Deserialize {
                offset: 1,
                part: "value",
                ..
            }
        ),
        "{error}"
    );
    let error = driver
        .pipe_raw("in", None, Some(b"v"), 3)
        .expect_err("null key");
    assert!(matches!(
        error,
        StreamsError::Deserialize { part: "key", .. }
    ));
    assert!(matches!(
        driver.pipe_raw("elsewhere", None, None, 4),
        Err(StreamsError::UnknownTopic(_))
    ));
}

#[test]
fn a_topic_read_twice_or_a_topology_reading_nothing_is_refused() {
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).to("out", to_strings());
    builder.stream("in", strings()).to("out2", to_strings());
    assert!(matches!(
        builder.build(),
        Err(StreamsError::InvalidTopology(_))
    ));
    assert!(matches!(
        StreamsBuilder::new().build(),
        Err(StreamsError::InvalidTopology(_))
    ));
}

#[test]
fn stream_time_is_the_largest_timestamp_seen() {
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).to("out", to_strings());
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    assert_eq!(driver.stream_time(), -1);
    for &(key, value, timestamp) in RECORDS {
        driver
            .pipe_input(&input(), key.to_owned(), value.to_owned(), timestamp)
            .expect("piped");
    }
    assert_eq!(
        driver.stream_time(),
        20,
        "an older record does not move it back"
    );
}

#[test]
fn each_task_builds_its_own_processors() {
    let builder = StreamsBuilder::new();
    builder.stream("in", strings()).to("out", to_strings());
    let topology = builder.build().expect("valid");
    let mut first = TopologyTestDriver::new(&topology).expect("starts");
    let mut second = TopologyTestDriver::new(&topology).expect("starts");
    first
        .pipe_input(&input(), "a".into(), "1".into(), 1)
        .expect("piped");
    assert_eq!(
        first.read_key_values(&output("out")).expect("read").len(),
        1
    );
    assert!(second
        .read_key_values(&output("out"))
        .expect("read")
        .is_empty());
    assert_eq!(topology.sink_topics(), ["out"]);
}

#[test]
fn through_writes_to_the_users_topic_and_reads_it_back() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", strings())
        .map_values(|value: String| value.to_uppercase())
        .through("mid", to_strings())
        .map_values(|value: String| format!("{value}!"))
        .to("out", to_strings());
    let topology = builder.build().expect("valid");
    assert_eq!(topology.source_topics(), ["in", "mid"]);
    assert!(topology.internal_topics().is_empty(), "mid is the user's");
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    driver
        .pipe_input(&input(), "k".into(), "v".into(), 5)
        .expect("piped");
    let mid = driver.read_all_output(&output("mid")).expect("readable");
    assert_eq!(pairs(&mid), [("k", "V")]);
    let out = driver.read_all_output(&output("out")).expect("readable");
    assert_eq!(pairs(&out), [("k", "V!")]);
    assert_eq!(out[0].timestamp, 5);
}

#[test]
fn repartition_goes_through_an_internal_topic_named_for_it() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", strings())
        .select_key(|_, value: &String| value.clone())
        .repartition(Repartitioned::with(StringSerde, StringSerde).named("by-value"))
        .to("out", to_strings());
    let topology = builder.build().expect("valid");
    assert_eq!(topology.internal_topics(), ["by-value-repartition"]);
    assert_eq!(topology.source_topics(), ["by-value-repartition", "in"]);
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    driver
        .pipe_input(&input(), "k".into(), "v".into(), 5)
        .expect("piped");
    let out = driver.read_all_output(&output("out")).expect("readable");
    assert_eq!(pairs(&out), [("v", "v")]);
    let internal = output("by-value-repartition");
    assert!(
        driver
            .read_all_output(&internal)
            .expect("readable")
            .is_empty(),
        "an internal topic is not output"
    );
    assert!(matches!(
        driver.pipe_raw("by-value-repartition", None, None, 0),
        Err(StreamsError::UnknownTopic(_))
    ));

    let unnamed = StreamsBuilder::new();
    unnamed
        .stream("in", strings())
        .repartition(Repartitioned::with(StringSerde, StringSerde))
        .to("out", to_strings());
    let topology = unnamed.build().expect("valid");
    let internal = topology.internal_topics();
    assert!(
        internal.len() == 1
            && internal[0].starts_with("KSTREAM-REPARTITION-")
            && internal[0].ends_with("-repartition"),
        "{internal:?}"
    );
}

#[test]
fn a_store_name_that_cannot_name_a_changelog_topic_is_refused() {
    for name in ["has space", "", "ünïcode", &"x".repeat(201)] {
        let builder = StreamsBuilder::new();
        let _table = builder.table("in", strings(), Some(name));
        let refused = builder.build().expect_err("refused");
        assert!(refused.to_string().contains("store name"), "{refused}");
    }
    let builder = StreamsBuilder::new();
    let _table = builder.table("in", strings(), Some("Orders.by-id_2"));
    assert!(builder.build().is_ok());
}
