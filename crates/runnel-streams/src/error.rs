//! [`StreamsError`]: what stops a topology.

use crate::serdes::SerdeError;

#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    /// A topology that cannot run: a topic read by two sources, a topic nobody reads.
    #[error("invalid topology: {0}")]
    InvalidTopology(String),
    /// A state store holding a value its serde cannot read.
    #[error("store {store:?} holds a value its serde cannot read: {source}")]
    Store { store: String, source: SerdeError },
    /// A task's state on disk could not be read or written.
    #[error("local state: {0}")]
    LocalState(String),
    /// The cluster refused or failed a request of the runtime.
    #[error("{0}")]
    Client(String),
    /// A record for a topic no stream of the topology reads.
    #[error("no stream reads topic {0:?}")]
    UnknownTopic(String),
    /// A record whose key or value its serde cannot read (Kafka Streams' default handler
    /// stops here too: skipping would lose the record silently).
    #[error("topic {topic:?} offset {offset}: cannot deserialize the {part}: {source}")]
    Deserialize {
        topic: String,
        offset: i64,
        part: &'static str,
        source: SerdeError,
    },
}
