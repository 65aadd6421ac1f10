//! Windowed aggregation on event time, run by the test driver: tumbling and hopping windows,
//! records out of order and late, the grace period, emission on update or on close, and
//! windows expiring from the store.

use runnel_streams::{
    Consumed, EmitStrategy, Grouped, I64Serde, KStream, Nullable, Produced, StreamsBuilder,
    StringSerde, TestInputTopic, TestOutputTopic, TimeWindows, TopologyTestDriver, Windowed,
    WindowedSerde,
};

/// Counts clicks per page in `windows`, emitting as `emit` says, to topic "counts".
fn clicks_per_page(windows: TimeWindows, emit: EmitStrategy) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let clicks: KStream<String, String> =
        builder.stream("clicks", Consumed::with(StringSerde, StringSerde));
    clicks
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(windows)
        .emit(emit)
        .count(Some("per-page"))
        .to_stream()
        .to(
            "counts",
            Produced::with(WindowedSerde::new(StringSerde, windows), Nullable(I64Serde)),
        );
    TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts")
}

fn click(driver: &mut TopologyTestDriver, page: &str, timestamp: i64) {
    let clicks = TestInputTopic::new("clicks", StringSerde, StringSerde);
    driver
        .pipe_input(&clicks, page.to_owned(), "click".to_owned(), timestamp)
        .expect("piped");
}

/// `(page, window start, count)` of every result emitted so far.
fn counts(driver: &mut TopologyTestDriver, windows: TimeWindows) -> Vec<(String, i64, i64)> {
    let topic = TestOutputTopic::new(
        "counts",
        WindowedSerde::new(StringSerde, windows),
        Nullable(I64Serde),
    );
    driver
        .read_key_values(&topic)
        .expect("read")
        .into_iter()
        .map(|(window, count): (Windowed<String>, Option<i64>)| {
            (window.key, window.start, count.expect("a count"))
        })
        .collect()
}

#[test]
fn tumbling_windows_count_out_of_order_records_within_grace_and_drop_later_ones() {
    let windows = TimeWindows::of_size_and_grace(10, 5);
    let mut driver = clicks_per_page(windows, EmitStrategy::OnWindowUpdate);
    click(&mut driver, "home", 1);
    click(&mut driver, "home", 12);
    // Out of order, within the grace: window [0, 10) closes at stream time 15.
    click(&mut driver, "home", 3);
    click(&mut driver, "home", 15);
    // Late: stream time is 15, [0, 10) has closed.
    click(&mut driver, "home", 4);
    assert_eq!(
        counts(&mut driver, windows),
        [
            ("home".to_owned(), 0, 1),
            ("home".to_owned(), 10, 1),
            ("home".to_owned(), 0, 2),
            ("home".to_owned(), 10, 2),
        ]
    );
    assert_eq!(driver.dropped_records(), 1);
}

#[test]
fn hopping_windows_count_a_record_in_every_window_that_holds_it() {
    let windows = TimeWindows::of_size_with_no_grace(10).advance_by(5);
    let mut driver = clicks_per_page(windows, EmitStrategy::OnWindowUpdate);
    click(&mut driver, "a", 7);
    click(&mut driver, "a", 12);
    assert_eq!(
        counts(&mut driver, windows),
        [
            ("a".to_owned(), 0, 1),
            ("a".to_owned(), 5, 1),
            ("a".to_owned(), 5, 2),
            ("a".to_owned(), 10, 1),
        ]
    );
}

#[test]
fn on_window_close_emits_each_windows_final_count_once_after_its_grace() {
    let windows = TimeWindows::of_size_and_grace(10, 5);
    let mut driver = clicks_per_page(windows, EmitStrategy::OnWindowClose);
    for (page, timestamp) in [("a", 1), ("b", 2), ("a", 8), ("a", 11), ("a", 14)] {
        click(&mut driver, page, timestamp);
    }
    assert!(
        counts(&mut driver, windows).is_empty(),
        "nothing closed yet"
    );
    click(&mut driver, "b", 15);
    assert_eq!(
        counts(&mut driver, windows),
        [("a".to_owned(), 0, 2), ("b".to_owned(), 0, 1)],
        "[0, 10) closed at 15, its results in key order"
    );
    click(&mut driver, "a", 40);
    assert_eq!(
        counts(&mut driver, windows),
        [("a".to_owned(), 10, 2), ("b".to_owned(), 10, 1)]
    );
}

#[test]
fn windows_expire_from_the_store_after_size_plus_grace() {
    let windows = TimeWindows::of_size_and_grace(10, 5);
    let mut driver = clicks_per_page(windows, EmitStrategy::OnWindowUpdate);
    let starts = |driver: &TopologyTestDriver| -> Vec<i64> {
        driver
            .read_store(
                "per-page",
                WindowedSerde::new(StringSerde, windows),
                I64Serde,
            )
            .expect("readable")
            .expect("written")
            .iter()
            .map(|(window, _)| window.start)
            .collect()
    };
    click(&mut driver, "a", 1);
    click(&mut driver, "a", 15);
    // Stream time 15: [0, 10) has closed, and is kept while its start is within size +
    // grace (15) of stream time.
    assert_eq!(starts(&driver), [0, 10]);
    click(&mut driver, "a", 16);
    assert_eq!(starts(&driver), [10], "[0, 10) expired at 16");
}
