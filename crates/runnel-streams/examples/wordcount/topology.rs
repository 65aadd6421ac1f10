//! The word count's topology, shared by the example and by the tests that check it keeps
//! its contract: for every word of each line (lower-cased, split on whitespace), a record
//! whose key is the word and whose value is its count so far as a decimal string.

use runnel_streams::{
    Consumed, Grouped, Nullable, Produced, StreamsBuilder, StreamsError, StringSerde, Topology,
};

/// Counts the words of topic `input`'s lines into topic `output`, in store `counts`.
pub(crate) fn word_count(input: &str, output: &str) -> Result<Topology, StreamsError> {
    let builder = StreamsBuilder::new();
    builder
        .stream(input, Consumed::with(Nullable(StringSerde), StringSerde))
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(
            |_, word: &String| word.clone(),
            Grouped::with(StringSerde, StringSerde),
        )
        .count(Some("counts"))
        .to_stream()
        .map_values(|count: Option<i64>| count.map(|count| count.to_string()))
        .to(output, Produced::with(StringSerde, Nullable(StringSerde)));
    builder.build()
}
