//! Offsets committed in a transaction (TxnOffsetCommit; KIP-98, KIP-447): checked as other
//! commits are (a member and generation, when the request names them, fence zombies), written
//! to the group's partition of `__consumer_offsets` in the producer's transaction, and held
//! aside until that transaction's marker reaches the partition: a commit marker installs
//! them, an abort marker drops them. Until then OffsetFetch with `require_stable` answers
//! UNSTABLE_OFFSET_COMMIT for those partitions, so a consumer taking over does not start from
//! an offset that may still change.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use crate::group::CommittedOffset;
use crate::offsets::PendingCommit;
use crate::records::{self, RecordFormatError, RecordKey};
use crate::GroupCoordinator;

/// Offsets held aside per producer id, in the order they were written.
pub(crate) type TransactionalOffsets = HashMap<i64, Vec<PendingCommit>>;

/// What `prepare_txn_offset_commit` decided: the answer to send once `records` are written
/// (in the producer's transaction), and the offsets to hold aside then.
#[derive(Debug, Clone)]
pub struct TxnOffsetCommitPlan {
    pub response: TxnOffsetCommitResponse,
    pub records: Vec<(Bytes, Option<Bytes>)>,
    pub pending: PendingCommit,
}

impl GroupCoordinator {
    /// Validates a TxnOffsetCommit and builds its records. The shell writes them as a
    /// transactional batch of the request's producer, then calls
    /// [`Self::stage_transactional_offsets`].
    pub fn prepare_txn_offset_commit(
        &mut self,
        now_ms: i64,
        version: i16,
        request: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitPlan {
        // Before KIP-447 (v3) a request names no member; one that names none is not checked.
        let check_member =
            version >= 3 && !(request.generation_id < 0 && request.member_id.is_empty());
        let mut commit = OffsetCommitRequest::default();
        commit.group_id = request.group_id;
        commit.generation_id_or_member_epoch = request.generation_id;
        commit.member_id = request.member_id;
        commit.group_instance_id = request.group_instance_id;
        commit.topics = request
            .topics
            .into_iter()
            .map(|topic| {
                let mut converted = OffsetCommitRequestTopic::default();
                converted.name = topic.name;
                converted.partitions = topic
                    .partitions
                    .into_iter()
                    .map(|partition| {
                        let mut converted = OffsetCommitRequestPartition::default();
                        converted.partition_index = partition.partition_index;
                        converted.committed_offset = partition.committed_offset;
                        converted.committed_leader_epoch = if version >= 2 {
                            partition.committed_leader_epoch
                        } else {
                            -1
                        };
                        converted.committed_metadata = partition.committed_metadata;
                        converted
                    })
                    .collect();
                converted
            })
            .collect();
        // OffsetCommit v8 carries the same fields (leader epochs, instance ids).
        let plan = self.prepare_commit(now_ms, 8, commit, check_member);
        let mut response = TxnOffsetCommitResponse::default();
        response.topics = plan
            .response
            .topics
            .into_iter()
            .map(|topic| {
                let mut converted = TxnOffsetCommitResponseTopic::default();
                converted.name = topic.name;
                converted.partitions = topic
                    .partitions
                    .into_iter()
                    .map(|partition| {
                        let mut converted = TxnOffsetCommitResponsePartition::default();
                        converted.partition_index = partition.partition_index;
                        converted.error_code = partition.error_code;
                        converted
                    })
                    .collect();
                converted
            })
            .collect();
        TxnOffsetCommitPlan {
            response,
            records: plan.records,
            pending: plan.pending,
        }
    }

    /// The records of a TxnOffsetCommit are in the log: hold the offsets aside until the
    /// producer's transaction ends.
    pub fn stage_transactional_offsets(&mut self, producer_id: i64, pending: PendingCommit) {
        if !pending.is_empty() {
            self.transactional_offsets
                .entry(producer_id)
                .or_default()
                .push(pending);
        }
    }

    /// The marker of `producer_id`'s transaction reached `__consumer_offsets`: its offsets
    /// become the groups' committed offsets, or are dropped.
    pub fn complete_transaction(&mut self, producer_id: i64, commit: bool) {
        let Some(staged) = self.transactional_offsets.remove(&producer_id) else {
            return;
        };
        if commit {
            for pending in staged {
                self.apply_offset_commit(pending);
            }
        }
    }

    /// Replays an offset commit record written in `producer_id`'s transaction.
    pub fn replay_transactional(
        &mut self,
        producer_id: i64,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), RecordFormatError> {
        let (
            RecordKey::OffsetCommit {
                group,
                topic,
                partition,
            },
            Some(value),
        ) = (records::decode_key(key)?, value)
        else {
            return Ok(());
        };
        let value = records::decode_offset_value(value)?;
        let committed = CommittedOffset {
            offset: value.offset,
            leader_epoch: value.leader_epoch,
            metadata: value.metadata,
            commit_timestamp_ms: value.commit_timestamp_ms,
        };
        self.stage_transactional_offsets(
            producer_id,
            PendingCommit::new(group, vec![((topic, partition), committed)]),
        );
        Ok(())
    }

    /// Whether an open transaction holds an offset of this group and partition.
    pub(crate) fn has_unstable_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.transactional_offsets
            .values()
            .flatten()
            .any(|pending| {
                pending.group() == group
                    && pending
                        .offsets()
                        .any(|(key, _)| key.0 == topic && key.1 == partition)
            })
    }
}
