//! FindCoordinator and the group APIs, which the group service answers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Every group is coordinated by this broker. Transaction coordinators (key type 1) and share
/// groups (2) are not served yet.
pub(crate) fn find_coordinator(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let answer = |key_type: i8| -> Result<(), (i16, &'static str)> {
        match key_type {
            // A single node coordinates every group and every transactional id.
            KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => Ok(()),
            _ => Err((
                ResponseError::InvalidRequest.code(),
                "unknown coordinator key type",
            )),
        }
    };
    let mut response = FindCoordinatorResponse::default();
    let node = BrokerId(broker.config.node_id);
    let host = StrBytes::from_string(broker.advertised_host.clone());
    if version < 4 {
        match answer(request.key_type) {
            Ok(()) => {
                response.node_id = node;
                response.host = host;
                response.port = broker.advertised_port;
            }
            Err((code, message)) => {
                response.error_code = code;
                response.node_id = BrokerId(-1);
                if version >= 1 {
                    response.error_message = Some(StrBytes::from_static_str(message));
                }
            }
        }
        return response;
    }
    response.coordinators = request
        .coordinator_keys
        .into_iter()
        .map(|key| {
            let mut coordinator = Coordinator::default();
            coordinator.key = key;
            match answer(request.key_type) {
                Ok(()) => {
                    coordinator.node_id = node;
                    coordinator.host = host.clone();
                    coordinator.port = broker.advertised_port;
                }
                Err((code, message)) => {
                    coordinator.error_code = code;
                    coordinator.node_id = BrokerId(-1);
                    coordinator.port = -1;
                    coordinator.error_message = Some(StrBytes::from_static_str(message));
                }
            }
            coordinator
        })
        .collect();
    response
}
