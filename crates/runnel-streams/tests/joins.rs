//! Tables read from topics, and joins, run by the test driver: stream-table (inner and
//! left; issue 11's enrichment of orders with customers), stream-global-table (inner and
//! left, by a key computed from the record), table-table (inner, left, outer), with deletes.

use runnel_streams::{
    BytesSerde, Consumed, JoinWindows, Nullable, Produced, StreamJoined, StreamsBuilder,
    StringSerde, TestInputTopic, TestOutputTopic, TopologyTestDriver,
};

fn strings() -> Consumed<String, String> {
    Consumed::with(StringSerde, StringSerde)
}

fn pipe(driver: &mut TopologyTestDriver, topic: &str, key: &str, value: Option<&str>, at: i64) {
    driver
        .pipe_raw(topic, Some(key.as_bytes()), value.map(str::as_bytes), at)
        .expect("piped");
}

fn read(driver: &mut TopologyTestDriver, topic: &str) -> Vec<(String, Option<String>)> {
    driver
        .read_key_values(&TestOutputTopic::new(
            topic,
            StringSerde,
            Nullable(StringSerde),
        ))
        .expect("read")
}

fn some(pairs: &[(&str, &str)]) -> Vec<(String, Option<String>)> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), Some((*value).to_owned())))
        .collect()
}

#[test]
fn orders_are_enriched_with_the_customer_as_of_the_order() {
    let builder = StreamsBuilder::new();
    let customers = builder.table("customers", strings(), Some("customers"));
    let orders = builder.stream("orders", strings());
    orders
        .join_table(&customers, |order, customer| {
            format!("{order} for {customer}")
        })
        .map_values(Some)
        .to(
            "enriched",
            Produced::with(StringSerde, Nullable(StringSerde)),
        );
    orders
        .left_join_table(&customers, |order, customer: Option<&String>| {
            format!("{order} for {}", customer.map_or("nobody", String::as_str))
        })
        .map_values(Some)
        .to("all", Produced::with(StringSerde, Nullable(StringSerde)));
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    pipe(&mut driver, "orders", "c1", Some("book"), 1);
    pipe(&mut driver, "customers", "c1", Some("Ada"), 2);
    pipe(&mut driver, "orders", "c1", Some("pen"), 3);
    pipe(&mut driver, "customers", "c1", Some("Ada L."), 4);
    pipe(&mut driver, "orders", "c1", Some("ink"), 5);
    pipe(&mut driver, "customers", "c1", None, 6);
    pipe(&mut driver, "orders", "c1", Some("cap"), 7);
    assert_eq!(
        read(&mut driver, "enriched"),
        some(&[("c1", "pen for Ada"), ("c1", "ink for Ada L.")]),
        "a table update alone emits nothing; a deleted customer joins nothing"
    );
    assert_eq!(
        read(&mut driver, "all"),
        some(&[
            ("c1", "book for nobody"),
            ("c1", "pen for Ada"),
            ("c1", "ink for Ada L."),
            ("c1", "cap for nobody"),
        ])
    );
    assert_eq!(
        driver
            .read_store("customers", StringSerde, StringSerde)
            .expect("readable"),
        Some(vec![]),
        "the delete removed the key"
    );
}

#[test]
fn table_table_joins_follow_updates_and_deletes_on_either_side() {
    let builder = StreamsBuilder::new();
    let left = builder.table("left", strings(), None);
    let right = builder.table("right", strings(), None);
    let write = |table: runnel_streams::KTable<String, String>, topic: &str| {
        table
            .to_stream()
            .to(topic, Produced::with(StringSerde, Nullable(StringSerde)));
    };
    write(
        left.join(&right, |l, r| format!("{l}+{r}"), StringSerde),
        "inner",
    );
    write(
        left.left_join(
            &right,
            |l, r: Option<&String>| format!("{l}+{}", r.map_or("_", String::as_str)),
            StringSerde,
        ),
        "left-joined",
    );
    write(
        left.outer_join(
            &right,
            |l: Option<&String>, r: Option<&String>| {
                format!(
                    "{}+{}",
                    l.map_or("_", String::as_str),
                    r.map_or("_", String::as_str)
                )
            },
            StringSerde,
        ),
        "outer",
    );
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    pipe(&mut driver, "left", "k", Some("a"), 1);
    pipe(&mut driver, "right", "k", Some("x"), 2);
    pipe(&mut driver, "left", "k", Some("b"), 3);
    pipe(&mut driver, "right", "k", None, 4);
    pipe(&mut driver, "left", "k", None, 5);
    let deleted = |key: &str| (key.to_owned(), None);
    let mut inner = some(&[("k", "a+x"), ("k", "b+x")]);
    inner.push(deleted("k"));
    assert_eq!(read(&mut driver, "inner"), inner);
    let mut left_rows = some(&[("k", "a+_"), ("k", "a+x"), ("k", "b+x"), ("k", "b+_")]);
    left_rows.push(deleted("k"));
    assert_eq!(read(&mut driver, "left-joined"), left_rows);
    let mut outer = some(&[("k", "a+_"), ("k", "a+x"), ("k", "b+x"), ("k", "b+_")]);
    outer.push(deleted("k"));
    assert_eq!(read(&mut driver, "outer"), outer);
}

#[test]
fn a_table_source_drops_records_without_a_key() {
    let builder = StreamsBuilder::new();
    builder.table("t", strings(), Some("t"));
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    driver.pipe_raw("t", None, Some(b"v"), 1).expect("piped");
    assert_eq!(driver.dropped_records(), 1);
    let input = TestInputTopic::new("t", StringSerde, StringSerde);
    driver
        .pipe_input(&input, "k".into(), "v".into(), 2)
        .expect("piped");
    assert_eq!(
        driver
            .read_store("t", StringSerde, StringSerde)
            .expect("read"),
        Some(vec![("k".to_owned(), "v".to_owned())])
    );
}

/// Two streams of the same key joined within 10 ms (grace 5), each pair once, whichever
/// side came first, stamped with the later timestamp.
fn stream_join_driver(kind: &str) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let left = builder.stream("l", strings());
    let right = builder.stream("r", strings());
    let windows = JoinWindows::of_time_difference_and_grace(10, 5);
    let serdes = || StreamJoined::with(StringSerde, StringSerde, StringSerde);
    let shown = |value: Option<&String>| value.map_or("_".to_owned(), String::clone);
    let joined = match kind {
        "inner" => left.join(&right, |l, r| format!("{l}+{r}"), windows, serdes()),
        "left" => left.left_join(
            &right,
            move |l, r| format!("{l}+{}", shown(r)),
            windows,
            serdes(),
        ),
        _ => left.outer_join(
            &right,
            move |l, r| format!("{}+{}", shown(l), shown(r)),
            windows,
            serdes(),
        ),
    };
    joined
        .map_values(Some)
        .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts")
}

fn joined(driver: &mut TopologyTestDriver) -> Vec<(String, i64)> {
    driver
        .read_all_output(&TestOutputTopic::new(
            "out",
            StringSerde,
            Nullable(StringSerde),
        ))
        .expect("read")
        .into_iter()
        .map(|record| (record.value.expect("a value"), record.timestamp))
        .collect()
}

fn pairs_at(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs
        .iter()
        .map(|(value, at)| ((*value).to_owned(), *at))
        .collect()
}

#[test]
fn a_stream_stream_join_pairs_records_within_the_window_either_way_round() {
    let mut driver = stream_join_driver("inner");
    pipe(&mut driver, "l", "k", Some("a"), 100);
    pipe(&mut driver, "r", "k", Some("x"), 105);
    pipe(&mut driver, "r", "other", Some("y"), 106);
    pipe(&mut driver, "r", "k", Some("z"), 111);
    pipe(&mut driver, "l", "k", Some("b"), 112);
    assert_eq!(
        joined(&mut driver),
        pairs_at(&[("a+x", 105), ("b+x", 112), ("b+z", 112)]),
        "z is 11 ms after a: too far; other keys never join"
    );
    // Within the grace, an out-of-order record still joins; beyond it, it is dropped.
    pipe(&mut driver, "l", "k", Some("c"), 101);
    assert_eq!(joined(&mut driver), pairs_at(&[("c+x", 105), ("c+z", 111)]));
    pipe(&mut driver, "r", "k", Some("late"), 200);
    pipe(&mut driver, "l", "k", Some("stale"), 150);
    assert!(joined(&mut driver).is_empty());
    assert_eq!(
        driver.dropped_records(),
        1,
        "at stream time 200, a record at 150 is past its window and grace (165)"
    );
}

#[test]
fn left_and_outer_joins_emit_the_unmatched_only_once_their_window_closes() {
    for kind in ["left", "outer"] {
        let mut driver = stream_join_driver(kind);
        pipe(&mut driver, "l", "k", Some("a"), 100);
        pipe(&mut driver, "r", "k", Some("x"), 112);
        let early = joined(&mut driver);
        assert!(
            early.is_empty(),
            "{kind}: a's window is open until 115: {early:?}"
        );
        // A partner inside the window, arriving within the grace: joined, and a is not
        // emitted alone.
        pipe(&mut driver, "r", "k", Some("y"), 108);
        assert_eq!(joined(&mut driver), pairs_at(&[("a+y", 108)]), "{kind}");
        pipe(&mut driver, "l", "k", Some("b"), 140);
        let expected: &[(&str, i64)] = if kind == "left" { &[] } else { &[("_+x", 112)] };
        assert_eq!(
            joined(&mut driver),
            pairs_at(expected),
            "{kind}: x's window closed at 127"
        );
        pipe(&mut driver, "r", "k", Some("w"), 170);
        assert_eq!(
            joined(&mut driver),
            pairs_at(&[("b+_", 140)]),
            "{kind}: b's window closed at 155"
        );
    }
}

#[test]
fn a_global_table_is_joined_by_a_key_the_stream_computes() {
    let builder = StreamsBuilder::new();
    let customers = builder.global_table("customers", strings(), Some("customers"));
    // Orders keyed by order id; the value names the customer: "customer:item".
    let orders = builder.stream("orders", strings());
    let customer_of =
        |_: &String, order: &String| order.split(':').next().unwrap_or_default().to_owned();
    orders
        .join_global(&customers, customer_of, |order, customer| {
            format!("{order} for {customer}")
        })
        .map_values(Some)
        .to(
            "enriched",
            Produced::with(StringSerde, Nullable(StringSerde)),
        );
    orders
        .left_join_global(
            &customers,
            customer_of,
            |order, customer: Option<&String>| {
                format!("{order} for {}", customer.map_or("nobody", String::as_str))
            },
        )
        .map_values(Some)
        .to("all", Produced::with(StringSerde, Nullable(StringSerde)));
    let topology = builder.build().expect("valid");
    assert_eq!(topology.global_topics(), ["customers"]);
    assert_eq!(topology.source_topics(), ["orders"]);
    assert!(
        topology.store_names().is_empty(),
        "a global table has no changelog"
    );
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    pipe(&mut driver, "orders", "o1", Some("c1:book"), 1);
    pipe(&mut driver, "customers", "c1", Some("Ada"), 2);
    pipe(&mut driver, "orders", "o2", Some("c1:pen"), 3);
    pipe(&mut driver, "customers", "c1", None, 4);
    pipe(&mut driver, "orders", "o3", Some("c1:ink"), 5);
    assert_eq!(
        read(&mut driver, "enriched"),
        some(&[("o2", "c1:pen for Ada")])
    );
    assert_eq!(
        read(&mut driver, "all"),
        some(&[
            ("o1", "c1:book for nobody"),
            ("o2", "c1:pen for Ada"),
            ("o3", "c1:ink for nobody"),
        ])
    );
    pipe(&mut driver, "customers", "c2", Some("Grace"), 6);
    let store = driver
        .read_store("customers", StringSerde, StringSerde)
        .expect("readable");
    assert_eq!(store, Some(vec![("c2".to_owned(), "Grace".to_owned())]));
}

#[test]
fn a_topic_is_either_a_stream_or_a_global_table() {
    let builder = StreamsBuilder::new();
    let _stream = builder.stream("t", strings());
    let _global = builder.global_table("t", strings(), None);
    assert!(builder.build().is_err());
}

/// Orders (by order id, valued "customer:item", or just "item" for no customer) joined with
/// the customer each names, through the foreign-key join's subscription and response
/// topics: inner into "inner", left into "left".
fn foreign_key_driver() -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let customers = builder.table(
        "customers",
        Consumed::with(Nullable(StringSerde), StringSerde),
        Some("customers"),
    );
    let orders = builder.table("orders", strings(), Some("orders"));
    let customer_of = |order: &String| {
        order
            .split_once(':')
            .map(|(customer, _)| customer.to_owned())
    };
    let item_of = |order: &String| order.rsplit(':').next().unwrap_or_default().to_owned();
    let write = |table: runnel_streams::KTable<String, String>, topic: &str| {
        table
            .to_stream()
            .to(topic, Produced::with(StringSerde, Nullable(StringSerde)));
    };
    write(
        orders.join_foreign_key(
            &customers,
            customer_of,
            move |order, customer| format!("{} for {customer}", item_of(order)),
            StringSerde,
        ),
        "inner",
    );
    write(
        orders.left_join_foreign_key(
            &customers,
            customer_of,
            move |order, customer: Option<&String>| {
                format!(
                    "{} for {}",
                    item_of(order),
                    customer.map_or("nobody", String::as_str)
                )
            },
            StringSerde,
        ),
        "left",
    );
    let topology = builder.build().expect("valid");
    assert_eq!(topology.internal_topics().len(), 4, "two topics per join");
    TopologyTestDriver::new(&topology).expect("starts")
}

#[test]
fn a_foreign_key_join_follows_both_tables_and_a_change_of_key() {
    let mut driver = foreign_key_driver();
    let mut step = |topic: &str, key: &str, value: Option<&str>| {
        pipe(&mut driver, topic, key, value, 1);
        (read(&mut driver, "inner"), read(&mut driver, "left"))
    };
    let deleted = |key: &str| vec![(key.to_owned(), None)];
    assert_eq!(step("customers", "c1", Some("Ada")), (vec![], vec![]));
    assert_eq!(
        step("orders", "o1", Some("c1:book")),
        (
            some(&[("o1", "book for Ada")]),
            some(&[("o1", "book for Ada")])
        )
    );
    assert_eq!(
        step("orders", "o2", Some("c2:pen")),
        (vec![], some(&[("o2", "pen for nobody")])),
        "no customer c2 yet"
    );
    assert_eq!(
        step("customers", "c2", Some("Grace")),
        (
            some(&[("o2", "pen for Grace")]),
            some(&[("o2", "pen for Grace")])
        )
    );
    assert_eq!(
        step("customers", "c1", Some("Ada L.")),
        (
            some(&[("o1", "book for Ada L.")]),
            some(&[("o1", "book for Ada L.")])
        )
    );
    assert_eq!(
        step("orders", "o1", Some("c2:ink")),
        (
            some(&[("o1", "ink for Grace")]),
            some(&[("o1", "ink for Grace")])
        ),
        "the order moved to another customer"
    );
    assert_eq!(
        step("customers", "c1", Some("Ada X")),
        (vec![], vec![]),
        "o1 no longer follows c1"
    );
    let (inner, left) = step("customers", "c2", None);
    let mut expected_inner = deleted("o1");
    expected_inner.extend(deleted("o2"));
    assert_eq!(inner, expected_inner, "both orders lost their customer");
    assert_eq!(
        left,
        some(&[("o1", "ink for nobody"), ("o2", "pen for nobody")])
    );
    assert_eq!(step("orders", "o2", None), (vec![], deleted("o2")));
    assert_eq!(
        step("orders", "o3", Some("gift")),
        (vec![], some(&[("o3", "gift for nobody")])),
        "an order naming no customer joins nothing, at once"
    );
}

/// As Kafka Streams: after a change of keys, a grouping or a stream-stream join reads
/// through a repartition topic first; a stream-table join, which has no serdes to write
/// one, is refused until the stream is repartitioned.
#[test]
fn operators_after_a_change_of_keys_repartition_or_refuse() {
    let grouped_after = |rekey: bool| {
        let builder = StreamsBuilder::new();
        let stream = builder.stream("in", strings());
        let stream = if rekey {
            stream.map(|key: String, value: String| (value, key))
        } else {
            stream.map_values(|value: String| value.to_uppercase())
        };
        stream
            .filter(|_, _| true)
            .group_by_key(runnel_streams::Grouped::with(StringSerde, StringSerde))
            .count(Some("counts"));
        builder.build().expect("valid").internal_topics().len()
    };
    assert_eq!(grouped_after(true), 1, "map changed the keys");
    assert_eq!(grouped_after(false), 0, "map_values did not");

    let builder = StreamsBuilder::new();
    let table = builder.table("table", strings(), Some("table"));
    builder
        .stream("in", strings())
        .select_key(|_, value: &String| value.clone())
        .join_table(&table, |value, row| format!("{value}{row}"))
        .to("out", Produced::with(StringSerde, StringSerde));
    let refused = builder.build().expect_err("refused");
    assert!(refused.to_string().contains("repartition"), "{refused}");

    let builder = StreamsBuilder::new();
    let table = builder.table("table", strings(), Some("table"));
    builder
        .stream("in", strings())
        .select_key(|_, value: &String| value.clone())
        .repartition(runnel_streams::Repartitioned::with(
            StringSerde,
            StringSerde,
        ))
        .join_table(&table, |value, row| format!("{value}{row}"))
        .to("out", Produced::with(StringSerde, StringSerde));
    assert!(builder.build().is_ok());

    let builder = StreamsBuilder::new();
    let left = builder
        .stream("l", strings())
        .select_key(|_, value: &String| value.clone());
    let right = builder.stream("r", strings());
    let joined = left.join(
        &right,
        |l, r| format!("{l}+{r}"),
        JoinWindows::of_time_difference_with_no_grace(10),
        StreamJoined::with(StringSerde, StringSerde, StringSerde),
    );
    joined.to("out", Produced::with(StringSerde, StringSerde));
    let topology = builder.build().expect("valid");
    let internal = topology.internal_topics();
    assert!(
        internal.len() == 1 && internal[0].starts_with("KSTREAM-JOINTHIS-"),
        "only the side whose keys changed: {internal:?}"
    );
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    pipe(&mut driver, "l", "x", Some("k"), 1);
    pipe(&mut driver, "r", "k", Some("v"), 2);
    assert_eq!(
        read(&mut driver, "out").len(),
        1,
        "joined after the repartition"
    );
}

proptest::proptest! {
    /// In any order and at any time from the epoch on, an inner stream-stream join (grace
    /// wide enough for nothing to be late) emits exactly the pairs of records of one key at
    /// most the difference apart, each once.
    #[test]
    fn a_stream_join_emits_every_pair_within_the_difference_once(
        records in proptest::collection::vec((proptest::bool::ANY, 0u8..3, 0i64..60), 1..30),
        difference in 0i64..15,
    ) {
        let builder = StreamsBuilder::new();
        let left = builder.stream("l", strings());
        let right = builder.stream("r", strings());
        left.join(
            &right,
            |l, r| format!("{l}+{r}"),
            JoinWindows::of_time_difference_and_grace(difference, 1_000),
            StreamJoined::with(StringSerde, StringSerde, StringSerde),
        )
        .map_values(Some)
        .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
        let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
        for (index, &(is_left, key, at)) in records.iter().enumerate() {
            let topic = if is_left { "l" } else { "r" };
            pipe(&mut driver, topic, &format!("k{key}"), Some(&index.to_string()), at);
        }
        let mut emitted: Vec<(String, String)> = read(&mut driver, "out")
            .into_iter()
            .map(|(key, value)| (key, value.unwrap_or_default()))
            .collect();
        emitted.sort();
        let mut expected = Vec::new();
        for (l, &(l_is_left, l_key, l_at)) in records.iter().enumerate() {
            for (r, &(r_is_left, r_key, r_at)) in records.iter().enumerate() {
                if l_is_left && !r_is_left && l_key == r_key && (l_at - r_at).abs() <= difference {
                    expected.push((format!("k{l_key}"), format!("{l}+{r}")));
                }
            }
        }
        expected.sort();
        proptest::prop_assert_eq!(emitted, expected);
    }
}

/// Tables keep keys and values as their serdes write them, not as the topic held them, so
/// lookups by a serialized key find them and the foreign-key join's hashes agree: JSON with
/// spaces and reordered fields joins like any other.
#[test]
fn tables_keep_what_their_serdes_write_so_joins_find_rows_written_any_way() {
    use runnel_streams::JsonSerde;
    use serde_json::Value;
    let builder = StreamsBuilder::new();
    let json = || JsonSerde::<Value>::new();
    let customers = builder.table(
        "customers",
        Consumed::with(JsonSerde::<i64>::new(), json()),
        Some("customers"),
    );
    let regions = builder.global_table(
        "regions",
        Consumed::with(JsonSerde::<i64>::new(), json()),
        Some("regions"),
    );
    let orders = builder.table(
        "orders",
        Consumed::with(StringSerde, json()),
        Some("orders"),
    );
    orders
        .join_foreign_key(
            &customers,
            |order: &Value| order["customer"].as_i64().unwrap_or(-1),
            |order: &Value, customer: &Value| format!("{} for {}", order["item"], customer["name"]),
            StringSerde,
        )
        .to_stream()
        .to("fk", Produced::with(StringSerde, Nullable(StringSerde)));
    builder
        .stream("visits", Consumed::with(StringSerde, json()))
        .join_global(
            &regions,
            |_, visit: &Value| visit["region"].as_i64().unwrap_or(-1),
            |_, region: &Value| region["name"].as_str().unwrap_or_default().to_owned(),
        )
        .map_values(Some)
        .to("global", Produced::with(StringSerde, Nullable(StringSerde)));
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    let raw = |driver: &mut TopologyTestDriver, topic: &str, key: &str, value: &str| {
        driver
            .pipe_raw(topic, Some(key.as_bytes()), Some(value.as_bytes()), 1)
            .expect("piped");
    };
    raw(&mut driver, "customers", " 1 ", r#"{ "name" : "Ada" }"#);
    raw(
        &mut driver,
        "orders",
        "o1",
        r#"{"item":"book",   "customer": 1}"#,
    );
    raw(
        &mut driver,
        "orders",
        "o1",
        r#"{ "customer": 1, "item": "pen" }"#,
    );
    raw(&mut driver, "regions", "  7", r#"{"name":   "north"}"#);
    raw(&mut driver, "visits", "v1", r#"{"region": 7}"#);
    assert_eq!(
        read(&mut driver, "fk"),
        some(&[("o1", r#""book" for "Ada""#), ("o1", r#""pen" for "Ada""#)])
    );
    assert_eq!(read(&mut driver, "global"), some(&[("v1", "north")]));
    let stored = driver
        .read_store("customers", BytesSerde, BytesSerde)
        .expect("readable")
        .expect("written");
    assert_eq!(stored, [(b"1".to_vec(), br#"{"name":"Ada"}"#.to_vec())]);
}

/// A window reaching only after a record (`before` negative) keeps the record for as long
/// as a partner may still come, not `before + after + grace`.
#[test]
fn a_join_window_ahead_of_the_record_keeps_it_until_its_partner_can_come() {
    let builder = StreamsBuilder::new();
    let left = builder.stream("l", strings());
    let right = builder.stream("r", strings());
    left.left_join(
        &right,
        |l, r: Option<&String>| format!("{l}+{}", r.map_or("_", String::as_str)),
        JoinWindows::of_time_difference_with_no_grace(10).before(-5),
        StreamJoined::with(StringSerde, StringSerde, StringSerde),
    )
    .map_values(Some)
    .to("out", Produced::with(StringSerde, Nullable(StringSerde)));
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    pipe(&mut driver, "l", "k", Some("L"), 100);
    pipe(&mut driver, "r", "other", Some("x"), 106);
    pipe(&mut driver, "r", "k", Some("R"), 108);
    pipe(&mut driver, "r", "other", Some("y"), 200);
    assert_eq!(read(&mut driver, "out"), some(&[("k", "L+R")]));
}
