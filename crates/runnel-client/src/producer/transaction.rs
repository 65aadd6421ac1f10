//! The transactional producer (KIP-98, transaction version 1): [`Producer::init_transactions`]
//! takes the transactional id's producer id and a new epoch from its transaction coordinator
//! (fencing older instances and aborting what they left open); between
//! [`Producer::begin_transaction`] and [`Producer::commit_transaction`] or
//! [`Producer::abort_transaction`] every record's partition is added to the transaction
//! (AddPartitionsToTxn, once per partition) before the record is buffered, and
//! [`Producer::send_offsets_to_transaction`] commits a consumer's offsets in it
//! (AddOffsetsToTxn, then TxnOffsetCommit to the group's coordinator). Committing flushes
//! every record, then ends the transaction (EndTxn): all of it becomes visible to
//! read_committed consumers, or none.
//!
//! ```no_run
//! # async fn example() -> runnel_client::Result<()> {
//! use runnel_client::producer::{ProduceRecord, Producer, ProducerConfig};
//!
//! let mut config = ProducerConfig::new("localhost:9092");
//! config.transactional_id = Some("payments-1".to_owned());
//! let producer = Producer::connect(config).await?;
//! producer.init_transactions().await?;
//! producer.begin_transaction().await?;
//! producer.send(ProduceRecord::new("ledger").value("debit 10")).await?;
//! producer.send(ProduceRecord::new("ledger").value("credit 10")).await?;
//! producer.commit_transaction().await?; // both, or (abort_transaction) neither
//! # Ok(())
//! # }
//! ```
//!
//! Fencing ([`ClientError::ProducerFenced`]) is final for the instance; a batch that failed
//! for good makes the commit fail with [`ClientError::TransactionAbortable`]: abort, then try
//! the work again.

use std::collections::HashSet;
use std::future::Future;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::Producer;
use crate::consumer::{ConsumerGroupMetadata, TopicPartition};
use crate::error::{ClientError, Result};
use crate::wire::topic_name;

/// Where a transactional producer stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// Before `init_transactions`.
    Uninitialized,
    /// Between transactions.
    Ready,
    /// Between `begin_transaction` and its commit or abort.
    Open,
    /// A newer instance took over: nothing more can be done.
    Fenced(String),
}

/// A transactional producer's transaction state, behind the producer's lock.
#[derive(Debug)]
pub(super) struct Transaction {
    transactional_id: String,
    phase: Phase,
    producer_id: i64,
    epoch: i16,
    /// Partitions added to the open transaction.
    partitions: HashSet<(String, i32)>,
    /// Groups whose offsets were added to the open transaction.
    groups: HashSet<String>,
}

impl Transaction {
    pub(super) fn new(transactional_id: String) -> Self {
        Transaction {
            transactional_id,
            phase: Phase::Uninitialized,
            producer_id: -1,
            epoch: -1,
            partitions: HashSet::new(),
            groups: HashSet::new(),
        }
    }

    fn expect(&self, wanted: &Phase, what: &str) -> Result<()> {
        match &self.phase {
            Phase::Fenced(reason) => Err(ClientError::ProducerFenced(reason.clone())),
            phase if phase == wanted => Ok(()),
            phase => Err(ClientError::InvalidArgument(format!(
                "{what} needs the producer {}, but it is {}",
                describe(wanted),
                describe(phase)
            ))),
        }
    }

    /// Fencing errors end the instance for good.
    fn fenced(&mut self, error: ClientError) -> ClientError {
        let fencing = matches!(
            error.code(),
            Some(ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch)
        );
        if fencing {
            let reason = error.to_string();
            self.phase = Phase::Fenced(reason.clone());
            return ClientError::ProducerFenced(reason);
        }
        error
    }
}

fn describe(phase: &Phase) -> &'static str {
    match phase {
        Phase::Uninitialized => "not yet initialized (call init_transactions)",
        Phase::Ready => "between transactions (call begin_transaction)",
        Phase::Open => "in a transaction",
        Phase::Fenced(_) => "fenced",
    }
}

impl Producer {
    fn transaction(&self) -> Result<&tokio::sync::Mutex<Transaction>> {
        self.handle.transaction.as_ref().ok_or_else(|| {
            ClientError::InvalidArgument("the producer has no transactional_id".to_owned())
        })
    }

    /// Takes the transactional id's producer id and a new epoch, fencing any older instance
    /// with the same id (its open transaction is aborted). Call once, before the first
    /// transaction.
    pub async fn init_transactions(&self) -> Result<()> {
        let mut transaction = self.transaction()?.lock().await;
        if let Phase::Fenced(reason) = &transaction.phase {
            return Err(ClientError::ProducerFenced(reason.clone()));
        }
        let shared = &self.handle.shared;
        let id = transaction.transactional_id.clone();
        let timeout_ms =
            i32::try_from(shared.config.transaction_timeout.as_millis()).unwrap_or(i32::MAX);
        let (producer_id, epoch) = self
            .with_coordinator(&id, |connection| {
                let id = id.clone();
                async move {
                    let version = connection.version_at_least::<InitProducerIdRequest>(0)?;
                    let request = InitProducerIdRequest::default()
                        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(
                            id.clone(),
                        ))))
                        .with_transaction_timeout_ms(timeout_ms)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1);
                    let response = connection.send(request, version).await?;
                    ClientError::check(response.error_code, None, || {
                        format!("InitProducerId of {id:?}")
                    })?;
                    Ok((response.producer_id.0, response.producer_epoch))
                }
            })
            .await
            .map_err(|error| transaction.fenced(error))?;
        transaction.producer_id = producer_id;
        transaction.epoch = epoch;
        transaction.phase = Phase::Ready;
        shared.set_identity(producer_id, epoch);
        Ok(())
    }

    /// Opens a transaction: records sent from now on belong to it.
    pub async fn begin_transaction(&self) -> Result<()> {
        let mut transaction = self.transaction()?.lock().await;
        transaction.expect(&Phase::Ready, "begin_transaction")?;
        transaction.partitions.clear();
        transaction.groups.clear();
        // A failure left over from an aborted transaction is not this one's.
        self.handle.shared.take_transaction_failure();
        transaction.phase = Phase::Open;
        Ok(())
    }

    /// Adds the record's partition to the open transaction, once per partition.
    pub(super) async fn add_to_transaction(&self, topic: &str, partition: i32) -> Result<()> {
        let mut transaction = self.transaction()?.lock().await;
        transaction.expect(&Phase::Open, "a transactional send")?;
        let key = (topic.to_owned(), partition);
        if transaction.partitions.contains(&key) {
            return Ok(());
        }
        let (id, producer_id, epoch) = ids(&transaction);
        let added = self
            .with_coordinator(&id, |connection| {
                let id = id.clone();
                async move {
                    // v4+ is the brokers' batched form (KIP-890); a client builds v3's.
                    let version = connection
                        .version_at_least::<AddPartitionsToTxnRequest>(0)?
                        .min(3);
                    let request = AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_string(
                            id,
                        )))
                        .with_v3_and_below_producer_id(ProducerId(producer_id))
                        .with_v3_and_below_producer_epoch(epoch)
                        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                            .with_name(topic_name(topic))
                            .with_partitions(vec![partition])]);
                    let response = connection.send(request, version).await?;
                    for result in response
                        .results_by_topic_v3_and_below
                        .iter()
                        .flat_map(|topic| &topic.results_by_partition)
                    {
                        ClientError::check(result.partition_error_code, None, || {
                            format!("adding {topic}-{partition} to the transaction")
                        })?;
                    }
                    Ok(())
                }
            })
            .await;
        added.map_err(|error| transaction.fenced(error))?;
        transaction.partitions.insert(key);
        Ok(())
    }

    /// Commits `offsets` (the next offset to read, per partition) for the consumer's group
    /// in the open transaction: they become the group's committed offsets if, and when, the
    /// transaction commits. The coordinator fences the commit of a member whose generation
    /// is gone.
    pub async fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, i64)],
        group: &ConsumerGroupMetadata,
    ) -> Result<()> {
        let mut transaction = self.transaction()?.lock().await;
        transaction.expect(&Phase::Open, "send_offsets_to_transaction")?;
        let (id, producer_id, epoch) = ids(&transaction);
        if !transaction.groups.contains(&group.group_id) {
            let added = self
                .with_coordinator(&id, |connection| {
                    let id = id.clone();
                    async move {
                        let version = connection.version_at_least::<AddOffsetsToTxnRequest>(0)?;
                        let request = AddOffsetsToTxnRequest::default()
                            .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                            .with_producer_id(ProducerId(producer_id))
                            .with_producer_epoch(epoch)
                            .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())));
                        let response = connection.send(request, version).await?;
                        ClientError::check(response.error_code, None, || {
                            format!(
                                "adding group {:?}'s offsets to the transaction",
                                group.group_id
                            )
                        })
                    }
                })
                .await;
            added.map_err(|error| transaction.fenced(error))?;
            transaction.groups.insert(group.group_id.clone());
        }
        let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
        for (tp, offset) in offsets {
            let partition = TxnOffsetCommitRequestPartition::default()
                .with_partition_index(tp.partition)
                .with_committed_offset(*offset)
                .with_committed_leader_epoch(-1);
            match topics
                .iter_mut()
                .find(|topic| topic.name.as_str() == tp.topic)
            {
                Some(topic) => topic.partitions.push(partition),
                None => topics.push(
                    TxnOffsetCommitRequestTopic::default()
                        .with_name(topic_name(&tp.topic))
                        .with_partitions(vec![partition]),
                ),
            }
        }
        let cluster = &self.handle.shared.cluster;
        let committed = self
            .retrying(|| async {
                let connection = cluster.coordinator(&group.group_id).await?;
                let version = connection.version_at_least::<TxnOffsetCommitRequest>(0)?;
                let mut request = TxnOffsetCommitRequest::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(id.clone())))
                    .with_group_id(GroupId(StrBytes::from_string(group.group_id.clone())))
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch)
                    .with_topics(topics.clone());
                if version >= 3 {
                    request.generation_id = group.generation_id;
                    request.member_id = StrBytes::from_string(group.member_id.clone());
                    request.group_instance_id =
                        group.group_instance_id.clone().map(StrBytes::from_string);
                }
                let response = connection.send(request, version).await?;
                for partition in response.topics.iter().flat_map(|topic| &topic.partitions) {
                    let checked = ClientError::check(partition.error_code, None, || {
                        format!("offsets of group {:?} in the transaction", group.group_id)
                    });
                    if let Err(error) = checked {
                        if matches!(
                            error.code(),
                            Some(
                                ResponseError::NotCoordinator
                                    | ResponseError::CoordinatorNotAvailable
                            )
                        ) {
                            cluster.invalidate_coordinator(&group.group_id);
                        }
                        return Err(error);
                    }
                }
                Ok(())
            })
            .await;
        committed.map_err(|error| transaction.fenced(error))
    }

    /// Flushes every record of the open transaction and commits it: read_committed consumers
    /// see all of it from now on. Fails with [`ClientError::TransactionAbortable`] if a
    /// record of it could not be written; then abort.
    pub async fn commit_transaction(&self) -> Result<()> {
        self.end_transaction(true).await
    }

    /// Waits for the open transaction's records to be answered, then aborts it:
    /// read_committed consumers never see them.
    pub async fn abort_transaction(&self) -> Result<()> {
        self.end_transaction(false).await
    }

    async fn end_transaction(&self, commit: bool) -> Result<()> {
        let mut transaction = self.transaction()?.lock().await;
        let what = if commit {
            "commit_transaction"
        } else {
            "abort_transaction"
        };
        transaction.expect(&Phase::Open, what)?;
        self.flush().await?;
        let failure = self.handle.shared.take_transaction_failure();
        if commit {
            if let Some(failure) = failure {
                return Err(match transaction.fenced(failure) {
                    fenced @ ClientError::ProducerFenced(_) => fenced,
                    other => ClientError::TransactionAbortable(other.to_string()),
                });
            }
        }
        if transaction.partitions.is_empty() && transaction.groups.is_empty() {
            // Nothing reached the coordinator: there is nothing to end.
            transaction.phase = Phase::Ready;
            return Ok(());
        }
        let (id, producer_id, epoch) = ids(&transaction);
        let ended = self
            .with_coordinator(&id, |connection| {
                let id = id.clone();
                async move {
                    let version = connection.version_at_least::<EndTxnRequest>(0)?;
                    let request = EndTxnRequest::default()
                        .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                        .with_producer_id(ProducerId(producer_id))
                        .with_producer_epoch(epoch)
                        .with_committed(commit);
                    let response = connection.send(request, version).await?;
                    ClientError::check(response.error_code, None, || what.to_string())
                }
            })
            .await;
        ended.map_err(|error| transaction.fenced(error))?;
        transaction.phase = Phase::Ready;
        Ok(())
    }

    /// Runs `call` on the transaction coordinator's connection, finding it again and
    /// retrying (after `retry_backoff`) on retriable errors, within `max_block`.
    async fn with_coordinator<T, F, Fut>(&self, transactional_id: &str, call: F) -> Result<T>
    where
        F: Fn(std::sync::Arc<crate::connection::Connection>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cluster = &self.handle.shared.cluster;
        self.retrying(|| async {
            let (_, connection) = cluster.transaction_coordinator(transactional_id).await?;
            let answer = call(connection).await;
            if let Err(error) = &answer {
                if matches!(
                    error.code(),
                    Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable)
                ) || matches!(error, ClientError::Io { .. })
                {
                    cluster.invalidate_transaction_coordinator(transactional_id);
                }
            }
            answer
        })
        .await
    }

    /// Retries `attempt` on retriable errors (a coordinator loading or moving, a transaction
    /// still ending, a broken connection) until `max_block` has passed.
    async fn retrying<T, F, Fut>(&self, attempt: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let config = &self.handle.shared.config;
        let deadline = tokio::time::Instant::now() + config.max_block;
        loop {
            match attempt().await {
                Err(error) if error.is_retriable() && tokio::time::Instant::now() < deadline => {
                    tracing::debug!(%error, "retrying a transaction request");
                    tokio::time::sleep(config.retry_backoff).await;
                }
                answer => return answer,
            }
        }
    }
}

fn ids(transaction: &Transaction) -> (String, i64, i16) {
    (
        transaction.transactional_id.clone(),
        transaction.producer_id,
        transaction.epoch,
    )
}
