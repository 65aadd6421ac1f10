//! Grouping and aggregating into tables, run by the test driver: word count, reduce,
//! aggregate, the state stores they keep, and the records they must skip.

use runnel_streams::{
    Consumed, Grouped, I64Serde, JsonSerde, Materialized, Nullable, Produced, StreamsBuilder,
    StreamsError, StringSerde, TestInputTopic, TestOutputTopic, TopologyTestDriver,
};

fn lines() -> TestInputTopic<Option<String>, String> {
    TestInputTopic::new("lines", Nullable(StringSerde), StringSerde)
}

/// The word count of the example, which keeps issue 11's contract.
#[path = "../examples/wordcount/topology.rs"]
mod wordcount;

#[test]
fn word_count_counts_each_word_so_far_and_keeps_the_counts_in_its_store() {
    let topology = wordcount::word_count("lines", "counts").expect("valid");
    assert_eq!(topology.store_names(), ["counts"]);
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    driver
        .pipe_input(&lines(), None, "the quick fox".into(), 1)
        .expect("piped");
    driver
        .pipe_input(&lines(), None, "The lazy  THE\tend".into(), 2)
        .expect("piped");
    let counts = TestOutputTopic::new("counts", StringSerde, Nullable(StringSerde));
    let updates: Vec<(String, String)> = driver
        .read_key_values(&counts)
        .expect("read")
        .into_iter()
        .map(|(word, count)| (word, count.expect("a count")))
        .collect();
    let expected = [
        ("the", "1"),
        ("quick", "1"),
        ("fox", "1"),
        ("the", "2"),
        ("lazy", "1"),
        ("the", "3"),
        ("end", "1"),
    ];
    assert_eq!(
        updates,
        expected.map(|(word, count)| (word.to_owned(), count.to_owned()))
    );
    let store = driver
        .read_store("counts", StringSerde, I64Serde)
        .expect("readable")
        .expect("written");
    assert_eq!(
        store,
        [
            ("end", 1),
            ("fox", 1),
            ("lazy", 1),
            ("quick", 1),
            ("the", 3)
        ]
        .map(|(word, count)| (word.to_owned(), count))
    );
}

#[test]
fn reduce_combines_a_keys_values_and_aggregate_folds_them_into_another_type() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream("in", Consumed::with(StringSerde, I64Serde));
    let grouped = || Grouped::with(StringSerde, I64Serde);
    stream
        .group_by_key(grouped())
        .reduce(|so_far, next| so_far.max(next), Some("max"))
        .to_stream()
        .to("max", Produced::with(StringSerde, Nullable(I64Serde)));
    stream
        .group_by_key(grouped())
        .aggregate(
            Vec::new,
            |_, value, mut seen: Vec<i64>| {
                seen.push(value);
                seen
            },
            Materialized::with(JsonSerde::<Vec<i64>>::new()).named("seen"),
        )
        .to_stream()
        .to(
            "seen",
            Produced::with(StringSerde, Nullable(JsonSerde::new())),
        );
    let topology = builder.build().expect("valid");
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    let input = TestInputTopic::new("in", StringSerde, I64Serde);
    for (key, value) in [("a", 3), ("b", 1), ("a", 7), ("a", 5)] {
        driver
            .pipe_input(&input, key.to_owned(), value, 0)
            .expect("piped");
    }
    let max = TestOutputTopic::new("max", StringSerde, Nullable(I64Serde));
    let maxima: Vec<Option<i64>> = driver
        .read_key_values(&max)
        .expect("read")
        .into_iter()
        .filter(|(key, _)| key == "a")
        .map(|(_, value)| value)
        .collect();
    assert_eq!(maxima, [Some(3), Some(7), Some(7)]);
    let seen = driver
        .read_store("seen", StringSerde, JsonSerde::<Vec<i64>>::new())
        .expect("readable")
        .expect("written");
    assert_eq!(
        seen,
        [("a".to_owned(), vec![3, 7, 5]), ("b".to_owned(), vec![1])]
    );
}

#[test]
fn aggregations_skip_null_keys_and_values_and_count_them_dropped() {
    let builder = StreamsBuilder::new();
    builder
        .stream(
            "in",
            Consumed::with(Nullable(StringSerde), Nullable(StringSerde)),
        )
        .group_by_key(Grouped::with(Nullable(StringSerde), Nullable(StringSerde)))
        .count(Some("counts"));
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    driver.pipe_raw("in", None, Some(b"v"), 0).expect("piped");
    driver.pipe_raw("in", Some(b"k"), None, 0).expect("piped");
    driver
        .pipe_raw("in", Some(b"k"), Some(b"v"), 0)
        .expect("piped");
    assert_eq!(driver.dropped_records(), 2);
    let store = driver
        .read_store("counts", Nullable(StringSerde), I64Serde)
        .expect("readable")
        .expect("written");
    assert_eq!(store, [(Some("k".to_owned()), 1)]);
}

#[test]
fn two_aggregations_may_not_share_a_store() {
    let builder = StreamsBuilder::new();
    let grouped = builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde));
    grouped.count(Some("same"));
    grouped.count(Some("same"));
    assert!(matches!(
        builder.build(),
        Err(StreamsError::InvalidTopology(_))
    ));
}

#[test]
fn unnamed_stores_get_kafka_streams_generated_names() {
    let builder = StreamsBuilder::new();
    builder
        .stream("in", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .count(None);
    let topology = builder.build().expect("valid");
    let names = topology.store_names();
    assert_eq!(names.len(), 1);
    assert!(
        names[0].starts_with("KSTREAM-AGGREGATE-STATE-STORE-") && names[0].len() == 40,
        "{names:?}"
    );
}

/// Clicks and purchases per user, from two topics, into one table: `(clicks, spent)`. The
/// purchases are keyed by order and regrouped by user, through a repartition topic.
#[test]
fn cogroup_folds_several_streams_into_one_table() {
    let builder = StreamsBuilder::new();
    let clicks = builder
        .stream("clicks", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde));
    // Purchases keyed by order id, valued "user:amount".
    let purchases = builder
        .stream("purchases", Consumed::with(StringSerde, StringSerde))
        .group_by(
            |_, purchase: &String| purchase.split(':').next().unwrap_or_default().to_owned(),
            Grouped::with(StringSerde, StringSerde),
        );
    clicks
        .cogroup(|_, _click: String, (clicks, spent): (i64, i64)| (clicks + 1, spent))
        .cogroup(
            &purchases,
            |_, purchase: String, (clicks, spent): (i64, i64)| {
                let amount = purchase
                    .rsplit(':')
                    .next()
                    .and_then(|amount| amount.parse::<i64>().ok())
                    .unwrap_or(0);
                (clicks, spent + amount)
            },
        )
        .aggregate(
            || (0, 0),
            Materialized::with(JsonSerde::new()).named("activity"),
        )
        .to_stream()
        .to(
            "activity",
            Produced::with(StringSerde, Nullable(JsonSerde::<(i64, i64)>::new())),
        );
    let topology = builder.build().expect("valid");
    assert_eq!(topology.store_names(), ["activity"]);
    assert_eq!(topology.internal_topics(), ["activity-1-repartition"]);
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    let pipe = |driver: &mut TopologyTestDriver, topic: &str, key: &str, value: &str| {
        let input = TestInputTopic::new(topic, StringSerde, StringSerde);
        driver
            .pipe_input(&input, key.to_owned(), value.to_owned(), 1)
            .expect("piped");
    };
    pipe(&mut driver, "clicks", "ada", "home");
    pipe(&mut driver, "purchases", "order-1", "ada:30");
    pipe(&mut driver, "clicks", "bob", "home");
    pipe(&mut driver, "clicks", "ada", "cart");
    pipe(&mut driver, "purchases", "order-2", "ada:12");
    let output = TestOutputTopic::new(
        "activity",
        StringSerde,
        Nullable(JsonSerde::<(i64, i64)>::new()),
    );
    let updates: Vec<(String, (i64, i64))> = driver
        .read_key_values(&output)
        .expect("read")
        .into_iter()
        .map(|(user, activity)| (user, activity.expect("a value")))
        .collect();
    let expected = [
        ("ada", (1, 0)),
        ("ada", (1, 30)),
        ("bob", (1, 0)),
        ("ada", (2, 30)),
        ("ada", (2, 42)),
    ]
    .map(|(user, activity)| (user.to_owned(), activity));
    assert_eq!(updates, expected);
}
