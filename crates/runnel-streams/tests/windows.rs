//! Windowed aggregation on event time, run by the test driver: tumbling, hopping, session
//! and sliding windows, records out of order and late, the grace period, emission on update
//! or on close, and windows expiring from the store.

use runnel_streams::{
    Consumed, EmitStrategy, Grouped, I64Serde, KStream, Materialized, Nullable, Produced,
    SessionWindowedSerde, SessionWindows, StreamsBuilder, StringSerde, TestInputTopic,
    TestOutputTopic, TimeWindows, TopologyTestDriver, Windowed, WindowedSerde,
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

/// Counts clicks per user in sessions of `windows`, emitting as `emit` says, to topic
/// "sessions".
fn sessions_per_user(windows: SessionWindows, emit: EmitStrategy) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("clicks", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by_session(windows)
        .emit(emit)
        .count(Some("sessions"))
        .to_stream()
        .to(
            "sessions",
            Produced::with(SessionWindowedSerde::new(StringSerde), Nullable(I64Serde)),
        );
    TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts")
}

/// `(user, start, end, count)` of every session result emitted so far; a count of `None` is
/// a session merged into another.
fn sessions(driver: &mut TopologyTestDriver) -> Vec<(String, i64, i64, Option<i64>)> {
    let topic = TestOutputTopic::new(
        "sessions",
        SessionWindowedSerde::new(StringSerde),
        Nullable(I64Serde),
    );
    driver
        .read_key_values(&topic)
        .expect("read")
        .into_iter()
        .map(|(session, count): (Windowed<String>, Option<i64>)| {
            (session.key, session.start, session.end, count)
        })
        .collect()
}

fn session(
    user: &str,
    start: i64,
    end: i64,
    count: Option<i64>,
) -> (String, i64, i64, Option<i64>) {
    (user.to_owned(), start, end, count)
}

#[test]
fn sessions_grow_merge_and_close_after_the_gap() {
    let mut driver = sessions_per_user(
        SessionWindows::of_inactivity_gap_with_no_grace(10),
        EmitStrategy::OnWindowUpdate,
    );
    click(&mut driver, "a", 0);
    click(&mut driver, "a", 5);
    assert_eq!(
        sessions(&mut driver),
        [
            session("a", 0, 0, Some(1)),
            session("a", 0, 0, None),
            session("a", 0, 5, Some(2)),
        ],
        "a record within the gap grows the session: the old one is deleted"
    );
    click(&mut driver, "a", 30);
    // Stream time 30: sessions ending before 20 are closed; 17 would make a new one.
    click(&mut driver, "a", 17);
    assert_eq!(driver.dropped_records(), 1);
    click(&mut driver, "a", 22);
    click(&mut driver, "b", 25);
    assert_eq!(
        sessions(&mut driver),
        [
            session("a", 30, 30, Some(1)),
            session("a", 30, 30, None),
            session("a", 22, 30, Some(2)),
            session("b", 25, 25, Some(1)),
        ],
        "an out-of-order record within the gap joins the later session"
    );
    // 41 is more than the gap after 30 (a record exactly a gap away would join); stream
    // time 41 closes every session ending before 31.
    click(&mut driver, "a", 41);
    assert_eq!(sessions(&mut driver), [session("a", 41, 41, Some(1))]);
    let stored: Vec<(i64, i64, i64)> = driver
        .read_store("sessions", SessionWindowedSerde::new(StringSerde), I64Serde)
        .expect("readable")
        .expect("written")
        .into_iter()
        .map(|(session, count): (Windowed<String>, i64)| (session.start, session.end, count))
        .collect();
    assert_eq!(stored, [(41, 41, 1)], "closed sessions expired");
}

#[test]
fn sessions_emitted_on_close_are_final_and_once() {
    let mut driver = sessions_per_user(
        SessionWindows::of_inactivity_gap_and_grace(10, 5),
        EmitStrategy::OnWindowClose,
    );
    for (user, timestamp) in [("a", 0), ("a", 5), ("b", 8), ("a", 14), ("b", 23)] {
        click(&mut driver, user, timestamp);
    }
    assert!(sessions(&mut driver).is_empty(), "nothing closed yet");
    // Stream time 31: sessions ending before 31 - 10 - 5 = 16 are closed.
    click(&mut driver, "c", 31);
    assert_eq!(
        sessions(&mut driver),
        [session("b", 8, 8, Some(1)), session("a", 0, 14, Some(3))],
        "closed sessions, by end"
    );
    click(&mut driver, "c", 100);
    assert_eq!(
        sessions(&mut driver),
        [session("b", 23, 23, Some(1)), session("c", 31, 31, Some(1))]
    );
}

/// With a grace period, a late record can bridge two sessions still open.
#[test]
fn session_aggregates_merge_with_the_merger() {
    let builder = StreamsBuilder::new();
    builder
        .stream("clicks", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by_session(SessionWindows::of_inactivity_gap_and_grace(10, 20))
        .aggregate(
            String::new,
            |_, page: String, pages: String| format!("{pages}{page}"),
            |_, left: String, right: String| format!("{left}|{right}"),
            Materialized::with(StringSerde).named("pages"),
        )
        .to_stream()
        .filter(|_, pages| pages.is_some())
        .to(
            "pages",
            Produced::with(
                SessionWindowedSerde::new(StringSerde),
                Nullable(StringSerde),
            ),
        );
    let mut driver = TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts");
    let clicks = TestInputTopic::new("clicks", StringSerde, StringSerde);
    for (page, timestamp) in [("x", 0), ("y", 15), ("z", 8)] {
        driver
            .pipe_input(&clicks, "u".to_owned(), page.to_owned(), timestamp)
            .expect("piped");
    }
    let pages = TestOutputTopic::new(
        "pages",
        SessionWindowedSerde::new(StringSerde),
        Nullable(StringSerde),
    );
    let last = driver
        .read_key_values(&pages)
        .expect("read")
        .pop()
        .expect("a result");
    assert_eq!((last.0.start, last.0.end), (0, 15));
    assert_eq!(
        last.1.as_deref(),
        Some("x|yz"),
        "sessions merged, then the record added"
    );
}
