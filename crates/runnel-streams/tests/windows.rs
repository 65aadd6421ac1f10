//! Windowed aggregation on event time, run by the test driver: tumbling, hopping, session
//! and sliding windows, records out of order and late, the grace period, emission on update
//! or on close, and windows expiring from the store.

use runnel_streams::{
    Consumed, EmitStrategy, Grouped, I64Serde, KStream, Materialized, Nullable, Produced,
    SessionWindowedSerde, SessionWindows, SlidingWindows, StreamsBuilder, StringSerde,
    TestInputTopic, TestOutputTopic, TimeWindows, TopologyTestDriver, Windowed, WindowedSerde,
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
        Some("|x|yz"),
        "sessions merged into a fresh aggregate (\"\"), as Kafka's, then the record added"
    );
}

/// Counts clicks per page in sliding `windows`, as `(start, end, count)` results in topic
/// "sliding".
fn sliding_counts(windows: SlidingWindows, emit: EmitStrategy) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream("clicks", Consumed::with(StringSerde, StringSerde))
        .group_by_key(Grouped::with(StringSerde, StringSerde))
        .windowed_by(windows)
        .emit(emit)
        .count(Some("sliding"))
        .to_stream()
        .to(
            "sliding",
            Produced::with(windows.windowed_serde(StringSerde), Nullable(I64Serde)),
        );
    TopologyTestDriver::new(&builder.build().expect("valid")).expect("starts")
}

fn sliding_results(
    driver: &mut TopologyTestDriver,
    windows: SlidingWindows,
) -> Vec<(i64, i64, i64)> {
    let topic = TestOutputTopic::new(
        "sliding",
        windows.windowed_serde(StringSerde),
        Nullable(I64Serde),
    );
    driver
        .read_key_values(&topic)
        .expect("read")
        .into_iter()
        .map(|(window, count): (Windowed<String>, Option<i64>)| {
            (window.start, window.end, count.expect("a count"))
        })
        .collect()
}

#[test]
fn sliding_windows_hold_the_records_at_most_the_difference_apart() {
    let windows = SlidingWindows::of_time_difference_and_grace(10, 20);
    let mut driver = sliding_counts(windows, EmitStrategy::OnWindowUpdate);
    click(&mut driver, "a", 20);
    assert_eq!(sliding_results(&mut driver, windows), [(10, 20, 1)]);
    click(&mut driver, "a", 26);
    assert_eq!(
        sliding_results(&mut driver, windows),
        [(16, 26, 2), (21, 31, 1)],
        "26's left window, and 20's right window which 26 made"
    );
    // Stream time 40 closes the windows ending by 20.
    click(&mut driver, "a", 40);
    assert_eq!(sliding_results(&mut driver, windows), [(30, 40, 1)]);
    // Out of order, within the grace: every window holding 23 is recomputed, and 23's own
    // left and right windows appear.
    click(&mut driver, "a", 23);
    assert_eq!(
        sliding_results(&mut driver, windows),
        [(13, 23, 2), (16, 26, 3), (21, 31, 2), (24, 34, 1)]
    );
    // Too late for any open window: 5 + 10 is before the close time (40 - 20).
    click(&mut driver, "a", 5);
    assert_eq!(driver.dropped_records(), 1);
    assert!(sliding_results(&mut driver, windows).is_empty());
    let stored: Vec<(i64, i64)> = driver
        .read_store("sliding", windows.windowed_serde(StringSerde), I64Serde)
        .expect("readable")
        .expect("written")
        .into_iter()
        .map(|(window, count): (Windowed<String>, i64)| (window.start, count))
        .collect();
    assert_eq!(
        stored,
        [(10, 1), (13, 2), (16, 3), (21, 2), (24, 1), (30, 1)],
        "[10, 20] ends at the close time: still open"
    );
    click(&mut driver, "a", 41);
    let starts: Vec<i64> = driver
        .read_store("sliding", windows.windowed_serde(StringSerde), I64Serde)
        .expect("readable")
        .expect("written")
        .into_iter()
        .map(|(window, _): (Windowed<String>, i64)| window.start)
        .collect();
    assert_eq!(
        starts,
        [13, 16, 21, 24, 30, 31, 41],
        "[10, 20] expired at 41, which made 41's left window and 40's right one"
    );
}

#[test]
fn sliding_windows_of_records_near_the_epoch_start_at_it() {
    let windows = SlidingWindows::of_time_difference_with_no_grace(10);
    let mut driver = sliding_counts(windows, EmitStrategy::OnWindowUpdate);
    click(&mut driver, "a", 3);
    click(&mut driver, "a", 7);
    assert_eq!(
        sliding_results(&mut driver, windows),
        [(0, 10, 1), (0, 10, 2), (4, 14, 1)]
    );
}

#[test]
fn sliding_windows_emitted_on_close_give_each_final_count_once() {
    let windows = SlidingWindows::of_time_difference_with_no_grace(10);
    let mut driver = sliding_counts(windows, EmitStrategy::OnWindowClose);
    click(&mut driver, "a", 20);
    assert!(
        sliding_results(&mut driver, windows).is_empty(),
        "[10, 20] ends at the close time: still open"
    );
    click(&mut driver, "a", 26);
    assert_eq!(sliding_results(&mut driver, windows), [(10, 20, 1)]);
    click(&mut driver, "a", 29);
    assert_eq!(sliding_results(&mut driver, windows), [(16, 26, 2)]);
    click(&mut driver, "a", 100);
    assert_eq!(
        sliding_results(&mut driver, windows),
        [(19, 29, 3), (21, 31, 2), (27, 37, 1)],
        "by end"
    );
}

/// The windows sliding windows of `difference` must hold after `times` (no record late):
/// each record's left window (from 0 at the earliest) and each non-empty right window,
/// `(start, count)` in start order.
fn sliding_model(difference: i64, times: &[i64]) -> Vec<(i64, i64)> {
    let mut starts = std::collections::BTreeSet::new();
    for &time in times {
        starts.insert((time - difference).max(0));
        let right = time + 1;
        if times.iter().any(|&t| t >= right && t <= right + difference) {
            starts.insert(right);
        }
    }
    starts
        .into_iter()
        .map(|start| {
            let count = times
                .iter()
                .filter(|&&t| t >= start && t <= start + difference)
                .count();
            (start, count as i64)
        })
        .collect()
}

proptest::proptest! {
    /// In any order, within the grace, sliding windows end up holding what their
    /// definition says, and each result emitted last for a window is its stored one.
    #[test]
    fn sliding_windows_match_their_definition_in_any_order(
        times in proptest::collection::vec(0i64..120, 1..25),
        difference in 1i64..30,
    ) {
        let windows = SlidingWindows::of_time_difference_and_grace(difference, 1_000);
        let mut driver = sliding_counts(windows, EmitStrategy::OnWindowUpdate);
        for &time in &times {
            click(&mut driver, "a", time);
        }
        let stored: Vec<(i64, i64)> = driver
            .read_store("sliding", windows.windowed_serde(StringSerde), I64Serde)
            .expect("readable")
            .expect("written")
            .into_iter()
            .map(|(window, count): (Windowed<String>, i64)| (window.start, count))
            .collect();
        proptest::prop_assert_eq!(&stored, &sliding_model(difference, &times));
        let mut last_emitted = std::collections::BTreeMap::new();
        for (start, _, count) in sliding_results(&mut driver, windows) {
            last_emitted.insert(start, count);
        }
        let last_emitted: Vec<(i64, i64)> = last_emitted.into_iter().collect();
        proptest::prop_assert_eq!(&last_emitted, &stored);
    }
}

proptest::proptest! {
    /// In any order, within the grace, sessions end up as the runs of records at most the
    /// gap apart, and the last result emitted for each is its stored one.
    #[test]
    fn sessions_match_their_definition_in_any_order(
        times in proptest::collection::vec(0i64..300, 1..25),
        gap in 1i64..40,
    ) {
        let windows = SessionWindows::of_inactivity_gap_and_grace(gap, 1_000);
        let mut driver = sessions_per_user(windows, EmitStrategy::OnWindowUpdate);
        for &time in &times {
            click(&mut driver, "a", time);
        }
        let mut sorted = times.clone();
        sorted.sort_unstable();
        let mut expected: Vec<(i64, i64, i64)> = Vec::new();
        for time in sorted {
            match expected.last_mut() {
                Some((_, end, count)) if time - *end <= gap => {
                    *end = time;
                    *count += 1;
                }
                _ => expected.push((time, time, 1)),
            }
        }
        let mut stored: Vec<(i64, i64, i64)> = driver
            .read_store("sessions", SessionWindowedSerde::new(StringSerde), I64Serde)
            .expect("readable")
            .expect("written")
            .into_iter()
            .map(|(session, count): (Windowed<String>, i64)| (session.start, session.end, count))
            .collect();
        stored.sort_unstable();
        proptest::prop_assert_eq!(&stored, &expected);
        let mut last = std::collections::BTreeMap::new();
        for (_, start, end, count) in sessions(&mut driver) {
            last.insert((start, end), count);
        }
        let live: Vec<(i64, i64, i64)> = last
            .into_iter()
            .filter_map(|((start, end), count)| Some((start, end, count?)))
            .collect();
        proptest::prop_assert_eq!(&live, &expected);
    }
}

/// A record is kept while it anchors an open right window, not only while it is in one.
#[test]
fn a_sliding_windows_anchor_outlives_its_own_left_window() {
    let windows = SlidingWindows::of_time_difference_with_no_grace(10);
    let mut driver = sliding_counts(windows, EmitStrategy::OnWindowUpdate);
    click(&mut driver, "a", 100);
    click(&mut driver, "a", 105);
    // Stream time 111: [101, 111], 100's right window, is open until its end passes.
    click(&mut driver, "b", 111);
    click(&mut driver, "a", 103);
    let counts: Vec<(i64, i64)> = driver
        .read_store("sliding", windows.windowed_serde(StringSerde), I64Serde)
        .expect("readable")
        .expect("written")
        .into_iter()
        .filter(|(window, _): &(Windowed<String>, i64)| window.key == "a")
        .map(|(window, count)| (window.start, count))
        .collect();
    assert!(
        counts.contains(&(101, 2)),
        "103 joined [101, 111]: {counts:?}"
    );
}

/// Timestamps a producer may send at the edges: before the epoch (dropped and counted, as no
/// window holds them) and near the end of time (no overflow).
#[test]
fn windows_take_timestamps_at_the_edges_of_time_without_overflowing() {
    let hopping = TimeWindows::of_size_and_grace(10, 5).advance_by(5);
    let mut driver = clicks_per_page(hopping, EmitStrategy::OnWindowUpdate);
    click(&mut driver, "a", -1);
    assert_eq!(driver.dropped_records(), 1);
    click(&mut driver, "a", i64::MAX - 1);
    assert!(!counts(&mut driver, hopping).is_empty());
    let sliding = SlidingWindows::of_time_difference_and_grace(10, 5);
    let mut driver = sliding_counts(sliding, EmitStrategy::OnWindowUpdate);
    click(&mut driver, "a", i64::MAX - 3);
    click(&mut driver, "a", i64::MAX);
    click(&mut driver, "a", -5);
    assert_eq!(driver.dropped_records(), 1);
    let mut driver = sessions_per_user(
        SessionWindows::of_inactivity_gap_and_grace(10, 5),
        EmitStrategy::OnWindowClose,
    );
    click(&mut driver, "a", i64::MAX - 2);
    click(&mut driver, "a", i64::MAX);
    click(&mut driver, "a", -5);
    assert_eq!(driver.dropped_records(), 1);
}

/// A record at the very instant of a one-record session updates it: no tombstone first.
#[test]
fn a_record_at_a_sessions_only_instant_updates_it_in_place() {
    let mut driver = sessions_per_user(
        SessionWindows::of_inactivity_gap_with_no_grace(10),
        EmitStrategy::OnWindowUpdate,
    );
    click(&mut driver, "a", 5);
    click(&mut driver, "a", 5);
    assert_eq!(
        sessions(&mut driver),
        [session("a", 5, 5, Some(1)), session("a", 5, 5, Some(2))]
    );
}
