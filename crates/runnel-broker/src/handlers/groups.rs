//! FindCoordinator and the group APIs, which the group service answers.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// A one-node broker coordinates every group and transactional id. In a cluster, for now,
/// the usable broker with the lowest id does, so that every member of a group finds the same
/// one; coordinators that move with `__consumer_offsets` partitions come with replicated
/// internal topics. Share groups (key type 2) are not served.
pub(crate) fn find_coordinator(
    broker: &Broker,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let coordinator = coordinating_broker(broker);
    let answer = |key_type: i8| -> Result<(i32, StrBytes, i32), (i16, &'static str)> {
        match key_type {
            KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => coordinator.clone().ok_or((
                ResponseError::CoordinatorNotAvailable.code(),
                "no broker of the cluster is available to coordinate",
            )),
            _ => Err((
                ResponseError::InvalidRequest.code(),
                "unknown coordinator key type",
            )),
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if version < 4 {
        match answer(request.key_type) {
            Ok((node, host, port)) => {
                response.node_id = BrokerId(node);
                response.host = host;
                response.port = port;
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
                Ok((node, host, port)) => {
                    coordinator.node_id = BrokerId(node);
                    coordinator.host = host;
                    coordinator.port = port;
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

/// The broker that coordinates groups and transactions: id, host and port.
fn coordinating_broker(broker: &Broker) -> Option<(i32, StrBytes, i32)> {
    let Some(member) = broker.cluster() else {
        return Some((
            broker.config.node_id,
            StrBytes::from_string(broker.advertised_host.clone()),
            broker.advertised_port,
        ));
    };
    let image = member.image();
    let found = image
        .brokers()
        .filter(|registered| registered.is_usable())
        .find_map(|registered| {
            let listener = registered.registration.listeners.first()?;
            Some((
                registered.registration.id,
                StrBytes::from_string(listener.host.clone()),
                i32::from(listener.port),
            ))
        });
    found
}
