//! InitProducerId (for idempotent producers: a fresh producer id at epoch 0; for
//! transactional ones, the transaction coordinator's answer) and
//! DescribeProducers (each partition's idempotent producers, as its log remembers them).
//! Both block (a new id block is written durably; a partition's state is read under its
//! lock) and run on the I/O pool.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId,
};

use super::find_partition;
use crate::broker::Broker;

pub(crate) fn init_producer_id(
    broker: &Broker,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        match broker
            .transactions
            .init_producer_id(broker, version, &request)
        {
            Ok((producer_id, epoch)) => {
                response.producer_id = ProducerId(producer_id);
                response.producer_epoch = epoch;
            }
            Err(code) => response.error_code = code.code(),
        }
        return response;
    }
    // As Kafka: an idempotent producer always gets a new id, even when it names its old one
    // (KIP-360's epoch bump applies to transactional ids only).
    match broker.producer_ids.allocate() {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(error) => {
            error.report();
            response.error_code = error.code().code();
        }
    }
    response
}

pub(crate) fn describe_producers(
    broker: &Broker,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let now_ms = broker.now_ms();
    let mut response = DescribeProducersResponse::default();
    response.topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let mut topic_response = TopicResponse::default();
            topic_response.partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let mut answer = PartitionResponse::default();
                    answer.partition_index = index;
                    let producers =
                        find_partition(broker, &topic.name, index).and_then(|partition| {
                            partition.with_log(|log| {
                                let expiration_ms = log.config().producer_id_expiration_ms;
                                let mut producers: Vec<ProducerState> = log
                                    .producers()
                                    .active(now_ms, expiration_ms)
                                    .map(|(id, entry)| {
                                        let mut state = ProducerState::default();
                                        state.producer_id = ProducerId(id);
                                        state.producer_epoch = i32::from(entry.epoch);
                                        state.last_sequence = entry.last_sequence().unwrap_or(-1);
                                        state.last_timestamp = entry.last_timestamp;
                                        state.coordinator_epoch = entry.coordinator_epoch;
                                        state.current_txn_start_offset =
                                            entry.transaction_first_offset.unwrap_or(-1);
                                        state
                                    })
                                    .collect();
                                producers.sort_by_key(|state| state.producer_id.0);
                                Ok(producers)
                            })
                        });
                    match producers {
                        Ok(producers) => answer.active_producers = producers,
                        Err(error) => {
                            answer.error_code = error.error_code();
                            answer.error_message = error.message_str();
                        }
                    }
                    answer
                })
                .collect();
            topic_response.name = topic.name;
            topic_response
        })
        .collect();
    response
}
