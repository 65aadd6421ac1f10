//! The transaction coordinator driven through whole transactions with explicit times.

use super::*;

const ID: &str = "payments";

fn coordinator() -> TransactionCoordinator {
    TransactionCoordinator::new(DEFAULT_MAX_TIMEOUT_MS)
}

/// Hands out producer ids 1000, 1001, ...
fn ids() -> impl FnMut() -> Result<i64> {
    let mut next = 1000;
    move || {
        next += 1;
        Ok(next - 1)
    }
}

fn written(coordinator: &mut TransactionCoordinator, transition: Transition) -> Option<Markers> {
    // What the shell does: write the record (here: check it decodes), then apply.
    let (key, value) = transition.record();
    let mut replayed = TransactionCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
    replayed.replay(&key, value.as_deref()).unwrap();
    assert_eq!(replayed.describe(ID), Some(&transition.next));
    coordinator.apply(transition)
}

fn init(coordinator: &mut TransactionCoordinator, now: i64) -> (i64, i16) {
    match coordinator.init_producer_id(now, ID, 60_000, None, &mut ids()) {
        Ok(InitOutcome::Write(transition)) => {
            let answer = (transition.next.producer_id, transition.next.producer_epoch);
            written(coordinator, transition);
            answer
        }
        other => panic!("InitProducerId: {other:?}"),
    }
}

fn partitions(names: &[(&str, i32)]) -> Vec<(String, i32)> {
    names
        .iter()
        .map(|(topic, p)| (topic.to_string(), *p))
        .collect()
}

/// Adds a partition to the producer's transaction, written.
fn add(
    coordinator: &mut TransactionCoordinator,
    now: i64,
    producer: (i64, i16),
    (topic, partition): (&str, i32),
) {
    let add = coordinator
        .add_partitions(
            now,
            ID,
            producer.0,
            producer.1,
            &partitions(&[(topic, partition)]),
        )
        .unwrap()
        .expect("a new partition is a change");
    written(coordinator, add);
}

/// Ends the transaction: prepare, markers, complete. Returns the markers.
fn end(
    coordinator: &mut TransactionCoordinator,
    now: i64,
    producer: (i64, i16),
    commit: bool,
) -> Markers {
    let EndOutcome::Write(prepare) = coordinator
        .end_transaction(now, ID, producer.0, producer.1, commit)
        .unwrap()
    else {
        panic!("nothing to end");
    };
    let markers = written(coordinator, prepare).expect("an ending transaction has markers");
    let complete = coordinator.markers_written(now, ID).unwrap();
    written(coordinator, complete);
    markers
}

#[test]
fn a_transaction_commits_through_prepare_markers_and_complete() {
    let mut coordinator = coordinator();
    let producer = init(&mut coordinator, 0);
    assert_eq!(producer, (1000, 0));
    let add = coordinator
        .add_partitions(
            10,
            ID,
            producer.0,
            producer.1,
            &partitions(&[("orders", 0), ("orders", 1)]),
        )
        .unwrap()
        .unwrap();
    written(&mut coordinator, add);
    assert!(coordinator.verify(1000, 0, "orders", 1).is_ok());
    assert_eq!(
        coordinator.verify(1000, 0, "orders", 2),
        Err(ResponseError::InvalidTxnState)
    );
    // Adding what is there already writes nothing.
    assert_eq!(
        coordinator.add_partitions(
            11,
            ID,
            producer.0,
            producer.1,
            &partitions(&[("orders", 0)])
        ),
        Ok(None)
    );
    let markers = end(&mut coordinator, 20, producer, true);
    assert!(markers.commit);
    assert_eq!(
        markers.partitions,
        partitions(&[("orders", 0), ("orders", 1)])
    );
    let metadata = coordinator.describe(ID).unwrap();
    assert_eq!(metadata.state, TxnState::CompleteCommit);
    assert!(metadata.partitions.is_empty());
    // A retried EndTxn is answered as done; the opposite outcome is refused.
    assert_eq!(
        coordinator.end_transaction(21, ID, producer.0, producer.1, true),
        Ok(EndOutcome::AlreadyDone)
    );
    assert_eq!(
        coordinator.end_transaction(21, ID, producer.0, producer.1, false),
        Err(ResponseError::InvalidTxnState)
    );
    assert_eq!(
        coordinator.verify(1000, 0, "orders", 1),
        Err(ResponseError::InvalidTxnState)
    );
}

#[test]
fn a_new_instance_fences_the_old_one_and_aborts_its_open_transaction() {
    let mut coordinator = coordinator();
    let old = init(&mut coordinator, 0);
    add(&mut coordinator, 1, old, ("orders", 0));
    // The new instance's InitProducerId aborts the open transaction with a bumped epoch.
    let Ok(InitOutcome::FenceFirst(fence)) =
        coordinator.init_producer_id(2, ID, 60_000, None, &mut ids())
    else {
        panic!("expected the open transaction to be aborted first");
    };
    assert_eq!(
        coordinator.init_producer_id(2, ID, 60_000, None, &mut ids()),
        Err(ResponseError::ConcurrentTransactions),
        "busy while the abort is written"
    );
    let markers = written(&mut coordinator, fence).unwrap();
    assert!(!markers.commit);
    assert_eq!(markers.producer_epoch, 1);
    let complete = coordinator.markers_written(3, ID).unwrap();
    written(&mut coordinator, complete);
    let new = init(&mut coordinator, 4);
    assert_eq!(new, (1000, 2));
    // The old instance is fenced everywhere.
    assert_eq!(
        coordinator.add_partitions(5, ID, old.0, old.1, &partitions(&[("orders", 0)])),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        coordinator.end_transaction(5, ID, old.0, old.1, true),
        Err(ResponseError::ProducerFenced)
    );
    assert_eq!(
        coordinator.verify(old.0, old.1, "orders", 0),
        Err(ResponseError::InvalidProducerEpoch)
    );
    // KIP-360: an instance naming an epoch that is not the current one is fenced.
    assert_eq!(
        coordinator.init_producer_id(6, ID, 60_000, Some(old), &mut ids()),
        Err(ResponseError::ProducerFenced)
    );
}

#[test]
fn a_hung_transaction_is_aborted_at_its_timeout_with_the_producer_fenced() {
    let mut coordinator = coordinator();
    let producer = init(&mut coordinator, 0);
    let add = coordinator
        .add_partitions(
            100,
            ID,
            producer.0,
            producer.1,
            &partitions(&[("orders", 3)]),
        )
        .unwrap()
        .unwrap();
    written(&mut coordinator, add);
    assert!(coordinator.expired(60_099).is_empty());
    assert_eq!(coordinator.expired(60_100), vec![ID.to_string()]);
    let abort = coordinator.abort_expired(60_100, ID).unwrap();
    let markers = written(&mut coordinator, abort).unwrap();
    assert!(!markers.commit);
    assert_eq!(markers.producer_epoch, 1);
    let complete = coordinator.markers_written(60_101, ID).unwrap();
    written(&mut coordinator, complete);
    assert_eq!(
        coordinator.end_transaction(60_200, ID, producer.0, producer.1, true),
        Err(ResponseError::ProducerFenced)
    );
    assert!(
        coordinator.expired(i64::MAX).is_empty(),
        "nothing open is left to time out"
    );
}

#[test]
fn an_unwritten_transition_changes_nothing() {
    let mut coordinator = coordinator();
    let Ok(InitOutcome::Write(first)) = coordinator.init_producer_id(0, ID, 1000, None, &mut ids())
    else {
        panic!()
    };
    coordinator.abandon(&first);
    assert!(coordinator.describe(ID).is_none());
    let producer = init(&mut coordinator, 0);
    let add = coordinator
        .add_partitions(1, ID, producer.0, producer.1, &partitions(&[("t", 0)]))
        .unwrap()
        .unwrap();
    coordinator.abandon(&add);
    assert_eq!(coordinator.describe(ID).unwrap().state, TxnState::Empty);
}

#[test]
fn requests_that_break_the_rules_get_kafkas_errors() {
    let mut coordinator = coordinator();
    assert_eq!(
        coordinator.init_producer_id(0, ID, DEFAULT_MAX_TIMEOUT_MS + 1, None, &mut ids()),
        Err(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(
        coordinator.init_producer_id(0, "", 1000, None, &mut ids()),
        Err(ResponseError::InvalidRequest)
    );
    assert_eq!(
        coordinator.add_partitions(0, ID, 1, 0, &partitions(&[("t", 0)])),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    let producer = init(&mut coordinator, 0);
    assert_eq!(
        coordinator.end_transaction(1, ID, producer.0, producer.1, true),
        Err(ResponseError::InvalidTxnState),
        "nothing to commit"
    );
    assert_eq!(
        coordinator.add_partitions(1, ID, producer.0 + 1, producer.1, &partitions(&[("t", 0)])),
        Err(ResponseError::InvalidProducerIdMapping)
    );
}

#[test]
fn a_restart_finishes_transactions_whose_markers_may_be_missing() {
    let mut coordinator = coordinator();
    let producer = init(&mut coordinator, 0);
    let add = coordinator
        .add_partitions(1, ID, producer.0, producer.1, &partitions(&[("t", 0)]))
        .unwrap()
        .unwrap();
    let mut log = vec![add.record()];
    written(&mut coordinator, add);
    let EndOutcome::Write(prepare) = coordinator
        .end_transaction(2, ID, producer.0, producer.1, true)
        .unwrap()
    else {
        panic!()
    };
    log.push(prepare.record());
    // The broker stops here: PrepareCommit is in the log, the markers may not be.
    let mut restarted = TransactionCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
    for (key, value) in &log {
        restarted.replay(key, value.as_deref()).unwrap();
    }
    let unfinished = restarted.take_unfinished();
    assert_eq!(unfinished.len(), 1);
    assert!(unfinished[0].commit);
    assert!(
        restarted.take_unfinished().is_empty(),
        "markers handed out are not handed out twice"
    );
    assert!(restarted.markers_written(3, ID).is_some());
}

/// The coordinator's lock is not held while markers are written, so the id itself must stay
/// busy: a second writer of the same markers (the timer) could otherwise deliver one after
/// the next transaction of the producer began, and end that one.
#[test]
fn an_id_whose_markers_are_being_written_takes_no_other_request() {
    let mut coordinator = coordinator();
    let producer = init(&mut coordinator, 0);
    add(&mut coordinator, 1, producer, ("t", 0));
    let EndOutcome::Write(prepare) = coordinator
        .end_transaction(2, ID, producer.0, producer.1, true)
        .unwrap()
    else {
        panic!()
    };
    assert!(written(&mut coordinator, prepare).is_some());

    assert!(
        coordinator.take_unfinished().is_empty(),
        "the timer does not write markers already being written"
    );
    assert_eq!(
        coordinator.end_transaction(3, ID, producer.0, producer.1, true),
        Err(ResponseError::ConcurrentTransactions),
        "a retried EndTxn waits for the markers"
    );
    assert_eq!(
        coordinator.init_producer_id(3, ID, 60_000, Some(producer), &mut ids()),
        Err(ResponseError::ConcurrentTransactions)
    );

    coordinator.markers_failed(ID);
    assert_eq!(
        coordinator.markers_written(4, ID),
        None,
        "only the holder of the markers job completes the transaction"
    );
    let retried = coordinator.take_unfinished();
    assert_eq!(retried.len(), 1, "failed markers are retried by the timer");
    let complete = coordinator.markers_written(5, ID).unwrap();
    written(&mut coordinator, complete);
    assert_eq!(
        coordinator.describe(ID).unwrap().state,
        TxnState::CompleteCommit
    );
    assert!(coordinator
        .add_partitions(6, ID, producer.0, producer.1, &partitions(&[("t", 0)]))
        .is_ok());
}

#[test]
fn state_ids_and_names_round_trip() {
    for state in TxnState::ALL {
        assert_eq!(TxnState::from_id(state.id()), Some(state));
        assert_eq!(TxnState::from_name(state.name()), Some(state));
    }
    assert_eq!(TxnState::from_id(8), None);
    assert_eq!(
        coordinator_partition("payments", 50),
        coordinator_partition("payments", 50)
    );
}

#[test]
fn idle_ids_expire_and_come_back_with_a_new_producer_id() {
    let mut coordinator = coordinator();
    let first = init(&mut coordinator, 0);
    assert!(coordinator
        .take_idle(DEFAULT_ID_EXPIRATION_MS - 1, DEFAULT_ID_EXPIRATION_MS)
        .is_empty());
    // An open transaction never expires that way (its timeout aborts it first).
    add(&mut coordinator, 1, first, ("t", 0));
    assert!(coordinator
        .take_idle(i64::MAX, DEFAULT_ID_EXPIRATION_MS)
        .is_empty());
    end(&mut coordinator, 2, first, false);
    let expiry = 2 + DEFAULT_ID_EXPIRATION_MS;
    assert_eq!(
        coordinator.take_idle(expiry, DEFAULT_ID_EXPIRATION_MS),
        vec![ID.to_string()]
    );
    assert_eq!(
        coordinator.init_producer_id(expiry, ID, 60_000, None, &mut ids()),
        Err(ResponseError::ConcurrentTransactions),
        "an id whose tombstone is being written takes no request"
    );
    assert!(
        coordinator
            .take_idle(expiry, DEFAULT_ID_EXPIRATION_MS)
            .is_empty(),
        "nor a second tombstone"
    );
    coordinator.release(ID);
    assert_eq!(
        coordinator.take_idle(expiry, DEFAULT_ID_EXPIRATION_MS),
        vec![ID.to_string()],
        "a tombstone that could not be written is tried again"
    );
    let (key, value) = TransactionCoordinator::tombstone(ID);
    assert!(value.is_none());
    coordinator.forget(ID);
    assert!(coordinator.describe(ID).is_none());
    assert_eq!(
        coordinator.verify(first.0, first.1, "t", 0),
        Err(ResponseError::InvalidProducerIdMapping)
    );
    // Replaying the tombstone forgets it too.
    let mut replayed = TransactionCoordinator::new(DEFAULT_MAX_TIMEOUT_MS);
    let (state_key, state_value) = Transition {
        transactional_id: ID.to_string(),
        next: TxnMetadata {
            producer_id: 1,
            producer_epoch: 0,
            timeout_ms: 1000,
            state: TxnState::Empty,
            partitions: Default::default(),
            start_ms: -1,
            last_update_ms: 0,
        },
    }
    .record();
    replayed.replay(&state_key, state_value.as_deref()).unwrap();
    replayed.replay(&key, None).unwrap();
    assert!(replayed.describe(ID).is_none());
}

/// A coordinator that no longer leads an id's partition forgets it; the next leader replays
/// the log and finishes what was prepared there, markers first.
#[test]
fn an_unloaded_id_is_forgotten_and_its_prepared_end_finishes_elsewhere() {
    let mut first = coordinator();
    let mut log = Vec::new();
    let mut logged = |coordinator: &mut TransactionCoordinator, transition: Transition| {
        log.push(transition.record());
        coordinator.apply(transition)
    };
    let InitOutcome::Write(init) = first
        .init_producer_id(0, ID, 60_000, None, &mut ids())
        .unwrap()
    else {
        panic!("InitProducerId writes");
    };
    let producer = (init.next.producer_id, init.next.producer_epoch);
    logged(&mut first, init);
    let added = first
        .add_partitions(1, ID, producer.0, producer.1, &partitions(&[("orders", 0)]))
        .unwrap()
        .expect("adding a partition is a change");
    logged(&mut first, added);
    let EndOutcome::Write(prepare) = first
        .end_transaction(2, ID, producer.0, producer.1, true)
        .unwrap()
    else {
        panic!("committing writes");
    };
    logged(&mut first, prepare);

    first.unload(|id| id == ID);
    assert_eq!(first.describe(ID), None);
    assert!(first.take_unfinished().is_empty());

    let mut next = coordinator();
    for (key, value) in &log {
        next.replay(key, value.as_deref()).unwrap();
    }
    let unfinished = next.take_unfinished();
    assert_eq!(
        unfinished.len(),
        1,
        "the prepared commit is finished by the new coordinator"
    );
    assert!(unfinished[0].commit);
    assert_eq!(unfinished[0].partitions, partitions(&[("orders", 0)]));
}
