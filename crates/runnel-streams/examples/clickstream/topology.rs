//! The click-stream example's topology, shared by the example and its tests: clicks per
//! page in tumbling one-minute windows of event time (each click's timestamp), taking
//! clicks up to 30 seconds late; later ones are dropped and counted in the application's
//! metrics.

use runnel_streams::{
    Consumed, EmitStrategy, Grouped, Nullable, Produced, StreamsBuilder, StreamsError, StringSerde,
    TimeWindows, Topology, Windowed,
};

/// The windows: one minute, taking clicks up to 30 seconds after they end.
pub(crate) fn windows() -> TimeWindows {
    TimeWindows::of_size_and_grace(60_000, 30_000)
}

/// A window's result as written to the output topic: JSON text.
pub(crate) fn result_json(window: &Windowed<String>, clicks: i64) -> String {
    serde_json::json!({
        "page": window.key,
        "window_start": window.start,
        "window_end": window.end,
        "clicks": clicks,
    })
    .to_string()
}

/// Counts the clicks of topic `input` (any key, the page as the value) per page and window
/// into topic `output`: keyed by page, a JSON object with the window and its count, on
/// every update, or once per window when it closes if `emit` says so.
pub(crate) fn clicks_per_page(
    input: &str,
    output: &str,
    emit: EmitStrategy,
) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Nullable(StringSerde), StringSerde))
        .group_by(
            |_, page: &String| page.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .windowed_by(windows())
        .emit(emit)
        .count(Some("clicks-per-page"))
        .to_stream()
        .flat_map(|window: Windowed<String>, clicks: Option<i64>| {
            clicks.map(|clicks| (window.key.clone(), result_json(&window, clicks)))
        })
        .to(output, Produced::with(StringSerde, StringSerde));
    builder.build()
}
