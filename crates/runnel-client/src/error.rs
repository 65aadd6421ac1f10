//! What can go wrong between a client and a cluster, by kind: the broker said no (a Kafka error
//! code), the network failed, an answer took too long, the answer made no sense, no broker could
//! be reached, the client was shut down, or the caller asked for something impossible.
//!
//! Every error says whether trying again can help ([`ClientError::is_retriable`]), as Kafka's own
//! clients classify them: a broker error by its code, I/O failures and timeouts always.

use std::fmt;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;

/// A client operation that did not complete.
///
/// ```
/// use kafka_protocol::error::ResponseError;
/// use runnel_client::ClientError;
///
/// let error = ClientError::Broker {
///     code: ResponseError::NotLeaderOrFollower,
///     message: None,
///     context: "topic \"orders\" partition 3".to_owned(),
/// };
/// assert!(error.is_retriable());
/// assert!(error.to_string().contains("orders"));
/// assert!(!ClientError::Closed.is_retriable());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The broker answered with a Kafka error code, for the resource `context` names.
    #[error("{context}: {}", BrokerErrorText(*code, message.as_deref()))]
    Broker {
        /// The Kafka error code.
        code: ResponseError,
        /// The broker's own explanation, when it sent one.
        message: Option<String>,
        /// What the error is about: a topic, a partition, a group, a broker.
        context: String,
    },

    /// Reaching or talking to a broker failed at the socket.
    #[error("connection to {broker} failed: {source}")]
    Io {
        /// The broker's `HOST:PORT`.
        broker: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// No answer came in time.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },

    /// The broker's answer could not be used: undecodable, too large, an unexpected
    /// correlation id, no version both sides speak.
    #[error("protocol error: {0}")]
    Protocol(String),

    /// None of the bootstrap brokers could be reached.
    #[error("no broker reachable: {0}")]
    NoBrokers(String),

    /// The client was shut down.
    #[error("the client is closed")]
    Closed,

    /// The caller asked for something that cannot be done.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A transactional producer was fenced: a newer instance with the same
    /// `transactional_id` started, or its coordinator bumped its epoch when it aborted a
    /// transaction that outlived its timeout. This instance can do nothing more; close it.
    #[error("producer fenced: {0}")]
    ProducerFenced(String),

    /// A batch of the open transaction failed for good: the transaction cannot commit and
    /// must be aborted (then retried).
    #[error("the transaction must be aborted: {0}")]
    TransactionAbortable(String),
}

impl ClientError {
    /// Whether the same operation may succeed if tried again: a leader moving, a coordinator
    /// loading, a broken connection, a slow broker.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Broker { code, .. } => code.is_retriable(),
            ClientError::Io { .. } | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The Kafka error code, when the broker sent one.
    ///
    /// ```
    /// use kafka_protocol::error::ResponseError;
    /// use runnel_client::ClientError;
    ///
    /// assert_eq!(ClientError::Closed.code(), None);
    /// let error = ClientError::broker(ResponseError::TopicAlreadyExists, None, "topic \"t\"");
    /// assert_eq!(error.code(), Some(ResponseError::TopicAlreadyExists));
    /// ```
    pub fn code(&self) -> Option<ResponseError> {
        match self {
            ClientError::Broker { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// A [`ClientError::Broker`]; an empty message counts as none.
    pub fn broker(
        code: ResponseError,
        message: Option<&str>,
        context: impl Into<String>,
    ) -> ClientError {
        ClientError::Broker {
            code,
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
            context: context.into(),
        }
    }

    /// `Err` for a non-zero Kafka error code, with the broker's message and what it is about.
    pub fn check(
        error_code: i16,
        message: Option<&StrBytes>,
        context: impl FnOnce() -> String,
    ) -> Result<()> {
        match ResponseError::try_from_code(error_code) {
            None => Ok(()),
            Some(code) => Err(ClientError::broker(
                code,
                message.map(|m| m.as_str()),
                context(),
            )),
        }
    }
}

/// `TopicAlreadyExists (error code 36): Topic 't' already exists.; retriable` as one line.
struct BrokerErrorText<'a>(ResponseError, Option<&'a str>);

impl fmt::Display for BrokerErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let BrokerErrorText(code, message) = *self;
        write!(f, "{code:?} (error code {})", code.code())?;
        if let Some(message) = message {
            write!(f, ": {message}")?;
        }
        if code.is_retriable() {
            f.write_str(" (retriable)")?;
        }
        Ok(())
    }
}

/// The client's result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriability_follows_the_kind() {
        let io = ClientError::Io {
            broker: "b:9092".to_owned(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        };
        assert!(io.is_retriable());
        let timeout = ClientError::Timeout {
            what: "Metadata".to_owned(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_retriable());
        assert!(!ClientError::Protocol("x".to_owned()).is_retriable());
        assert!(!ClientError::NoBrokers("x".to_owned()).is_retriable());
        assert!(!ClientError::InvalidArgument("x".to_owned()).is_retriable());
        assert!(ClientError::broker(ResponseError::NotCoordinator, None, "g").is_retriable());
        assert!(!ClientError::broker(ResponseError::TopicAlreadyExists, None, "t").is_retriable());
    }

    #[test]
    fn messages_name_the_code_the_resource_and_the_broker_text() {
        let error = ClientError::broker(
            ResponseError::TopicAlreadyExists,
            Some("Topic 't' already exists."),
            "topic \"t\"",
        );
        assert_eq!(
            error.to_string(),
            "topic \"t\": TopicAlreadyExists (error code 36): Topic 't' already exists."
        );
        assert!(
            ClientError::broker(ResponseError::NotCoordinator, Some(""), "group \"g\"")
                .to_string()
                .ends_with("(error code 16) (retriable)")
        );
    }

    #[test]
    fn check_passes_zero_and_wraps_the_rest() {
        assert!(ClientError::check(0, None, || unreachable!()).is_ok());
        let error = ClientError::check(3, None, || "topic \"x\"".to_owned()).unwrap_err();
        assert_eq!(error.code(), Some(ResponseError::UnknownTopicOrPartition));
    }
}
