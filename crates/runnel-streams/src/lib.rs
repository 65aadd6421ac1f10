//! Runnel Streams: stream processing in the manner of Kafka Streams, as a Rust library.
//!
//! An application describes a [`Topology`] with a [`StreamsBuilder`]: streams read from
//! topics ([`KStream`]), transformed record by record (filter, map, flat_map, branch, merge,
//! peek), grouped by key and aggregated into tables ([`KTable`]: count, reduce, aggregate,
//! each keeping its results in a state store of the task), and written to topics. The topology is a description: each task (one per input
//! partition, as in Kafka Streams) instantiates its own copy of the processors, so that the
//! state they will hold is the task's alone.
//!
//! What runs a topology is kept apart from it. [`TopologyTestDriver`] runs one without a
//! broker, record by record, for users' unit tests; the runtime over `runnel-client`
//! (consumer group, tasks, commits) comes next and drives the same processors.
//!
//! Keys and values are typed; a [`Serde`] turns them into the bytes a topic holds and back.
//! A record's key or value may be null on the wire: [`Nullable`] makes it an `Option`.

mod error;
mod fk_join;
mod grouped;
mod process;
mod processor;
mod query;
mod runtime;
mod serdes;
mod session;
mod settings;
mod sliding;
mod store;
mod stream;
mod stream_join;
mod table;
mod task;
mod test_driver;
mod topology;
mod window;

pub use error::StreamsError;
pub use grouped::{CogroupedKStream, Grouped, KGroupedStream, Materialized};
pub use process::{Processor, ProcessorContext, StoreHandle};
pub use processor::Record;
pub use query::{ReadOnlyKeyValueStore, StreamsMetrics};
pub use runtime::{KafkaStreams, ProcessingGuarantee, StreamsConfig, DEFAULT_STATE_DIR};
pub use serdes::{BytesSerde, I64Serde, JsonSerde, Nullable, Serde, SerdeError, StringSerde};
pub use session::{SessionWindowedKStream, SessionWindowedSerde, SessionWindows};
pub use sliding::SlidingWindows;
pub use stream::{Consumed, KStream, Predicate, Produced, Repartitioned};
pub use stream_join::{JoinWindows, StreamJoined};
pub use table::{GlobalKTable, KTable};
pub use task::PunctuationType;
pub use test_driver::{OutputRecord, TestInputTopic, TestOutputTopic, TopologyTestDriver};
pub use topology::{StreamsBuilder, Topology};
pub use window::{
    EmitStrategy, TimeWindowedKStream, TimeWindowing, TimeWindows, Windowed, WindowedSerde,
};
