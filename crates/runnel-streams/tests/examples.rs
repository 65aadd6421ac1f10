//! The examples' topologies, run by the test driver: the windowed click-stream aggregation
//! with late clicks, and the enrichment of orders with customers. (The word count's
//! contract is checked in `aggregations.rs` and, against the broker, in `runtime.rs`.)

use runnel_streams::{
    EmitStrategy, Nullable, StringSerde, TestInputTopic, TestOutputTopic, TopologyTestDriver,
    Windowed,
};
use serde_json::{json, Value};

#[path = "../examples/clickstream/topology.rs"]
mod clickstream;
#[path = "../examples/enrichment/topology.rs"]
mod enrichment;

fn click(driver: &mut TopologyTestDriver, page: &str, seconds: i64) {
    let clicks = TestInputTopic::new("clicks", Nullable(StringSerde), StringSerde);
    driver
        .pipe_input(&clicks, None, page.to_owned(), seconds * 1_000)
        .expect("piped");
}

/// `(page, window start in seconds, clicks)` written so far.
fn page_views(driver: &mut TopologyTestDriver) -> Vec<(String, i64, i64)> {
    let output = TestOutputTopic::new("page-views", StringSerde, StringSerde);
    driver
        .read_key_values(&output)
        .expect("read")
        .into_iter()
        .map(|(page, json)| {
            let value: Value = serde_json::from_str(&json).expect("JSON");
            let window = Windowed {
                key: page.clone(),
                start: value["window_start"].as_i64().expect("a start"),
                end: value["window_end"].as_i64().expect("an end"),
            };
            let clicks = value["clicks"].as_i64().expect("a count");
            assert_eq!(clickstream::result_json(&window, clicks), json);
            (page, window.start / 1_000, clicks)
        })
        .collect()
}

fn page_view(page: &str, start: i64, clicks: i64) -> (String, i64, i64) {
    (page.to_owned(), start, clicks)
}

#[test]
fn clicks_per_page_count_late_clicks_within_the_grace_and_drop_later_ones() {
    let topology =
        clickstream::clicks_per_page("clicks", "page-views", EmitStrategy::OnWindowUpdate)
            .expect("valid");
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    click(&mut driver, "home", 0);
    click(&mut driver, "home", 30);
    click(&mut driver, "cart", 45);
    click(&mut driver, "home", 65);
    // 25 s late for [0, 60), which takes clicks until 90.
    click(&mut driver, "home", 20);
    click(&mut driver, "home", 100);
    // [0, 60) closed at 90.
    click(&mut driver, "home", 10);
    assert_eq!(
        page_views(&mut driver),
        [
            page_view("home", 0, 1),
            page_view("home", 0, 2),
            page_view("cart", 0, 1),
            page_view("home", 60, 1),
            page_view("home", 0, 3),
            page_view("home", 60, 2),
        ]
    );
    assert_eq!(driver.dropped_records(), 1, "the click 90 s late");
}

#[test]
fn clicks_per_page_emitted_final_give_each_window_once() {
    let topology =
        clickstream::clicks_per_page("clicks", "page-views", EmitStrategy::OnWindowClose)
            .expect("valid");
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    for (page, seconds) in [
        ("home", 0),
        ("home", 30),
        ("cart", 45),
        ("home", 65),
        ("home", 20),
    ] {
        click(&mut driver, page, seconds);
    }
    assert!(page_views(&mut driver).is_empty(), "no window has closed");
    click(&mut driver, "home", 100);
    assert_eq!(
        page_views(&mut driver),
        [page_view("cart", 0, 1), page_view("home", 0, 3)],
        "[0, 60) closed at 90"
    );
    click(&mut driver, "home", 200);
    assert_eq!(page_views(&mut driver), [page_view("home", 60, 2)]);
}

#[test]
fn orders_are_enriched_with_their_customer_or_null() {
    let topology =
        enrichment::enrich_orders("orders", "customers", "enriched-orders").expect("valid");
    let mut driver = TopologyTestDriver::new(&topology).expect("starts");
    let send = |driver: &mut TopologyTestDriver, topic: &str, key: &str, value: Value| {
        driver
            .pipe_raw(
                topic,
                Some(key.as_bytes()),
                Some(value.to_string().as_bytes()),
                1,
            )
            .expect("piped");
    };
    send(
        &mut driver,
        "customers",
        "c1",
        json!({"name": "Ada", "tier": "gold"}),
    );
    send(
        &mut driver,
        "orders",
        "o1",
        json!({"customer": "c1", "item": "book", "amount": 12.5}),
    );
    send(
        &mut driver,
        "orders",
        "o2",
        json!({"customer": "c2", "item": "pen", "amount": 2}),
    );
    send(
        &mut driver,
        "customers",
        "c2",
        json!({"name": "Grace", "tier": "silver"}),
    );
    send(
        &mut driver,
        "orders",
        "o3",
        json!({"customer": "c2", "item": "ink", "amount": 7}),
    );
    let output = TestOutputTopic::new("enriched-orders", StringSerde, StringSerde);
    let enriched: Vec<(String, Value)> = driver
        .read_key_values(&output)
        .expect("read")
        .into_iter()
        .map(|(order, json)| (order, serde_json::from_str(&json).expect("JSON")))
        .collect();
    assert_eq!(
        enriched,
        [
            (
                "o1".to_owned(),
                json!({"customer": {"id": "c1", "name": "Ada", "tier": "gold"}, "item": "book", "amount": 12.5})
            ),
            (
                "o2".to_owned(),
                json!({"customer": null, "item": "pen", "amount": 2}),
            ),
            (
                "o3".to_owned(),
                json!({"customer": {"id": "c2", "name": "Grace", "tier": "silver"}, "item": "ink", "amount": 7})
            ),
        ]
    );
}
