//! The API's errors: a JSON body `{"error": "..."}` with an HTTP status that says whose fault
//! it was: 400 the request's, 404 a topic or group that is not there, 409 one that already
//! is, 502 the cluster (or Connect) answered with an error, 503 it could not be reached, 504
//! it did not answer in time.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kafka_protocol::error::ResponseError;
use runnel_client::ClientError;

/// A failed API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn bad_gateway(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_GATEWAY, message)
    }
}

impl From<ClientError> for ApiError {
    fn from(error: ClientError) -> ApiError {
        let status = match &error {
            ClientError::Broker { code, .. } => status_of_code(*code),
            ClientError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ClientError::Io { .. } | ClientError::NoBrokers(_) | ClientError::Closed => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ClientError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        ApiError::new(status, error.to_string())
    }
}

/// The HTTP status of a Kafka error code: the request's fault, a missing or existing
/// resource, or the cluster's.
fn status_of_code(code: ResponseError) -> StatusCode {
    use ResponseError as E;
    match code {
        E::UnknownTopicOrPartition | E::GroupIdNotFound | E::UnknownTopicId => {
            StatusCode::NOT_FOUND
        }
        E::TopicAlreadyExists => StatusCode::CONFLICT,
        E::InvalidTopicException
        | E::InvalidPartitions
        | E::InvalidReplicationFactor
        | E::InvalidReplicaAssignment
        | E::InvalidConfig
        | E::InvalidRequest
        | E::PolicyViolation
        | E::InvalidGroupId
        | E::NonEmptyGroup => StatusCode::BAD_REQUEST,
        E::RequestTimedOut => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_map_to_whose_fault_it_was() {
        let status = |error: ClientError| ApiError::from(error).status;
        assert_eq!(
            status(ClientError::broker(
                ResponseError::UnknownTopicOrPartition,
                None,
                "topic \"x\""
            )),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(ClientError::broker(
                ResponseError::TopicAlreadyExists,
                None,
                "t"
            )),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status(ClientError::broker(ResponseError::InvalidConfig, None, "t")),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status(ClientError::broker(
                ResponseError::NotCoordinator,
                None,
                "g"
            )),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status(ClientError::NoBrokers("down".to_owned())),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let error = ApiError::from(ClientError::InvalidArgument("no".to_owned()));
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.contains("no"));
    }
}
