//! Errors as the protocol reports them: a Kafka error code and, where the response has room for
//! one, a message. Per-partition errors are data in a response, not a failed request.

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;
use runnel_controller::ControllerError;
use runnel_record::RecordError;
use runnel_storage::{ProducerError, StorageError};

use crate::io_pool::PoolError;

/// A Kafka error code with an optional message for the client.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: ResponseError,
    pub message: Option<String>,
}

impl ApiError {
    pub(crate) fn new(code: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: Some(message.into()),
        }
    }

    pub(crate) fn code(code: ResponseError) -> Self {
        ApiError {
            code,
            message: None,
        }
    }

    pub(crate) fn storage(message: String) -> Self {
        tracing::error!(%message, "storage error");
        ApiError::new(ResponseError::KafkaStorageError, message)
    }

    pub(crate) fn error_code(&self) -> i16 {
        self.code.code()
    }

    pub(crate) fn message_str(&self) -> Option<StrBytes> {
        self.message.clone().map(StrBytes::from_string)
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::OffsetOutOfRange { .. } => {
                ApiError::new(ResponseError::OffsetOutOfRange, error.to_string())
            }
            StorageError::InvalidBatch(record) => record.into(),
            StorageError::Producer(producer) => {
                let code = match producer {
                    ProducerError::InvalidEpoch { .. } => ResponseError::InvalidProducerEpoch,
                    ProducerError::OutOfOrderSequence { .. } => {
                        ResponseError::OutOfOrderSequenceNumber
                    }
                    ProducerError::UnknownProducer { .. } => ResponseError::UnknownProducerId,
                    ProducerError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
                    ProducerError::CoordinatorFenced { .. } => {
                        ResponseError::TransactionCoordinatorFenced
                    }
                };
                ApiError::new(code, producer.to_string())
            }
            other => ApiError::storage(other.to_string()),
        }
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        let code = match error {
            // Only while the broker stops: the client retries, on another broker in a cluster.
            PoolError::Stopped => ResponseError::NotLeaderOrFollower,
            PoolError::Panicked => ResponseError::UnknownServerError,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<RecordError> for ApiError {
    fn from(error: RecordError) -> Self {
        // As Kafka's ProduceRequest validation: bytes that do not frame or checksum are
        // CORRUPT_MESSAGE; a well-framed batch Kafka 4.0 will not take is INVALID_RECORD.
        let code = match error {
            RecordError::CorruptCrc { .. }
            | RecordError::Truncated { .. }
            | RecordError::InvalidLength(_) => ResponseError::CorruptMessage,
            RecordError::TimestampOutOfRange { .. } => ResponseError::InvalidTimestamp,
            RecordError::UnsupportedMagic(_)
            | RecordError::Invalid(_)
            | RecordError::Malformed(_)
            | RecordError::DecompressedTooLarge { .. } => ResponseError::InvalidRecord,
        };
        ApiError::new(code, error.to_string())
    }
}

impl From<ControllerError> for ApiError {
    fn from(error: ControllerError) -> Self {
        ApiError::new(error.code, error.message)
    }
}
