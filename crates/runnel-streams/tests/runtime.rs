//! The runtime against the real broker: an application counting words, stopped and started
//! again (its counts restored from its stores on disk, from the changelog when they are
//! deleted, and from the disk when the changelog is emptied), at least once and exactly
//! once; two instances sharing the work, one killed; a global table.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use runnel_client::{
    Admin, Consumer, ConsumerConfig, IsolationLevel, NewTopic, OffsetReset, ProduceRecord,
    Producer, ProducerConfig, TopicPartition,
};
use runnel_streams::{
    Consumed, Grouped, I64Serde, KafkaStreams, Nullable, Processor, ProcessorContext, Produced,
    PunctuationType, Record, StreamsBuilder, StreamsConfig, StreamsError, StringSerde, Topology,
};
use runnel_testkit::BrokerProcess;

const WAIT: Duration = Duration::from_secs(60);

#[path = "../examples/wordcount/topology.rs"]
mod wordcount;

fn word_count(input: &str, output: &str) -> Topology {
    wordcount::word_count(input, output).expect("valid")
}

/// A broker, and `topics` (name, partitions) created on it.
async fn broker_with(topics: &[(&str, i32)]) -> (BrokerProcess, Admin) {
    let broker = tokio::task::spawn_blocking(|| BrokerProcess::start(&[]))
        .await
        .expect("broker");
    let admin = Admin::connect(runnel_client::ClientConfig::new(broker.address()))
        .await
        .expect("admin");
    for &(name, partitions) in topics {
        admin
            .create_topic(NewTopic {
                name: name.to_owned(),
                partitions,
                replication_factor: -1,
                configs: vec![],
            })
            .await
            .expect("created");
    }
    (broker, admin)
}

async fn produce_lines(bootstrap: &str, topic: &str, lines: &[&str]) {
    let producer = Producer::connect(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    for line in lines {
        producer
            .send_and_wait(ProduceRecord::new(topic).value(line.to_string()))
            .await
            .expect("sent");
    }
    producer.close().await.expect("closed");
}

/// Reads `topic` from the start until every word of `expected` has its count (the last
/// count read per word), or fails after [`WAIT`].
async fn read_counts(
    bootstrap: &str,
    topic: &str,
    isolation: IsolationLevel,
    expected: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    read_latest_until(bootstrap, topic, isolation, |latest| latest == expected).await
}

/// Reads partition 0 of `topic` from the start, keeping each key's latest value, until
/// `done` says those are what was awaited, or fails after [`WAIT`].
async fn read_latest_until(
    bootstrap: &str,
    topic: &str,
    isolation: IsolationLevel,
    done: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let mut config = ConsumerConfig::new(bootstrap);
    config.isolation_level = isolation;
    config.auto_offset_reset = OffsetReset::Earliest;
    let consumer = Consumer::connect(config).await.expect("consumer");
    consumer
        .assign(vec![TopicPartition::new(topic, 0)])
        .await
        .expect("assigned");
    let mut latest = BTreeMap::new();
    let started = Instant::now();
    while !done(&latest) {
        assert!(started.elapsed() < WAIT, "read so far {latest:?}");
        for record in consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("polled")
        {
            let key = String::from_utf8(record.key.expect("a key").to_vec()).expect("UTF-8");
            let value = String::from_utf8(record.value.expect("a value").to_vec()).expect("UTF-8");
            latest.insert(key, value);
        }
    }
    consumer.close().await.expect("closed");
    latest
}

fn counts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(word, count)| ((*word).to_owned(), (*count).to_owned()))
        .collect()
}

/// A word count stopped and started again three times: with its stores on disk as they
/// were (restored from their checkpoint on), with them deleted (restored from the changelog
/// alone), and with the changelog emptied below its end (restored from the disk alone). Each
/// time the counts carry on, and no line is counted twice.
async fn counts_survive_restarts(exactly_once: bool) {
    let (broker, admin) = broker_with(&[("lines", 1), ("counts", 1)]).await;
    let bootstrap = broker.address();
    let state = tempfile::tempdir().expect("a state directory");
    let isolation = if exactly_once {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    };
    let config = || {
        let config = StreamsConfig::new("word-count", &bootstrap).state_dir(state.path());
        let mut config = if exactly_once {
            config.exactly_once()
        } else {
            config
        };
        config.commit_interval = Duration::from_millis(100);
        config
    };
    let mut so_far = counts(&[]);
    let mut run = |lines: &'static [&'static str],
                   more: &'static [(&'static str, &'static str)]| {
        for (word, count) in more {
            so_far.insert((*word).to_owned(), (*count).to_owned());
        }
        let expected = so_far.clone();
        let config = config();
        let bootstrap = bootstrap.clone();
        async move {
            produce_lines(&bootstrap, "lines", lines).await;
            let app = KafkaStreams::start(word_count("lines", "counts"), config)
                .await
                .expect("started");
            read_counts(&bootstrap, "counts", isolation, &expected).await;
            app.close().await.expect("closed");
        }
    };
    run(
        &["the quick fox", "The lazy THE"],
        &[("fox", "1"), ("lazy", "1"), ("quick", "1"), ("the", "3")],
    )
    .await;
    // Its stores on disk as the last run left them.
    run(&["the end"], &[("end", "1"), ("the", "4")]).await;
    // Local state deleted: restored from the changelog.
    std::fs::remove_dir_all(state.path().join("word-count")).expect("deleted");
    run(&["fox"], &[("fox", "2")]).await;
    // The changelog emptied up to its end: restored from the disk, from its checkpoint.
    let changelog = "word-count-counts-changelog";
    let end = admin
        .list_offsets(changelog, &[0], runnel_client::OffsetSpec::Latest)
        .await
        .expect("listed")[0]
        .1
        .offset;
    // Under exactly-once the last offset is the commit marker of the last transaction, which
    // the checkpoint (the offset after the last record) names: kept, as a record would be.
    let below = if exactly_once { end - 1 } else { end };
    admin
        .delete_records(changelog, &[(0, below)])
        .await
        .expect("deleted records");
    run(&["lazy fox"], &[("fox", "3"), ("lazy", "2")]).await;
    drop(broker);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_counts_survive_restarts_from_disk_and_from_the_changelog() {
    counts_survive_restarts(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_counts_survive_restarts_from_disk_and_from_the_changelog() {
    counts_survive_restarts(true).await;
}

/// Orders enriched from a global table of customers: the table is read from every partition
/// of its topic before the first order is processed, and kept up to date while the
/// application runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_holds_every_partition_and_follows_updates() {
    let (broker, _admin) = broker_with(&[("customers", 2), ("orders", 1), ("enriched", 1)]).await;
    let bootstrap = broker.address();
    let producer = Producer::connect(ProducerConfig::new(&bootstrap))
        .await
        .expect("producer");
    let send = |topic: &'static str, key: &'static str, value: &'static str, partition| {
        ProduceRecord::new(topic)
            .key(key)
            .value(value)
            .partition(partition)
    };
    for (key, name, partition) in [("c1", "Ada", 0), ("c2", "Grace", 1)] {
        producer
            .send_and_wait(send("customers", key, name, partition))
            .await
            .expect("sent");
    }
    let builder = StreamsBuilder::new();
    let customers = builder.global_table(
        "customers",
        Consumed::with(StringSerde, StringSerde),
        Some("customers"),
    );
    builder
        .stream("orders", Consumed::with(StringSerde, StringSerde))
        .join_global(
            &customers,
            |_, order: &String| order.split(':').next().unwrap_or_default().to_owned(),
            |order, customer| format!("{order} for {customer}"),
        )
        .to("enriched", Produced::with(StringSerde, StringSerde));
    let mut config = StreamsConfig::new("enrich", &bootstrap).in_memory();
    config.commit_interval = Duration::from_millis(100);
    let app = KafkaStreams::start(builder.build().expect("valid"), config)
        .await
        .expect("started");
    for (key, order) in [("o1", "c1:book"), ("o2", "c2:pen")] {
        producer
            .send_and_wait(send("orders", key, order, 0))
            .await
            .expect("sent");
    }
    let expected = counts(&[("o1", "c1:book for Ada"), ("o2", "c2:pen for Grace")]);
    read_counts(
        &bootstrap,
        "enriched",
        IsolationLevel::ReadUncommitted,
        &expected,
    )
    .await;

    // An update while running reaches the table, and the orders after it.
    producer
        .send_and_wait(send("customers", "c1", "Ada L.", 0))
        .await
        .expect("sent");
    for key in ["o3", "o4", "o5"] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        producer
            .send_and_wait(send("orders", key, "c1:ink", 0))
            .await
            .expect("sent");
    }
    read_latest_until(
        &bootstrap,
        "enriched",
        IsolationLevel::ReadUncommitted,
        |latest| latest.get("o5").map(String::as_str) == Some("c1:ink for Ada L."),
    )
    .await;
    app.close().await.expect("closed");
    drop(broker);
}

/// Counting words from a topic of two partitions: the words are repartitioned through the
/// application's repartition topic, so that each word's count is one, whichever partition
/// its lines came from; what was read and committed is purged from the repartition topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn words_from_two_partitions_are_counted_once_through_a_repartition_topic_and_queried() {
    let (broker, admin) = broker_with(&[("lines", 2), ("counts", 1)]).await;
    let bootstrap = broker.address();
    let producer = Producer::connect(ProducerConfig::new(&bootstrap))
        .await
        .expect("producer");
    for (partition, line) in [(0, "the quick fox"), (1, "the lazy dog"), (1, "the fox")] {
        producer
            .send_and_wait(
                ProduceRecord::new("lines")
                    .value(line.to_owned())
                    .partition(partition),
            )
            .await
            .expect("sent");
    }
    producer.close().await.expect("closed");
    let state = tempfile::tempdir().expect("a state directory");
    let mut config = StreamsConfig::new("two-partitions", &bootstrap).state_dir(state.path());
    config.commit_interval = Duration::from_millis(100);
    let app = KafkaStreams::start(word_count("lines", "counts"), config.clone())
        .await
        .expect("started");
    let refused = KafkaStreams::start(word_count("lines", "counts"), config)
        .await
        .expect_err("a second instance on the same state directory");
    assert!(refused.to_string().contains("in use"), "{refused}");
    let expected = counts(&[
        ("dog", "1"),
        ("fox", "2"),
        ("lazy", "1"),
        ("quick", "1"),
        ("the", "3"),
    ]);
    read_counts(
        &bootstrap,
        "counts",
        IsolationLevel::ReadUncommitted,
        &expected,
    )
    .await;
    let repartition = "two-partitions-counts-repartition";
    let started = Instant::now();
    loop {
        let starts = admin
            .list_offsets(repartition, &[0, 1], runnel_client::OffsetSpec::Earliest)
            .await
            .expect("listed");
        let purged: i64 = starts.iter().map(|(_, listed)| listed.offset).sum();
        if purged == 8 {
            break;
        }
        assert!(
            started.elapsed() < WAIT,
            "the 8 words read are purged from {repartition}: log starts {starts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Its store, queried while it runs, across both tasks; its metrics.
    let store = app.store("counts", StringSerde, I64Serde);
    assert_eq!(
        store.get(&"fox".to_owned()).await.expect("queried"),
        Some(2)
    );
    assert_eq!(store.get(&"cat".to_owned()).await.expect("queried"), None);
    let all = store.all().await.expect("queried");
    let words: Vec<&str> = all.iter().map(|(word, _)| word.as_str()).collect();
    assert_eq!(words, ["dog", "fox", "lazy", "quick", "the"]);
    let some = store
        .range(&"f".to_owned(), &"m".to_owned())
        .await
        .expect("queried");
    assert_eq!(some, [("fox".to_owned(), 2), ("lazy".to_owned(), 1)]);
    assert!(app
        .store("nothing", StringSerde, I64Serde)
        .get(&"fox".to_owned())
        .await
        .is_err());
    let metrics = app.metrics();
    assert_eq!(
        metrics.processed_records,
        3 + 8,
        "3 lines, then 8 words read back from the repartition topic: {metrics:?}"
    );
    assert_eq!(metrics.dropped_records, 0);
    assert!(metrics.commits > 0);
    app.close().await.expect("closed");
}

/// Per key `k0`..`k9`, the values of records `from..to`: record i has key `k{i % 10}` and
/// value i.
async fn produce_events(bootstrap: &str, from: i64, to: i64) {
    let producer = Producer::connect(ProducerConfig::new(bootstrap))
        .await
        .expect("producer");
    for i in from..to {
        producer
            .send(
                ProduceRecord::new("events")
                    .key(format!("k{}", i % 10))
                    .value(i.to_be_bytes().to_vec()),
            )
            .await
            .expect("sent");
    }
    producer.flush().await.expect("flushed");
    producer.close().await.expect("closed");
}

/// Every value written to `out` so far, per key, in order.
async fn read_all(bootstrap: &str, isolation: IsolationLevel) -> BTreeMap<String, Vec<i64>> {
    let mut config = ConsumerConfig::new(bootstrap);
    config.isolation_level = isolation;
    let consumer = Consumer::connect(config).await.expect("consumer");
    let out = TopicPartition::new("out", 0);
    consumer.assign(vec![out.clone()]).await.expect("assigned");
    consumer
        .seek_to_beginning(std::slice::from_ref(&out))
        .await
        .expect("sought");
    let admin = Admin::from_cluster(consumer.cluster().clone());
    let end = admin
        .list_offsets_isolated("out", &[0], runnel_client::OffsetSpec::Latest, isolation)
        .await
        .expect("listed")[0]
        .1
        .offset;
    let mut values: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    while consumer.position(&out).await.expect("position") < end {
        for record in consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("polled")
        {
            let key = String::from_utf8(record.key.expect("key").to_vec()).expect("UTF-8");
            let bytes = record.value.expect("value");
            let value = i64::from_be_bytes(bytes.as_ref().try_into().expect("8 bytes"));
            values.entry(key).or_default().push(value);
        }
    }
    consumer.close().await.expect("closed");
    values
}

/// Two instances share an application over a topic of two partitions; one is killed
/// mid-run (dropped: no commit, no goodbye to the group); the other takes its tasks, their
/// state restored from the changelogs.
async fn two_instances_one_killed(exactly_once: bool) {
    let (broker, _admin) = broker_with(&[("events", 2), ("out", 1)]).await;
    let bootstrap = broker.address();
    let topology = || {
        let builder = StreamsBuilder::new();
        let grouped = builder
            .stream("events", Consumed::with(StringSerde, I64Serde))
            .group_by_key(Grouped::with(StringSerde, I64Serde));
        // Exactly once: counts, every one written once. At least once: the largest value,
        // which records read again cannot change.
        let table = if exactly_once {
            grouped.count(Some("per-key"))
        } else {
            grouped.reduce(i64::max, Some("per-key"))
        };
        table
            .to_stream()
            .to("out", Produced::with(StringSerde, Nullable(I64Serde)));
        builder.build().expect("valid")
    };
    // Two machines: two state directories.
    let states = [(); 2].map(|()| tempfile::tempdir().expect("a state directory"));
    let config = |instance: usize| {
        let mut config = StreamsConfig::new("pair", &bootstrap).state_dir(states[instance].path());
        if exactly_once {
            config = config.exactly_once();
        }
        config.commit_interval = Duration::from_millis(100);
        config.session_timeout = Duration::from_secs(6);
        config
    };
    let first = KafkaStreams::start(topology(), config(0))
        .await
        .expect("first");
    let second = KafkaStreams::start(topology(), config(1))
        .await
        .expect("second");
    produce_events(&bootstrap, 0, 200).await;
    let isolation = if exactly_once {
        IsolationLevel::ReadCommitted
    } else {
        IsolationLevel::ReadUncommitted
    };
    // Mid-run: once both have written some of the first 200 records' results.
    let started = Instant::now();
    loop {
        let values = read_all(&bootstrap, isolation).await;
        if values.values().map(Vec::len).sum::<usize>() >= 100 {
            break;
        }
        assert!(started.elapsed() < WAIT, "nothing processed: {values:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(first);
    produce_events(&bootstrap, 200, 400).await;

    let started = Instant::now();
    loop {
        let values = read_all(&bootstrap, isolation).await;
        let done = (0..10).all(|key| {
            let last = values
                .get(&format!("k{key}"))
                .and_then(|v| v.last().copied());
            last == Some(if exactly_once { 40 } else { 390 + key })
        });
        if done {
            if exactly_once {
                for (key, counts) in &values {
                    assert_eq!(
                        counts,
                        &(1..=40).collect::<Vec<i64>>(),
                        "key {key}: every count exactly once"
                    );
                }
            }
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not converged: {values:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    second.close().await.expect("closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_two_instances_one_killed_write_every_count_once() {
    two_instances_one_killed(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_two_instances_one_killed_end_with_the_right_aggregates() {
    two_instances_one_killed(false).await;
}

/// A processor punctuating on the wall clock writes without any input, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wall_clock_punctuations_run_in_the_application_without_input() {
    struct Ticker;
    impl Processor<String, String, String, String> for Ticker {
        fn init(
            &mut self,
            context: &mut ProcessorContext<'_, String, String>,
        ) -> Result<(), StreamsError> {
            context.schedule(300, PunctuationType::WallClockTime);
            Ok(())
        }

        fn process(
            &mut self,
            _record: Record<String, String>,
            _context: &mut ProcessorContext<'_, String, String>,
        ) -> Result<(), StreamsError> {
            Ok(())
        }

        fn punctuate(
            &mut self,
            time: i64,
            _kind: PunctuationType,
            context: &mut ProcessorContext<'_, String, String>,
        ) -> Result<(), StreamsError> {
            context.forward(Record::new("tick".to_owned(), time.to_string(), time))
        }
    }
    let (broker, _admin) = broker_with(&[("quiet", 1), ("ticks", 1)]).await;
    let bootstrap = broker.address();
    let builder = StreamsBuilder::new();
    builder
        .stream("quiet", Consumed::with(StringSerde, StringSerde))
        .process(|| Ticker, &[])
        .to("ticks", Produced::with(StringSerde, StringSerde));
    let app = KafkaStreams::start(
        builder.build().expect("valid"),
        StreamsConfig::new("ticker", &bootstrap)
            .in_memory()
            .exactly_once(),
    )
    .await
    .expect("started");
    read_latest_until(
        &bootstrap,
        "ticks",
        IsolationLevel::ReadCommitted,
        |latest| latest.contains_key("tick"),
    )
    .await;
    app.close().await.expect("closed");
}
