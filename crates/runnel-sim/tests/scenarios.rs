//! The failure stories the replication KIPs tell, scripted step by step in the simulated
//! world; every round also runs the world's safety checks.

use runnel_sim::{Violation, World, WorldConfig};

type Result = std::result::Result<(), Violation>;

/// Rounds (100 ms each) for a silent broker's session to expire and its partitions to move.
const SESSION_ROUNDS: usize = 45;

fn world(brokers: i32, replication_factor: i16, min_insync_replicas: i32) -> World {
    World::new(
        7,
        WorldConfig {
            brokers,
            replication_factor,
            min_insync_replicas,
            ..WorldConfig::default()
        },
    )
}

fn leader(world: &World) -> i32 {
    world
        .leader()
        .unwrap_or_else(|| panic!("no leader\n{}", world.trace()))
}

fn isr(world: &World) -> Vec<i32> {
    world
        .partition_state()
        .map(|state| state.isr)
        .unwrap_or_default()
}

fn acknowledged_values(world: &World) -> Vec<u64> {
    world
        .acknowledged()
        .iter()
        .map(|&(_, value)| value)
        .collect()
}

/// KIP-101's first story: a follower restarts with a stale high watermark. Truncating to it
/// (as Kafka did before leader epochs) would drop a record the leader acknowledged, and if
/// the leader then died the record would be gone. Leader epochs say the follower's log is a
/// prefix of the leader's, so nothing is cut.
#[test]
fn kip_101_a_restarted_follower_keeps_acknowledged_records_past_its_high_watermark() -> Result {
    let mut world = world(2, 2, 1);
    world.rounds(3)?;
    let a = leader(&world);
    let b = 3 - a;
    let first = world.produce_to(a).expect("taken");
    let second = world.produce_to(a).expect("taken");
    world.rounds(3)?;
    assert_eq!(acknowledged_values(&world), vec![first, second]);
    // B restarts; it never checkpointed its high watermark.
    world.crash(b, false);
    world.restart(b);
    assert_eq!(world.high_watermark(b), 0);
    world.rounds(SESSION_ROUNDS)?;
    assert!(
        isr(&world).contains(&b),
        "B back in sync\n{}",
        world.trace()
    );
    // Then the leader loses power: B takes over with both records.
    world.crash(a, true);
    world.rounds(SESSION_ROUNDS)?;
    assert_eq!(leader(&world), b);
    assert_eq!(world.values(b), vec![first, second]);
    assert_eq!(world.outcome().truncated_entries, 0);
    Ok(())
}

/// KIP-101's second story: the leader wrote a record nobody copied and both replicas went
/// down, the follower last; it came back first, led a new epoch and wrote a different record
/// at the same offset. When the old leader returns, its log diverges: the epoch it last wrote ended
/// earlier on the new leader, so it cuts its unacknowledged record and copies the new one.
#[test]
fn kip_101_divergent_logs_converge_on_the_new_leaders() -> Result {
    let mut world = world(2, 2, 1);
    world.rounds(3)?;
    let a = leader(&world);
    let b = 3 - a;
    let first = world.produce_to(a).expect("taken");
    world.rounds(3)?;
    let lost = world.produce_to(a).expect("taken");
    world.crash(a, false);
    // B goes down a second later and comes back once A is fenced (A's session, 3 s, ends
    // 2 s after B's crash) but before B's own session ends: the controller last saw B in
    // sync, so it stays eligible. (Back any sooner, its registration would replace its
    // previous life at once and take it out of the ISR while A still looked alive.)
    world.rounds(10)?;
    world.crash(b, false);
    world.rounds(25)?;
    world.restart(b);
    world.rounds(2 * SESSION_ROUNDS)?;
    assert_eq!(leader(&world), b, "B was in sync: it leads again");
    let third = world.produce_to(b).expect("taken");
    world.rounds(3)?;
    world.restart(a);
    world.rounds(2 * SESSION_ROUNDS)?;
    assert_eq!(world.values(b), vec![first, third]);
    assert_eq!(
        world.values(a),
        vec![first, third],
        "A cut {lost} and copied {third}"
    );
    assert!(world.outcome().truncated_entries >= 1);
    assert!(!acknowledged_values(&world).contains(&lost));
    Ok(())
}

/// KIP-966: with min.insync.replicas=2 the ISR shrinks as replicas fall behind, the last
/// ones out stay eligible (ELR), and after every replica is down the partition leads again
/// only through one of them: a replica that was out of sync never leads (no unclean
/// election), so nothing acknowledged is lost.
#[test]
fn kip_966_after_a_total_outage_only_an_eligible_replica_leads() -> Result {
    let mut world = world(3, 3, 2);
    world.rounds(3)?;
    let a = leader(&world);
    let mut others = (1..=3).filter(|&id| id != a);
    let (b, c) = (others.next().expect("b"), others.next().expect("c"));
    world.produce_to(a).expect("taken");
    world.rounds(3)?;
    // C falls out of sync; writes go on with A and B.
    world.isolate(c, true);
    world.rounds(SESSION_ROUNDS)?;
    assert!(!isr(&world).contains(&c));
    let with_b = world.produce_to(a).expect("taken");
    world.rounds(3)?;
    assert!(acknowledged_values(&world).contains(&with_b));
    // B goes down: A alone is below min ISR, so B is eligible and A stops acknowledging.
    world.crash(b, false);
    world.rounds(SESSION_ROUNDS)?;
    let state = world.partition_state().expect("partition");
    assert_eq!(state.isr, vec![a]);
    assert!(state.elr.contains(&b), "{state:?}");
    let unacknowledged = world.produce_to(a);
    world.rounds(3)?;
    assert!(unacknowledged.is_none_or(|value| !acknowledged_values(&world).contains(&value)));
    // A loses power too: nobody leads.
    world.crash(a, true);
    world.rounds(SESSION_ROUNDS)?;
    assert_eq!(world.leader(), None);
    // C comes back: it was out of sync, so it does not lead.
    world.isolate(c, false);
    world.rounds(SESSION_ROUNDS)?;
    assert_eq!(
        world.leader(),
        None,
        "no unclean election\n{}",
        world.trace()
    );
    // B comes back: it leads, with everything acknowledged.
    world.restart(b);
    world.rounds(2 * SESSION_ROUNDS)?;
    assert_eq!(leader(&world), b);
    let values = world.values(b);
    for value in acknowledged_values(&world) {
        assert!(values.contains(&value), "{value} kept");
    }
    Ok(())
}

/// A reassignment completes on the leader's own ISR change: the controller takes the change
/// that brings the new replica into the ISR, and at once moves the leadership to it, so the
/// answer names another leader (Kafka's NEW_LEADER_ELECTED). The new replica joined holding
/// only what was below the high watermark. Until the old leader learns it no longer leads,
/// it must keep counting the joiner: falling back to the ISR it knew, it would acknowledge a
/// record that only it and the old follower hold, which the new leader then lacks.
#[test]
fn a_reassignment_completed_by_the_leaders_own_isr_change_leaves_it_acknowledging_nothing_new(
) -> Result {
    let mut world = World::new(
        7,
        WorldConfig {
            brokers: 3,
            replication_factor: 2,
            min_insync_replicas: 1,
            ..WorldConfig::default()
        },
    );
    world.rounds(3)?;
    let old_leader = leader(&world);
    let state = world.partition_state().expect("the partition");
    let follower = state
        .replicas
        .iter()
        .copied()
        .find(|&id| id != old_leader)
        .expect("a follower");
    let newcomer = (1..=3)
        .find(|id| !state.replicas.contains(id))
        .expect("a third broker");
    world
        .reassign_to(Some(&[newcomer, follower]))
        .expect("reassigned");
    world.tick();
    // The newcomer catches up with an empty log; then a record is written that only the old
    // leader and the follower get.
    world.fetch(newcomer);
    let value = world.produce_to(old_leader).expect("taken");
    world.fetch(follower);
    world.sync_leader(old_leader);
    world.change_isr(old_leader);
    assert_eq!(leader(&world), newcomer, "{}", world.trace());
    world.fetch(follower);
    world.answer_produces(old_leader);
    assert!(
        !acknowledged_values(&world).contains(&value),
        "acknowledged by the old leader without the new one\n{}",
        world.trace()
    );
    world.rounds(SESSION_ROUNDS)?;
    Ok(())
}

/// KIP-279's story: leaders fail over faster than followers copy. A leads epoch 0; it dies
/// and B leads the next epoch, takes a record, and dies before C copies it; C leads the
/// epoch after that (writing nothing: below min.insync.replicas it takes no produce) and is
/// cut off; B comes back first and leads again. C's last epoch is one B never had: B
/// answers with the end of its own largest epoch below it, one C never had either, so C
/// cuts to what it can place, asks again with an older epoch, and only then matches B.
#[test]
fn kip_279_a_follower_that_skipped_its_leaders_epochs_truncates_in_rounds() -> Result {
    let mut world = world(3, 3, 2);
    world.rounds(3)?;
    let a = leader(&world);
    let first = world.produce_to(a).expect("taken");
    world.rounds(3)?;
    assert_eq!(acknowledged_values(&world), vec![first]);
    world.crash(a, false);
    world.rounds(SESSION_ROUNDS)?;
    let b = leader(&world);
    let c = (1..=3)
        .find(|&id| id != a && id != b)
        .expect("a third broker");
    let unreplicated = world.produce_to(b).expect("taken");
    world.crash(b, false);
    world.rounds(SESSION_ROUNDS)?;
    assert_eq!(leader(&world), c, "C was in sync\n{}", world.trace());
    world.isolate(c, true);
    world.rounds(SESSION_ROUNDS)?;
    world.restart(b);
    world.rounds(SESSION_ROUNDS)?;
    assert_eq!(leader(&world), b, "B was eligible\n{}", world.trace());
    world.isolate(c, false);
    world.restart(a);
    world.rounds(SESSION_ROUNDS)?;
    assert!(
        world.outcome().truncations_in_rounds >= 1,
        "C needed a second round\n{}",
        world.trace()
    );
    assert_eq!(world.values(c), world.values(b));
    assert_eq!(world.values(b), vec![first, unreplicated]);
    Ok(())
}
