//! What can go wrong between the admin client and a cluster, kept apart by kind: reaching a
//! broker, speaking the protocol, and the broker saying no (a Kafka error code).

use std::io;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::VersionRange;

/// An admin operation that did not complete.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    #[error("no broker address in {0:?}: expected HOST:PORT[,HOST:PORT...]")]
    NoBootstrapAddress(String),

    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        #[source]
        source: io::Error,
    },

    #[error("connection to {address} failed: {source}")]
    Io {
        address: String,
        #[source]
        source: io::Error,
    },

    #[error("{address} sent a {size_bytes}-byte response frame; the limit is {limit_bytes} bytes")]
    ResponseTooLarge {
        address: String,
        size_bytes: i64,
        limit_bytes: usize,
    },

    #[error("{address} answered correlation id {received} while {expected} was awaited")]
    CorrelationMismatch {
        address: String,
        expected: i32,
        received: i32,
    },

    #[error("cannot encode the {api:?} v{version} request: {reason}")]
    Encode {
        api: ApiKey,
        version: i16,
        reason: String,
    },

    #[error("cannot decode the {api:?} v{version} response from {address}: {reason}")]
    Decode {
        address: String,
        api: ApiKey,
        version: i16,
        reason: String,
    },

    #[error("{address} does not serve {api:?}, which this command needs")]
    UnsupportedApi { address: String, api: ApiKey },

    #[error(
        "{address} serves {api:?} versions {broker}, this client speaks {client}: no version in common"
    )]
    NoCommonVersion {
        address: String,
        api: ApiKey,
        broker: VersionRange,
        client: VersionRange,
    },

    /// The broker answered with a Kafka error code.
    #[error("{api:?} for {resource} failed: {}", describe(*error, message.as_deref()))]
    Broker {
        api: ApiKey,
        resource: String,
        error: ResponseError,
        message: Option<String>,
    },

    #[error("{api:?} response from {address} {problem}")]
    InvalidResponse {
        address: String,
        api: ApiKey,
        problem: String,
    },

    #[error("group {0:?} does not exist")]
    GroupNotFound(String),
}

impl AdminError {
    /// Whether the same operation may succeed if tried again (a coordinator still loading, a
    /// leader moving), as the Kafka protocol classifies its error codes.
    pub(crate) fn is_retriable(&self) -> bool {
        match self {
            AdminError::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// `Err` for a non-zero Kafka error code.
    pub(crate) fn check(
        api: ApiKey,
        resource: impl FnOnce() -> String,
        error_code: i16,
        message: Option<&str>,
    ) -> Result<(), AdminError> {
        match ResponseError::try_from_code(error_code) {
            None => Ok(()),
            Some(error) => Err(AdminError::Broker {
                api,
                resource: resource(),
                error,
                message: message.filter(|m| !m.is_empty()).map(str::to_owned),
            }),
        }
    }
}

/// `GroupIdNotFound (error code 69): the group has no classic metadata`, with the broker's own
/// message when it sent one, and whether trying again can help.
pub(crate) fn describe(error: ResponseError, message: Option<&str>) -> String {
    let mut text = format!("{error} (error code {})", error.code());
    if let Some(message) = message {
        text.push_str(": ");
        text.push_str(message);
    }
    if error.is_retriable() {
        text.push_str("; retriable, try again");
    }
    text
}
