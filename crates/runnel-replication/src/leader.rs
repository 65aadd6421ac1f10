//! [`LeaderState`]: one partition as its leader sees it, Kafka's ISR model.
//!
//! Invariants (asserted where they are kept, and checked by the property test below):
//! - The high watermark never moves back, and never passes the durable end of any replica in
//!   the maximal ISR: the committed ISR plus whatever a pending change would add. Counting
//!   the members of a pending expansion before the controller commits it, and the members of
//!   a pending shrink until it does, is what keeps a record below the high watermark on every
//!   replica an election could pick, whichever way the controller answers.
//! - A replica joins the ISR only once it holds everything below the high watermark and
//!   everything the leader wrote in earlier epochs; it leaves when it has not caught up with
//!   the leader's log end for `replica_lag_time_max_ms`. The leader never leaves.
//! - The high watermark moves only while the committed ISR holds `min.insync.replicas`
//!   (capped at the replica count), so replicas that left the ISR below it hold everything
//!   under it and may lead again (KIP-966's eligible leader replicas).
//! - One ISR change is in flight at a time; it carries the partition epoch it was computed
//!   from, so the controller refuses it if the partition moved meanwhile.

use std::collections::{BTreeMap, BTreeSet};

use crate::ReplicaId;

/// The settings the leader's rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `replica.lag.time.max.ms`: a follower that has not caught up with the leader's log
    /// end for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `min.insync.replicas`: an `acks=all` produce needs an ISR at least this large, and
    /// the high watermark moves only while the ISR is (KIP-966).
    pub min_insync_replicas: usize,
}

/// A replica as AlterPartition names it: with the epoch of its broker's registration
/// (KIP-903), so a broker that restarted with an empty disk since it was seen caught up is
/// not put back into the ISR on the strength of its previous life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IsrMember {
    pub id: ReplicaId,
    pub broker_epoch: i64,
}

/// An ISR change for the controller (AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    /// The partition epoch the change was computed from.
    pub partition_epoch: i32,
    pub new_isr: Vec<IsrMember>,
}

/// What the controller's answer to an ISR change, or the lack of one, says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsrChangeOutcome {
    /// Committed: the partition as the controller now has it, still led here in this
    /// leader epoch.
    Committed(Assignment),
    /// Refused after the controller checked the change's epochs against the partition
    /// (INELIGIBLE_REPLICA, INVALID_REQUEST): not applied, and the committed ISR this leader
    /// knows is the controller's. The next change is computed afresh.
    NotApplied,
    /// Perhaps applied: no answer came, or the partition has moved on (another leader or
    /// partition epoch; a reassignment may have completed on this very change and moved the
    /// leadership). Kafka's leader stays in its pending state then, and so does this one:
    /// the change's joiners keep counting toward the high watermark until newer metadata
    /// settles it, and the change is sent again meanwhile.
    Unsettled,
}

/// Why an `acks=all` produce is refused before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceRefusal {
    /// NOT_ENOUGH_REPLICAS.
    NotEnoughReplicas { in_sync: usize, required: usize },
}

/// Whether an `acks=all` produce may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The high watermark has not reached the produce's end yet.
    Waiting,
    Acknowledged,
    /// Replicated to the whole ISR, but the ISR shrank below `min.insync.replicas` meanwhile:
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (the records stay; the producer may retry).
    NotEnoughReplicasAfterAppend,
}

/// Why a follower's fetch is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The fetching broker is not in the partition's replica set.
    NotAReplica,
    /// The fetch offset is past the leader's log end: OFFSET_OUT_OF_RANGE.
    BeyondLogEnd { log_end: i64 },
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy)]
struct Follower {
    /// The follower's log end, as its last fetch offset said; unknown until it fetches in
    /// this leader epoch.
    end_offset: Option<i64>,
    /// When the follower last held everything the leader had; 0 for never.
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end at the follower's last fetch.
    leader_end_at_last_fetch: i64,
    /// The epoch of the follower's broker registration, as sent in its last fetch.
    broker_epoch: i64,
}

impl Follower {
    /// A follower not yet heard from in this leader epoch. One in the ISR is given a full lag
    /// time from `now_ms` to fetch before it counts as lagging.
    fn new(in_isr: bool, now_ms: i64) -> Follower {
        Follower {
            end_offset: None,
            last_caught_up_ms: if in_isr { now_ms } else { 0 },
            last_fetch_ms: 0,
            leader_end_at_last_fetch: -1,
            broker_epoch: -1,
        }
    }
}

/// One partition led by this broker.
#[derive(Debug, Clone)]
pub struct LeaderState {
    local: ReplicaId,
    local_broker_epoch: i64,
    leader_epoch: i32,
    partition_epoch: i32,
    /// Where this leader epoch starts: everything below was written by earlier leaders.
    epoch_start_offset: i64,
    replicas: Vec<ReplicaId>,
    /// As the controller committed it.
    isr: BTreeSet<ReplicaId>,
    pending: Option<IsrChange>,
    /// The pending change's outcome is unknown: the next [`LeaderState::next_isr_change`]
    /// sends it again.
    resend_pending: bool,
    followers: BTreeMap<ReplicaId, Follower>,
    log_end: i64,
    durable_end: i64,
    high_watermark: i64,
    config: LeaderConfig,
}

/// The partition as the controller last published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<ReplicaId>,
    pub isr: Vec<ReplicaId>,
}

/// The leader's own log when it takes the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalLog {
    pub log_end: i64,
    /// Everything below is on disk (fsynced, or in the page cache where the partition is
    /// configured not to wait for fsync).
    pub durable_end: i64,
    /// The high watermark this broker last knew (its checkpoint, or as a follower).
    pub high_watermark: i64,
    pub broker_epoch: i64,
}

impl LeaderState {
    /// Takes leadership at `now_ms`. Followers in the ISR are given a full lag time to fetch
    /// before they count as lagging; their log ends are unknown until they do, and until
    /// then they hold the high watermark where it is.
    pub fn new(
        local: ReplicaId,
        assignment: Assignment,
        log: LocalLog,
        config: LeaderConfig,
        now_ms: i64,
    ) -> LeaderState {
        assert!(
            assignment.isr.contains(&local),
            "a leader is in its own ISR: {local} not in {:?}",
            assignment.isr
        );
        assert!(log.durable_end <= log.log_end, "durable past the log end");
        let isr: BTreeSet<ReplicaId> = assignment.isr.iter().copied().collect();
        let followers = assignment
            .replicas
            .iter()
            .filter(|&&id| id != local)
            .map(|&id| (id, Follower::new(isr.contains(&id), now_ms)))
            .collect();
        let mut state = LeaderState {
            local,
            local_broker_epoch: log.broker_epoch,
            leader_epoch: assignment.leader_epoch,
            partition_epoch: assignment.partition_epoch,
            epoch_start_offset: log.log_end,
            replicas: assignment.replicas,
            isr,
            pending: None,
            resend_pending: false,
            followers,
            log_end: log.log_end,
            durable_end: log.durable_end,
            // A checkpoint may be ahead of a log that lost an unflushed tail.
            high_watermark: log.high_watermark.clamp(0, log.durable_end),
            config,
        };
        // As Kafka's makeLeader does: with no follower to hear from (a sole in-sync replica),
        // what is durable here is committed now, not at the next write, which a quiet
        // partition may never get. Followers not heard from in this epoch hold it back.
        state.advance_high_watermark();
        state
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn log_end(&self) -> i64 {
        self.log_end
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    pub fn replicas(&self) -> &[ReplicaId] {
        &self.replicas
    }

    /// The ISR as the controller committed it, as Metadata reports it.
    pub fn isr(&self) -> Vec<ReplicaId> {
        self.isr.iter().copied().collect()
    }

    /// The committed ISR plus what a pending expansion adds: the replicas the high
    /// watermark waits for.
    fn maximal_isr(&self) -> BTreeSet<ReplicaId> {
        let mut maximal = self.isr.clone();
        if let Some(change) = &self.pending {
            maximal.extend(change.new_isr.iter().map(|member| member.id));
        }
        maximal
    }

    /// Until the high watermark reaches this epoch's start, this leader cannot tell which of
    /// the records below it are committed: ListOffsets answers OFFSET_NOT_AVAILABLE (KIP-207).
    pub fn high_watermark_reached_epoch_start(&self) -> bool {
        self.high_watermark >= self.epoch_start_offset
    }

    /// The controller published a new state for the partition with this broker still leading
    /// in the same leader epoch (a committed ISR change, a reassignment's new replica set).
    /// A pending change the new state supersedes is dropped.
    pub fn update_assignment(&mut self, assignment: Assignment, now_ms: i64) {
        assert_eq!(
            assignment.leader_epoch, self.leader_epoch,
            "a new leader epoch makes a new leader state"
        );
        if assignment.partition_epoch <= self.partition_epoch {
            return;
        }
        self.partition_epoch = assignment.partition_epoch;
        self.isr = assignment.isr.iter().copied().collect();
        assert!(
            self.isr.contains(&self.local),
            "the leader left its own ISR"
        );
        self.pending = None;
        self.resend_pending = false;
        let local = self.local;
        self.followers
            .retain(|id, _| assignment.replicas.contains(id));
        for &id in assignment.replicas.iter().filter(|&&id| id != local) {
            let in_isr = self.isr.contains(&id);
            self.followers
                .entry(id)
                .or_insert_with(|| Follower::new(in_isr, now_ms));
        }
        self.replicas = assignment.replicas;
        self.advance_high_watermark();
    }

    /// The topic's `min.insync.replicas` changed (AlterConfigs): from now on the high
    /// watermark moves, and `acks=all` is taken, against the new value. Returns whether the
    /// high watermark moved (a lower value may free it).
    pub fn set_min_insync_replicas(&mut self, min_insync_replicas: usize) -> bool {
        self.config.min_insync_replicas = min_insync_replicas;
        self.advance_high_watermark()
    }

    /// Records appended locally; the new log end.
    pub fn on_append(&mut self, log_end: i64) {
        assert!(log_end >= self.log_end, "the leader's log end moved back");
        self.log_end = log_end;
    }

    /// The local log is durable below `durable_end`. Returns whether the high watermark moved.
    pub fn on_durable(&mut self, durable_end: i64) -> bool {
        assert!(durable_end <= self.log_end, "durable past the log end");
        if durable_end <= self.durable_end {
            return false;
        }
        self.durable_end = durable_end;
        self.advance_high_watermark()
    }

    /// A follower fetched at `fetch_offset`, which it sends only once everything below is
    /// durable on its side. Returns whether the high watermark moved.
    pub fn on_follower_fetch(
        &mut self,
        id: ReplicaId,
        broker_epoch: i64,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<bool, FetchError> {
        let log_end = self.log_end;
        let follower = self.followers.get_mut(&id).ok_or(FetchError::NotAReplica)?;
        if fetch_offset > log_end {
            return Err(FetchError::BeyondLogEnd { log_end });
        }
        // Kafka's rule: caught up now if it has everything; otherwise caught up as of its
        // previous fetch if it now has what the leader had then.
        if fetch_offset >= log_end {
            follower.last_caught_up_ms = now_ms;
        } else if fetch_offset >= follower.leader_end_at_last_fetch
            && follower.leader_end_at_last_fetch >= 0
        {
            follower.last_caught_up_ms = follower.last_caught_up_ms.max(follower.last_fetch_ms);
        }
        follower.end_offset = Some(fetch_offset);
        follower.last_fetch_ms = now_ms;
        follower.leader_end_at_last_fetch = log_end;
        follower.broker_epoch = broker_epoch;
        Ok(self.advance_high_watermark())
    }

    /// `min.insync.replicas`, capped at the replica count (KIP-966): a partition with fewer
    /// replicas than the setting still takes writes from all of them.
    fn effective_min_isr(&self) -> usize {
        self.config
            .min_insync_replicas
            .min(self.replicas.len())
            .max(1)
    }

    fn advance_high_watermark(&mut self) -> bool {
        // KIP-966: below min.insync.replicas the high watermark stays put, so a replica that
        // left the ISR then (and joined the ELR) is known to hold everything below it.
        if self.isr.len() < self.effective_min_isr() {
            return false;
        }
        let mut candidate = self.durable_end;
        for id in self.maximal_isr() {
            if id == self.local {
                continue;
            }
            match self
                .followers
                .get(&id)
                .and_then(|follower| follower.end_offset)
            {
                Some(end) => candidate = candidate.min(end),
                // Not heard from in this epoch: it may hold less than anything we have.
                None => return false,
            }
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            true
        } else {
            false
        }
    }

    fn caught_up(&self, follower: &Follower, now_ms: i64) -> bool {
        now_ms - follower.last_caught_up_ms <= self.config.replica_lag_time_max_ms
    }

    /// The ISR change to propose at `now_ms`, if any and if none is in flight: followers that
    /// lag leave, followers that caught up join (only those `eligible` says the controller
    /// would accept: registered, unfenced, not shutting down). The change is in flight
    /// until [`LeaderState::isr_change_done`] or a newer assignment.
    pub fn next_isr_change(
        &mut self,
        now_ms: i64,
        eligible: impl Fn(ReplicaId) -> bool,
    ) -> Option<IsrChange> {
        if let Some(pending) = &self.pending {
            if std::mem::take(&mut self.resend_pending) {
                return Some(pending.clone());
            }
            return None;
        }
        let mut new_isr = self.isr.clone();
        for (&id, follower) in &self.followers {
            let in_isr = self.isr.contains(&id);
            if in_isr && !self.caught_up(follower, now_ms) {
                new_isr.remove(&id);
            } else if !in_isr
                && eligible(id)
                && self.caught_up(follower, now_ms)
                && follower
                    .end_offset
                    .is_some_and(|end| end >= self.high_watermark && end >= self.epoch_start_offset)
            {
                new_isr.insert(id);
            }
        }
        if new_isr == self.isr {
            return None;
        }
        let change = IsrChange {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            new_isr: new_isr
                .into_iter()
                .map(|id| IsrMember {
                    id,
                    broker_epoch: if id == self.local {
                        self.local_broker_epoch
                    } else {
                        self.followers.get(&id).map_or(-1, |f| f.broker_epoch)
                    },
                })
                .collect(),
        };
        self.pending = Some(change.clone());
        Some(change)
    }

    /// The change `answered` came back with `outcome`. Committed: applied as
    /// [`LeaderState::update_assignment`] would. Not applied: the next
    /// [`LeaderState::next_isr_change`] computes afresh. Unsettled: it stays in flight, to be
    /// sent again, until a newer assignment settles it. An answer to a change no longer in
    /// flight (a newer assignment superseded it, and another may be in flight now) does not
    /// touch the one that is: the high watermark must keep counting that one's joiners until
    /// its own answer comes.
    pub fn isr_change_done(
        &mut self,
        answered: &IsrChange,
        outcome: IsrChangeOutcome,
        now_ms: i64,
    ) {
        let in_flight = self.pending.as_ref() == Some(answered);
        match outcome {
            IsrChangeOutcome::Committed(assignment) => {
                if in_flight {
                    self.pending = None;
                }
                self.update_assignment(assignment, now_ms);
            }
            IsrChangeOutcome::NotApplied => {
                if in_flight {
                    // The maximal ISR shrinks back to the committed one.
                    self.pending = None;
                    self.advance_high_watermark();
                }
            }
            IsrChangeOutcome::Unsettled => {
                if in_flight {
                    self.resend_pending = true;
                }
            }
        }
    }

    /// Checks an `acks=all` produce before it is written: the committed ISR must be at least
    /// `min.insync.replicas`.
    pub fn check_produce(&self) -> Result<(), ProduceRefusal> {
        let in_sync = self.isr.len();
        let required = self.effective_min_isr();
        if in_sync < required {
            Err(ProduceRefusal::NotEnoughReplicas { in_sync, required })
        } else {
            Ok(())
        }
    }

    /// Whether an `acks=all` produce whose records end before `end_offset` may be answered.
    pub fn ack(&self, end_offset: i64) -> AckOutcome {
        if self.high_watermark < end_offset {
            AckOutcome::Waiting
        } else if self.maximal_isr().len() < self.effective_min_isr() {
            AckOutcome::NotEnoughReplicasAfterAppend
        } else {
            AckOutcome::Acknowledged
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LAG_MS: i64 = 30_000;

    fn config(min_insync_replicas: usize) -> LeaderConfig {
        LeaderConfig {
            replica_lag_time_max_ms: LAG_MS,
            min_insync_replicas,
        }
    }

    fn assignment(partition_epoch: i32, replicas: &[i32], isr: &[i32]) -> Assignment {
        Assignment {
            leader_epoch: 1,
            partition_epoch,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }

    fn leader_of_three(log_end: i64, min_insync: usize) -> LeaderState {
        LeaderState::new(
            1,
            assignment(0, &[1, 2, 3], &[1, 2, 3]),
            LocalLog {
                log_end,
                durable_end: log_end,
                high_watermark: 0,
                broker_epoch: 10,
            },
            config(min_insync),
            0,
        )
    }

    fn ids(change: &IsrChange) -> Vec<ReplicaId> {
        change.new_isr.iter().map(|member| member.id).collect()
    }

    /// Replicas 1 (leading), 2 and 3, the ISR 1 and 2, everyone's log ending at 10: replica 3
    /// has caught up and may join.
    fn leader_whose_third_replica_caught_up() -> Result<LeaderState, FetchError> {
        let mut leader = LeaderState::new(
            1,
            assignment(0, &[1, 2, 3], &[1, 2]),
            LocalLog {
                log_end: 10,
                durable_end: 10,
                high_watermark: 10,
                broker_epoch: 10,
            },
            config(1),
            0,
        );
        leader.on_follower_fetch(2, 20, 10, 1)?;
        leader.on_follower_fetch(3, 30, 10, 1)?;
        Ok(leader)
    }

    #[test]
    fn the_high_watermark_waits_for_every_in_sync_replica_to_be_durable() -> Result<(), FetchError>
    {
        let mut leader = leader_of_three(0, 2);
        leader.on_append(10);
        assert!(!leader.on_durable(10), "followers not heard from");
        leader.on_follower_fetch(2, 20, 10, 5)?;
        assert_eq!(leader.high_watermark(), 0, "replica 3 is unknown");
        assert!(leader.on_follower_fetch(3, 30, 6, 5)?);
        assert_eq!(leader.high_watermark(), 6);
        assert_eq!(leader.ack(10), AckOutcome::Waiting);
        leader.on_follower_fetch(3, 30, 10, 6)?;
        assert_eq!(leader.high_watermark(), 10);
        assert_eq!(leader.ack(10), AckOutcome::Acknowledged);
        Ok(())
    }

    #[test]
    fn a_sole_in_sync_replica_commits_what_it_holds_durably_as_it_takes_the_lead() {
        let local = |durable_end| LocalLog {
            log_end: 10,
            durable_end,
            high_watermark: 0,
            broker_epoch: 10,
        };
        let alone = LeaderState::new(1, assignment(0, &[1], &[1]), local(8), config(1), 0);
        assert_eq!(
            alone.high_watermark(),
            8,
            "durable here is committed, not the rest"
        );
        let with_followers = leader_of_three(10, 1);
        assert_eq!(
            with_followers.high_watermark(),
            0,
            "followers not heard from"
        );
        let last_standing =
            LeaderState::new(1, assignment(0, &[1, 2], &[1]), local(10), config(2), 0);
        assert_eq!(
            last_standing.high_watermark(),
            0,
            "below min.insync.replicas it stays put (KIP-966)"
        );
    }

    #[test]
    fn the_leaders_own_unsynced_records_are_not_committed() -> Result<(), FetchError> {
        let mut leader = leader_of_three(0, 2);
        leader.on_append(10);
        leader.on_follower_fetch(2, 20, 10, 1)?;
        leader.on_follower_fetch(3, 30, 10, 1)?;
        assert_eq!(leader.high_watermark(), 0);
        assert!(leader.on_durable(10));
        assert_eq!(leader.high_watermark(), 10);
        Ok(())
    }

    #[test]
    fn a_lagging_follower_is_proposed_out_and_the_high_watermark_moves_once_committed(
    ) -> Result<(), FetchError> {
        let mut leader = leader_of_three(0, 2);
        leader.on_append(10);
        leader.on_durable(10);
        leader.on_follower_fetch(2, 20, 10, 1_000)?;
        assert_eq!(leader.next_isr_change(LAG_MS, |_| true), None);
        let change = leader
            .next_isr_change(LAG_MS + 1, |_| true)
            .ok_or(FetchError::NotAReplica)?;
        assert_eq!(ids(&change), vec![1, 2]);
        assert_eq!(change.new_isr[0].broker_epoch, 10);
        assert_eq!(change.new_isr[1].broker_epoch, 20);
        assert_eq!(
            leader.next_isr_change(LAG_MS + 2, |_| true),
            None,
            "one in flight"
        );
        assert_eq!(
            leader.high_watermark(),
            0,
            "until committed, replica 3 still counts"
        );
        leader.isr_change_done(
            &change,
            IsrChangeOutcome::Committed(assignment(1, &[1, 2, 3], &[1, 2])),
            LAG_MS + 3,
        );
        assert_eq!(leader.high_watermark(), 10);
        assert_eq!(leader.isr(), vec![1, 2]);
        Ok(())
    }

    #[test]
    fn a_follower_rejoins_once_it_has_the_high_watermark_and_the_epoch_start(
    ) -> Result<(), FetchError> {
        let mut leader = LeaderState::new(
            1,
            assignment(0, &[1, 2], &[1]),
            LocalLog {
                log_end: 100,
                durable_end: 100,
                high_watermark: 100,
                broker_epoch: 10,
            },
            config(1),
            0,
        );
        leader.on_append(120);
        leader.on_durable(120);
        assert_eq!(leader.high_watermark(), 120);
        leader.on_follower_fetch(2, 20, 90, 1)?;
        assert_eq!(
            leader.next_isr_change(2, |_| true),
            None,
            "below the epoch start"
        );
        leader.on_follower_fetch(2, 20, 120, 3)?;
        assert_eq!(
            leader.next_isr_change(4, |_| false),
            None,
            "the controller would refuse it"
        );
        let change = leader
            .next_isr_change(4, |_| true)
            .ok_or(FetchError::NotAReplica)?;
        assert_eq!(ids(&change), vec![1, 2]);
        // While the expansion is pending, the joiner counts toward the high watermark.
        leader.on_append(130);
        leader.on_durable(130);
        assert_eq!(leader.high_watermark(), 120);
        leader.isr_change_done(&change, IsrChangeOutcome::NotApplied, 5);
        assert_eq!(
            leader.high_watermark(),
            130,
            "refused: back to the committed ISR"
        );
        Ok(())
    }

    /// An expansion the controller may have committed (no answer came, or the partition
    /// moved on, as when a reassignment completes on this very change and elects the
    /// joiner) keeps its joiner counting: the joiner may lead now, holding only what it had.
    #[test]
    fn an_unsettled_expansion_keeps_its_joiner_counting_and_is_sent_again() -> Result<(), FetchError>
    {
        let mut leader = leader_whose_third_replica_caught_up()?;
        let change = leader
            .next_isr_change(2, |_| true)
            .ok_or(FetchError::NotAReplica)?;
        assert_eq!(ids(&change), vec![1, 2, 3]);
        leader.isr_change_done(&change, IsrChangeOutcome::Unsettled, 3);
        leader.on_append(15);
        leader.on_durable(15);
        leader.on_follower_fetch(2, 20, 15, 4)?;
        assert_eq!(
            leader.high_watermark(),
            10,
            "replica 3 may be in the ISR, and it has only 10"
        );
        assert_eq!(
            leader.next_isr_change(5, |_| true),
            Some(change.clone()),
            "sent again"
        );
        assert_eq!(leader.next_isr_change(6, |_| true), None, "once");
        leader.isr_change_done(
            &change,
            IsrChangeOutcome::Committed(assignment(1, &[1, 2, 3], &[1, 2, 3])),
            7,
        );
        leader.on_follower_fetch(3, 30, 15, 8)?;
        assert_eq!(leader.high_watermark(), 15);
        Ok(())
    }

    #[test]
    fn acks_all_needs_min_insync_replicas_before_and_after_the_append() -> Result<(), FetchError> {
        let leader = LeaderState::new(
            1,
            assignment(3, &[1, 2, 3], &[1]),
            LocalLog {
                log_end: 0,
                durable_end: 0,
                high_watermark: 0,
                broker_epoch: 10,
            },
            config(2),
            0,
        );
        assert_eq!(
            leader.check_produce(),
            Err(ProduceRefusal::NotEnoughReplicas {
                in_sync: 1,
                required: 2
            })
        );
        let mut leader = leader_of_three(0, 2);
        assert_eq!(leader.check_produce(), Ok(()));
        leader.on_append(5);
        leader.on_durable(5);
        leader.on_follower_fetch(2, 20, 5, 1)?;
        leader.on_follower_fetch(3, 30, 5, 1)?;
        leader.update_assignment(assignment(1, &[1, 2, 3], &[1]), 2);
        assert_eq!(leader.ack(5), AckOutcome::NotEnoughReplicasAfterAppend);
        Ok(())
    }

    /// An answer to a change a newer assignment already superseded must not clear the change
    /// in flight since: its joiner still counts toward the high watermark.
    #[test]
    fn a_late_answer_to_an_old_change_leaves_the_new_one_in_flight() -> Result<(), FetchError> {
        let mut leader = leader_whose_third_replica_caught_up()?;
        let old = leader
            .next_isr_change(2, |_| true)
            .ok_or(FetchError::NotAReplica)?;
        assert_eq!(ids(&old), vec![1, 2, 3]);
        // Metadata moves on (another change committed meanwhile) before the answer comes.
        leader.update_assignment(assignment(5, &[1, 2, 3], &[1, 2]), 3);
        let new = leader
            .next_isr_change(4, |_| true)
            .ok_or(FetchError::NotAReplica)?;
        leader.isr_change_done(&old, IsrChangeOutcome::NotApplied, 5);
        assert_eq!(
            leader.next_isr_change(6, |_| true),
            None,
            "the new change is still in flight"
        );
        leader.on_append(12);
        leader.on_durable(12);
        leader.on_follower_fetch(2, 20, 12, 7)?;
        assert_eq!(
            leader.high_watermark(),
            10,
            "the joiner of the change in flight, replica 3, still counts"
        );
        leader.isr_change_done(&new, IsrChangeOutcome::NotApplied, 8);
        assert_eq!(leader.high_watermark(), 12);
        Ok(())
    }

    #[test]
    fn below_min_insync_replicas_the_high_watermark_stays_put() {
        let mut leader = LeaderState::new(
            1,
            assignment(2, &[1, 2, 3], &[1]),
            LocalLog {
                log_end: 4,
                durable_end: 4,
                high_watermark: 4,
                broker_epoch: 10,
            },
            config(2),
            0,
        );
        leader.on_append(9);
        assert!(!leader.on_durable(9), "an acks=1 write is not committed");
        assert_eq!(leader.high_watermark(), 4);
        // With a single replica, min.insync.replicas=2 is capped at 1.
        let mut alone = LeaderState::new(
            1,
            assignment(0, &[1], &[1]),
            LocalLog {
                log_end: 0,
                durable_end: 0,
                high_watermark: 0,
                broker_epoch: 10,
            },
            config(2),
            0,
        );
        assert_eq!(alone.check_produce(), Ok(()));
        alone.on_append(3);
        assert!(alone.on_durable(3));
        assert_eq!(alone.ack(3), AckOutcome::Acknowledged);
    }

    #[test]
    fn a_lowered_min_insync_replicas_frees_the_high_watermark() {
        let mut leader = LeaderState::new(
            1,
            assignment(2, &[1, 2, 3], &[1]),
            LocalLog {
                log_end: 4,
                durable_end: 4,
                high_watermark: 4,
                broker_epoch: 10,
            },
            config(2),
            0,
        );
        leader.on_append(9);
        assert!(
            !leader.on_durable(9),
            "alone in the ISR, below min.insync.replicas 2"
        );
        assert!(
            leader.set_min_insync_replicas(1),
            "lowered to 1, the records commit"
        );
        assert_eq!(leader.high_watermark(), 9);
        leader.on_append(12);
        leader.set_min_insync_replicas(3);
        assert!(!leader.on_durable(12), "raised to 3, they wait again");
        assert_eq!(leader.high_watermark(), 9);
    }

    #[test]
    fn fetches_from_strangers_or_past_the_end_are_refused() {
        let mut leader = leader_of_three(10, 1);
        assert_eq!(
            leader.on_follower_fetch(9, 90, 0, 1),
            Err(FetchError::NotAReplica)
        );
        assert_eq!(
            leader.on_follower_fetch(2, 20, 11, 1),
            Err(FetchError::BeyondLogEnd { log_end: 10 })
        );
    }

    #[test]
    fn a_checkpointed_high_watermark_past_a_lost_tail_is_clamped() {
        let leader = LeaderState::new(
            1,
            assignment(0, &[1], &[1]),
            LocalLog {
                log_end: 8,
                durable_end: 8,
                high_watermark: 12,
                broker_epoch: 10,
            },
            config(1),
            0,
        );
        assert_eq!(leader.high_watermark(), 8);
        assert!(leader.high_watermark_reached_epoch_start());
    }

    #[derive(Debug, Clone)]
    enum Step {
        Append(i64),
        Durable,
        Fetch {
            follower: usize,
            ahead: i64,
        },
        Tick(i64),
        Propose,
        /// 0: committed; 1: not applied; 2: unsettled (perhaps committed).
        Answer {
            outcome: u8,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (1i64..20).prop_map(Step::Append),
            Just(Step::Durable),
            (0usize..4, 0i64..20).prop_map(|(follower, ahead)| Step::Fetch { follower, ahead }),
            (0i64..20_000).prop_map(Step::Tick),
            Just(Step::Propose),
            (0u8..3).prop_map(|outcome| Step::Answer { outcome }),
        ]
    }

    proptest! {
        /// Whatever the order of appends, fsyncs, fetches and controller answers: the high
        /// watermark never moves back and never passes the durable end of a replica in the
        /// maximal ISR, nor of one a change with an unknown outcome may have added, and an
        /// acknowledgement is never given for records above it.
        #[test]
        fn the_high_watermark_is_monotone_and_on_every_maximal_isr_member(
            steps in proptest::collection::vec(step(), 1..200)
        ) {
            let replicas = [1, 2, 3, 4, 5];
            let mut leader = LeaderState::new(
                1,
                assignment(0, &replicas, &[1, 2, 3]),
                LocalLog { log_end: 0, durable_end: 0, high_watermark: 0, broker_epoch: 1 },
                config(2),
                0,
            );
            let mut ends = [0i64; 4];
            let mut now = 0;
            let mut in_flight: Option<IsrChange> = None;
            let mut partition_epoch = 0;
            // Replicas that unsettled changes may have put in the ISR, as far as the leader
            // can know until the controller's next committed state.
            let mut perhaps_in_isr: BTreeSet<ReplicaId> = BTreeSet::new();
            for step in steps {
                let before = leader.high_watermark();
                match step {
                    Step::Append(n) => leader.on_append(leader.log_end + n),
                    Step::Durable => { leader.on_durable(leader.log_end); }
                    Step::Fetch { follower, ahead } => {
                        // A follower's durable end only grows and never passes the leader's.
                        let end = (ends[follower] + ahead).min(leader.log_end);
                        ends[follower] = end;
                        let id = replicas[follower + 1];
                        prop_assert!(leader.on_follower_fetch(id, 1, end, now).is_ok());
                    }
                    Step::Tick(ms) => now += ms,
                    Step::Propose => {
                        if let Some(change) = leader.next_isr_change(now, |_| true) {
                            in_flight = Some(change);
                        }
                    }
                    Step::Answer { outcome } => {
                        if let Some(change) = in_flight.take() {
                            let outcome = match outcome {
                                0 => {
                                    partition_epoch += 1;
                                    perhaps_in_isr.clear();
                                    IsrChangeOutcome::Committed(
                                        assignment(partition_epoch, &replicas, &ids(&change)),
                                    )
                                }
                                1 => {
                                    // Not applied, and the partition is as the leader knows
                                    // it: no earlier attempt was applied either.
                                    perhaps_in_isr.clear();
                                    IsrChangeOutcome::NotApplied
                                }
                                _ => {
                                    perhaps_in_isr.extend(ids(&change));
                                    IsrChangeOutcome::Unsettled
                                }
                            };
                            leader.isr_change_done(&change, outcome, now);
                        }
                    }
                }
                let high_watermark = leader.high_watermark();
                prop_assert!(high_watermark >= before, "moved back");
                prop_assert!(high_watermark <= leader.durable_end);
                for id in leader.maximal_isr().into_iter().chain(perhaps_in_isr.iter().copied()) {
                    if id != 1 {
                        let index = replicas.iter().position(|&r| r == id).unwrap_or(0) - 1;
                        prop_assert!(high_watermark <= ends[index], "above replica {}", id);
                    }
                }
                prop_assert_ne!(leader.ack(high_watermark + 1), AckOutcome::Acknowledged);
            }
        }
    }
}
