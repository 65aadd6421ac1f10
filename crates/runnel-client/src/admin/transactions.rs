//! The admin client's view of transactions and idempotent producers: ListTransactions (every
//! broker), DescribeTransactions (the id's coordinator), DescribeProducers (each partition's
//! leader), for `runnel transactions` and `runnel producers`.

use futures::future::try_join_all;
use kafka_protocol::messages::{
    describe_producers_request, DescribeProducersRequest, DescribeTransactionsRequest,
    ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::{Admin, Scope};
use crate::error::{ClientError, Result};
use crate::wire::topic_name;

/// A transactional id, as ListTransactions lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionListing {
    /// The producer's `transactional.id`.
    pub transactional_id: String,
    /// The producer id it holds now.
    pub producer_id: i64,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, CompleteCommit, ...
    pub state: String,
}

/// A transactional id, as its coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// The producer's `transactional.id`.
    pub transactional_id: String,
    /// The broker coordinating it.
    pub coordinator_id: i32,
    /// Kafka's state name: Empty, Ongoing, PrepareCommit, CompleteCommit, ...
    pub state: String,
    /// The producer id it holds now.
    pub producer_id: i64,
    /// The epoch of its current instance; older instances are fenced.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms`: an open transaction older than this is aborted.
    pub timeout_ms: i32,
    /// When the open transaction started; `None` when none is open.
    pub start_ms: Option<i64>,
    /// The partitions of the open transaction.
    pub partitions: Vec<(String, i32)>,
}

/// An idempotent or transactional producer as one partition remembers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDescription {
    /// The partition that remembers it.
    pub partition: i32,
    /// Its producer id.
    pub producer_id: i64,
    /// Its latest epoch.
    pub producer_epoch: i32,
    /// The sequence number of its last record; -1 before its first batch (a transaction
    /// marker made the entry).
    pub last_sequence: i32,
    /// The max timestamp of its last batch.
    pub last_timestamp_ms: i64,
    /// The epoch of the coordinator that wrote its last transaction marker; -1 before any.
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction in this partition.
    pub transaction_start_offset: Option<i64>,
}

impl Admin {
    /// Every transactional id of every broker's coordinators, sorted by id.
    pub async fn list_transactions(&self) -> Result<Vec<TransactionListing>> {
        let brokers = self.cluster.brokers().await;
        let lists = try_join_all(brokers.iter().map(|broker| {
            self.retrying(Scope::Cluster, move || async move {
                let connection = self.cluster.connection(broker.node_id).await?;
                let version = connection.version_at_least::<ListTransactionsRequest>(0)?;
                let request = ListTransactionsRequest::default().with_duration_filter(-1);
                let response = connection.send(request, version).await?;
                ClientError::check(response.error_code, None, || {
                    format!("transactions of broker {}", connection.address())
                })?;
                Ok(response
                    .transaction_states
                    .into_iter()
                    .map(|state| TransactionListing {
                        transactional_id: state.transactional_id.to_string(),
                        producer_id: state.producer_id.0,
                        state: state.transaction_state.to_string(),
                    })
                    .collect::<Vec<_>>())
            })
        }))
        .await?;
        let mut all: Vec<TransactionListing> = lists.into_iter().flatten().collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(all)
    }

    /// One transactional id, from its coordinator. An unknown id is a
    /// [`ClientError::Broker`] with TRANSACTIONAL_ID_NOT_FOUND.
    pub async fn describe_transaction(
        &self,
        transactional_id: &str,
    ) -> Result<TransactionDescription> {
        self.retrying(Scope::Cluster, || async {
            let (coordinator_id, connection) = self
                .cluster
                .transaction_coordinator(transactional_id)
                .await?;
            let version = connection.version_at_least::<DescribeTransactionsRequest>(0)?;
            let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![
                TransactionalId(StrBytes::from_string(transactional_id.to_owned())),
            ]);
            let response = connection.send(request, version).await?;
            let state = response
                .transaction_states
                .into_iter()
                .find(|state| state.transactional_id.as_str() == transactional_id)
                .ok_or_else(|| {
                    ClientError::Protocol(format!(
                        "DescribeTransactions from {} does not describe {transactional_id:?}",
                        connection.address()
                    ))
                })?;
            ClientError::check(state.error_code, None, || {
                format!("transactional id {transactional_id:?}")
            })?;
            Ok(TransactionDescription {
                transactional_id: transactional_id.to_owned(),
                coordinator_id,
                state: state.transaction_state.to_string(),
                producer_id: state.producer_id.0,
                producer_epoch: state.producer_epoch,
                timeout_ms: state.transaction_timeout_ms,
                start_ms: (state.transaction_start_time_ms >= 0)
                    .then_some(state.transaction_start_time_ms),
                partitions: state
                    .topics
                    .into_iter()
                    .flat_map(|topic| {
                        let name = topic.topic.to_string();
                        topic
                            .partitions
                            .into_iter()
                            .map(move |partition| (name.clone(), partition))
                    })
                    .collect(),
            })
        })
        .await
    }

    /// The producers each of the topic's partitions remembers (every partition when
    /// `partitions` is empty), by partition then producer id.
    pub async fn describe_producers(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<ProducerDescription>> {
        let partitions: Vec<i32> = if partitions.is_empty() {
            let metadata = self.cluster.topic(topic).await?;
            metadata.partitions.iter().map(|p| p.partition).collect()
        } else {
            partitions.to_vec()
        };
        let by_leader = self.by_leader(topic, partitions.iter().copied()).await?;
        let answers = try_join_all(
            by_leader
                .into_iter()
                .map(|(leader, partitions)| async move {
                    let connection = self.cluster.connection(leader).await?;
                    let version = connection.version_at_least::<DescribeProducersRequest>(0)?;
                    let request = DescribeProducersRequest::default().with_topics(vec![
                        describe_producers_request::TopicRequest::default()
                            .with_name(topic_name(topic))
                            .with_partition_indexes(partitions),
                    ]);
                    let response = connection.send(request, version).await?;
                    let mut found = Vec::new();
                    for partition in response.topics.into_iter().flat_map(|t| t.partitions) {
                        ClientError::check(
                            partition.error_code,
                            partition.error_message.as_ref(),
                            || format!("producers of {topic}-{}", partition.partition_index),
                        )?;
                        found.extend(partition.active_producers.into_iter().map(|producer| {
                            ProducerDescription {
                                partition: partition.partition_index,
                                producer_id: producer.producer_id.0,
                                producer_epoch: producer.producer_epoch,
                                last_sequence: producer.last_sequence,
                                last_timestamp_ms: producer.last_timestamp,
                                coordinator_epoch: producer.coordinator_epoch,
                                transaction_start_offset: (producer.current_txn_start_offset >= 0)
                                    .then_some(producer.current_txn_start_offset),
                            }
                        }));
                    }
                    Ok::<_, ClientError>(found)
                }),
        )
        .await?;
        let mut all: Vec<ProducerDescription> = answers.into_iter().flatten().collect();
        all.sort_by_key(|producer| (producer.partition, producer.producer_id));
        Ok(all)
    }
}
