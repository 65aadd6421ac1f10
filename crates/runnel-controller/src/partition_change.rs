//! The one place a partition's ISR, ELR and leader change: given the ISR a caller wants
//! (a leader's AlterPartition, a fenced broker leaving), computes the [`PartitionChange`]
//! that keeps the election rules.
//!
//! - A leader comes from the ISR, first in replica order among the usable (registered,
//!   unfenced, not shutting down); the current leader stays while it is usable and in sync.
//! - Below `min.insync.replicas` the high watermark stops (the leader's rule), so a replica
//!   that leaves the ISR then joins the ELR: it holds everything committed. Once the ISR is
//!   back at `min.insync.replicas` the high watermark moves again and the ELR is cleared.
//! - With the ISR empty, the leader comes from the ELR and becomes the whole ISR (KIP-966).
//!   Never from outside both: unclean election is off, so a partition may wait leaderless
//!   for a replica that holds its committed records rather than lose them.

use crate::records::{BrokerId, PartitionChange, PartitionState, NO_LEADER};
use uuid::Uuid;

/// `min.insync.replicas` as the rules use it: capped at the replica count, at least 1.
pub(crate) fn effective_min_isr(min_insync_replicas: i32, replicas: usize) -> usize {
    usize::try_from(min_insync_replicas)
        .unwrap_or(1)
        .min(replicas)
        .max(1)
}

/// What a change starts from and may use.
pub(crate) struct ChangeContext<'a> {
    pub topic_id: Uuid,
    pub partition: i32,
    pub state: &'a PartitionState,
    pub min_isr: usize,
    /// May lead or join the ISR.
    pub usable: &'a dyn Fn(BrokerId) -> bool,
}

/// The change that takes the partition to `target_isr` (members outside the replicas are
/// dropped), with `drop_from_elr` no longer eligible (brokers that lost unflushed data);
/// `None` if nothing changes.
pub(crate) fn change_isr(
    context: &ChangeContext<'_>,
    target_isr: &[BrokerId],
    drop_from_elr: &[BrokerId],
) -> Option<PartitionChange> {
    let state = context.state;
    // Kept in replica order, so that equal sets compare equal and elections are stable.
    let in_order = |set: &dyn Fn(BrokerId) -> bool| -> Vec<BrokerId> {
        state
            .replicas
            .iter()
            .copied()
            .filter(|&id| set(id))
            .collect()
    };
    let mut isr = in_order(&|id| target_isr.contains(&id));
    let elr_now = |isr: &[BrokerId]| -> Vec<BrokerId> {
        if isr.len() >= context.min_isr {
            return Vec::new();
        }
        in_order(&|id| {
            !isr.contains(&id)
                && !drop_from_elr.contains(&id)
                && (state.elr.contains(&id) || state.isr.contains(&id))
        })
    };
    let mut elr = elr_now(&isr);

    let keeps_leader =
        state.has_leader() && isr.contains(&state.leader) && (context.usable)(state.leader);
    let leader = if keeps_leader {
        state.leader
    } else if let Some(&from_isr) = isr.iter().find(|&&id| (context.usable)(id)) {
        from_isr
    } else if isr.is_empty() {
        match elr.iter().copied().find(|&id| (context.usable)(id)) {
            Some(from_elr) => {
                isr = vec![from_elr];
                elr = elr_now(&isr);
                from_elr
            }
            None => NO_LEADER,
        }
    } else {
        NO_LEADER
    };

    let change = PartitionChange {
        leader: (leader != state.leader).then_some(leader),
        isr: (isr != state.isr).then_some(isr),
        elr: (elr != state.elr).then_some(elr),
        ..PartitionChange::of(context.topic_id, context.partition)
    };
    let unchanged = change.leader.is_none() && change.isr.is_none() && change.elr.is_none();
    (!unchanged).then_some(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], isr: &[i32], elr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            elr: elr.to_vec(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
            adding_replicas: vec![],
            removing_replicas: vec![],
        }
    }

    /// The changed leader, ISR and ELR.
    type Changed = (Option<i32>, Option<Vec<i32>>, Option<Vec<i32>>);

    fn run(
        state: &PartitionState,
        min_isr: usize,
        fenced: &[i32],
        target: &[i32],
        drop_from_elr: &[i32],
    ) -> Option<Changed> {
        let usable = |id| !fenced.contains(&id);
        let context = ChangeContext {
            topic_id: Uuid::nil(),
            partition: 0,
            state,
            min_isr,
            usable: &usable,
        };
        change_isr(&context, target, drop_from_elr).map(|c| (c.leader, c.isr, c.elr))
    }

    #[test]
    fn min_isr_is_capped_at_the_replica_count() {
        assert_eq!(effective_min_isr(2, 3), 2);
        assert_eq!(effective_min_isr(3, 1), 1);
        assert_eq!(effective_min_isr(0, 3), 1);
        assert_eq!(effective_min_isr(-5, 3), 1);
    }

    #[test]
    fn a_shrink_above_min_isr_only_changes_the_isr() {
        let s = state(&[1, 2, 3], &[1, 2, 3], &[], 1);
        assert_eq!(
            run(&s, 2, &[], &[1, 2], &[]),
            Some((None, Some(vec![1, 2]), None))
        );
        assert_eq!(
            run(&s, 2, &[], &[3, 2, 1], &[]),
            None,
            "same set, any order"
        );
    }

    #[test]
    fn a_fenced_leader_is_replaced_from_the_isr_in_replica_order() {
        let s = state(&[1, 2, 3], &[1, 2, 3], &[], 1);
        assert_eq!(
            run(&s, 2, &[1], &[2, 3], &[]),
            Some((Some(2), Some(vec![2, 3]), None))
        );
    }

    /// KIP-966: replicas leaving below min ISR join the ELR, and lead once the ISR is empty.
    #[test]
    fn kip_966_replicas_leaving_below_min_isr_stay_eligible() {
        let s = state(&[1, 2, 3], &[1, 2], &[], 1);
        // 2 leaves: the ISR falls below 2, so 2 joins the ELR.
        assert_eq!(
            run(&s, 2, &[2], &[1], &[]),
            Some((None, Some(vec![1]), Some(vec![2])))
        );
        // Then the leader is fenced: the ISR empties, 1 joins the ELR, nobody usable leads.
        let s = state(&[1, 2, 3], &[1], &[2], 1);
        assert_eq!(
            run(&s, 2, &[1, 2], &[], &[]),
            Some((Some(NO_LEADER), Some(vec![]), Some(vec![1, 2])))
        );
        // 2 comes back: elected from the ELR, it becomes the ISR; 1 stays eligible.
        let s = state(&[1, 2, 3], &[], &[1, 2], NO_LEADER);
        assert_eq!(
            run(&s, 2, &[1], &[], &[]),
            Some((Some(2), Some(vec![2]), Some(vec![1])))
        );
        // A replica that lost unflushed data is dropped from the ELR and never elected.
        assert_eq!(
            run(&s, 2, &[1], &[], &[2]),
            Some((None, None, Some(vec![1])))
        );
    }

    #[test]
    fn the_elr_is_cleared_once_the_isr_reaches_min_isr() {
        let s = state(&[1, 2, 3], &[2], &[1], 2);
        assert_eq!(
            run(&s, 2, &[], &[2, 3], &[]),
            Some((None, Some(vec![2, 3]), Some(vec![])))
        );
    }

    #[test]
    fn without_isr_or_elr_there_is_no_unclean_election() {
        let s = state(&[1, 2, 3], &[1], &[], 1);
        assert_eq!(
            run(&s, 1, &[1], &[], &[]),
            Some((Some(NO_LEADER), Some(vec![]), Some(vec![1]))),
            "3 and 2 are up but out of sync: they never lead"
        );
    }
}
