//! [`World`]: a cluster of brokers replicating one partition, driven step by step from a
//! seed. The controller's decisions ([`Controller`]) and each replica's rules
//! ([`LeaderState`], [`runnel_replication::follower`]) are the real ones; the network, the
//! disks and the clock are simulated, and so are the faults: `kill -9`, power cuts (which
//! lose what was not fsynced), isolation of a broker from everyone, and metadata that
//! reaches brokers late.
//!
//! The durability rule is the product's: every replica fsyncs what it appends before it
//! reports it (a follower's next fetch offset; the leader's `on_durable`), so a power cut
//! loses only what no `acks=all` answer counted.
//!
//! After each step the world checks, and [`World::run`] fails with the step's trace if:
//! - a broker leading the partition in the current leader epoch lacks an acknowledged
//!   record (an in-sync replica took over and lost it);
//! - two replicas hold different records at an offset below both their high watermarks.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use runnel_controller::records::Listener;
use runnel_controller::{
    alter_partition_not_applied, local_changes, AlterPartition, BrokerId, BrokerSessions,
    Controller, ControllerConfig, Heartbeat, MetadataImage, MetadataRecord, NewTopic,
    PartitionState, Registration, NO_LEADER,
};
use runnel_replication::{
    follower_step, AckOutcome, Assignment, EpochEnd, FetchAnswer, FollowerStep, IsrChangeOutcome,
    LeaderConfig, LeaderState, LocalLog, ReplicaFetch,
};
use runnel_storage::sim::SplitMix64;
use uuid::Uuid;

use crate::replica_log::{Entry, ReplicaLog};

/// The shape of one simulated run.
#[derive(Debug, Clone, Copy)]
pub struct WorldConfig {
    pub brokers: i32,
    pub replication_factor: i16,
    pub min_insync_replicas: i32,
    pub steps: usize,
    /// Per step, out of 1000: the chance a broker crashes (half of them power cuts).
    pub crash_per_mille: u64,
    /// Per step, out of 1000: the chance a broker is cut off from everyone.
    pub isolate_per_mille: u64,
    /// `true`: replicas count only what they fsynced (the default). `false`: page-cache
    /// mode, where they count what they wrote; power cuts then strike one broker at a time,
    /// the others having flushed since (the independent failures that mode relies on), and
    /// a broker back from one registers as having lost unflushed data.
    pub durable: bool,
    /// Per step, out of 1000: the chance an operator reassigns the partition (or cancels).
    pub reassign_per_mille: u64,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            brokers: 3,
            replication_factor: 3,
            min_insync_replicas: 2,
            steps: 400,
            crash_per_mille: 15,
            isolate_per_mille: 15,
            durable: true,
            reassign_per_mille: 0,
        }
    }
}

const SESSION_TIMEOUT_MS: i64 = 3000;
const LAG_TIME_MAX_MS: i64 = 2000;
const FETCH_MAX_ENTRIES: usize = 4;

/// What a finished run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub acknowledged: usize,
    pub leader_changes: usize,
    pub crashes: usize,
    pub truncated_entries: usize,
    /// Page-cache mode only: every replica that could lead safely lost unflushed data, so
    /// the partition stays offline rather than elect one uncleanly (KIP-966).
    pub left_offline: bool,
}

/// A safety rule broken, with the run's trace up to it.
#[derive(Debug, Clone)]
pub struct Violation {
    pub seed: u64,
    pub step: usize,
    pub what: String,
    pub trace: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} step {}: {}\n--- trace ---\n{}",
            self.seed, self.step, self.what, self.trace
        )
    }
}

#[derive(Debug, Clone)]
enum Role {
    None,
    Leader {
        state: Box<LeaderState>,
        /// Produces waiting for the high watermark: (end offset, value).
        waiting: Vec<(i64, u64)>,
    },
    Follower {
        leader: BrokerId,
        leader_epoch: i32,
    },
}

#[derive(Debug, Clone)]
struct Broker {
    id: BrokerId,
    up: bool,
    isolated: bool,
    broker_epoch: i64,
    log: ReplicaLog,
    high_watermark: i64,
    /// The high watermark as last checkpointed, which a restart starts from.
    checkpointed_high_watermark: i64,
    /// Lost unflushed writes to a power cut since it last registered (page-cache mode).
    lost_unflushed: bool,
    /// The incarnation it last registered as, which it names when it registers again (as a
    /// real broker keeps it in its data directory), so that a restart replaces its previous
    /// life at once.
    last_incarnation: Option<Uuid>,
    image: MetadataImage,
    role: Role,
}

impl Broker {
    fn reachable(&self) -> bool {
        self.up && !self.isolated
    }
}

#[derive(Debug)]
pub struct World {
    seed: u64,
    rng: SplitMix64,
    config: WorldConfig,
    now_ms: i64,
    image: MetadataImage,
    offset: u64,
    controller_config: ControllerConfig,
    sessions: BrokerSessions,
    brokers: BTreeMap<BrokerId, Broker>,
    topic: Uuid,
    next_value: u64,
    /// Every acknowledged record: (offset, value).
    acknowledged: Vec<(i64, u64)>,
    outcome: Outcome,
    trace: String,
    step: usize,
}

impl World {
    pub fn new(seed: u64, config: WorldConfig) -> World {
        let mut world = World {
            seed,
            rng: SplitMix64(seed),
            config,
            now_ms: 0,
            image: MetadataImage::default(),
            offset: 0,
            controller_config: ControllerConfig {
                default_partitions: 1,
                default_replication_factor: config.replication_factor,
                min_insync_replicas: config.min_insync_replicas,
                producer_id_block_size: 1000,
            },
            sessions: BrokerSessions::new(SESSION_TIMEOUT_MS),
            brokers: BTreeMap::new(),
            topic: Uuid::from_u128(u128::from(seed) + 1),
            next_value: 1,
            acknowledged: Vec::new(),
            outcome: Outcome::default(),
            trace: String::new(),
            step: 0,
        };
        for id in 1..=config.brokers {
            world.brokers.insert(
                id,
                Broker {
                    id,
                    up: true,
                    isolated: false,
                    broker_epoch: -1,
                    log: ReplicaLog::default(),
                    high_watermark: 0,
                    checkpointed_high_watermark: 0,
                    lost_unflushed: false,
                    last_incarnation: None,
                    image: MetadataImage::default(),
                    role: Role::None,
                },
            );
            world.register(id);
        }
        for id in 1..=config.brokers {
            world.learn_metadata(id);
            world.heartbeat(id);
        }
        let topic = NewTopic {
            name: "sim".into(),
            partitions: 1,
            replication_factor: config.replication_factor,
            assignments: vec![],
            configs: vec![],
        };
        let records = world
            .controller()
            .create_topic(&topic, world.topic, seed as usize)
            .unwrap_or_else(|error| panic!("creating the topic: {error}"));
        world.commit(records);
        world
    }

    fn controller(&self) -> Controller<'_> {
        Controller {
            image: &self.image,
            config: &self.controller_config,
        }
    }

    fn note(&mut self, line: String) {
        let _ = writeln!(self.trace, "[{} t={}] {line}", self.step, self.now_ms);
    }

    fn commit(&mut self, records: Vec<MetadataRecord>) {
        for record in records {
            self.offset += 1;
            if let MetadataRecord::PartitionChange(change) = &record {
                if change.leader.is_some() {
                    self.outcome.leader_changes += 1;
                }
            }
            let line = format!("controller commits {record:?}");
            self.note(line);
            self.image
                .apply(self.offset, &record)
                .unwrap_or_else(|error| panic!("seed {}: {error}", self.seed));
        }
    }

    fn partition(image: &MetadataImage, topic: Uuid) -> Option<&PartitionState> {
        image.partition(topic, 0)
    }

    fn register(&mut self, id: BrokerId) {
        let registration = Registration {
            id,
            incarnation_id: Uuid::from_u128(u128::from(self.rng.next_u64())),
            previous_incarnation_id: self
                .brokers
                .get(&id)
                .and_then(|broker| broker.last_incarnation),
            listeners: vec![Listener {
                name: "SIM".into(),
                host: "sim".into(),
                port: 1,
            }],
            rack: None,
            data_intact: !self
                .brokers
                .get(&id)
                .is_some_and(|broker| broker.lost_unflushed),
        };
        let alive = self.sessions.is_alive(id, self.now_ms);
        match self.controller().register_broker(&registration, alive) {
            Ok(records) => {
                self.commit(records);
                let epoch = self.image.broker(id).map_or(-1, |b| b.registration.epoch);
                self.sessions.heard_from(id, epoch, self.now_ms);
                if let Some(broker) = self.brokers.get_mut(&id) {
                    broker.broker_epoch = epoch;
                    broker.lost_unflushed = false;
                    broker.last_incarnation = Some(registration.incarnation_id);
                }
            }
            Err(error) => self.note(format!("broker {id} registration refused: {error}")),
        }
    }

    fn heartbeat(&mut self, id: BrokerId) {
        let Some(broker) = self.brokers.get(&id) else {
            return;
        };
        if broker.broker_epoch < 0 {
            self.register(id);
            return;
        }
        let heartbeat = Heartbeat {
            id,
            broker_epoch: broker.broker_epoch,
            metadata_offset: broker.image.offset(),
            want_fence: false,
            want_shutdown: false,
            offline_replicas: Vec::new(),
        };
        match self.controller().heartbeat(&heartbeat) {
            Ok((records, _)) => {
                self.sessions
                    .heard_from(id, heartbeat.broker_epoch, self.now_ms);
                self.commit(records);
            }
            Err(_) => {
                // Fenced by a newer registration or lost: register again.
                self.register(id);
            }
        }
    }

    /// Broker `id` takes the controller's current image and the role it gives it.
    fn learn_metadata(&mut self, id: BrokerId) {
        let now = self.now_ms;
        let min_isr = self.config.min_insync_replicas as usize;
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        // A restarted broker acts on nothing until its new incarnation is registered: the
        // metadata still names its previous life, whose leader epoch it must not reuse. It
        // keeps no image either, so that once registered every partition is a change to act on.
        if broker.broker_epoch < 0 {
            broker.role = Role::None;
            return;
        }
        let changes = local_changes(&broker.image, &self.image, id);
        broker.image = self.image.clone();
        let mut notes = Vec::new();
        for local in changes.leaders {
            let state = local.state;
            let assignment = Assignment {
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch,
                replicas: state.replicas.clone(),
                isr: state.isr.clone(),
            };
            match &mut broker.role {
                Role::Leader { state: leader, .. }
                    if leader.leader_epoch() == state.leader_epoch =>
                {
                    leader.update_assignment(assignment, now);
                }
                _ => {
                    broker
                        .log
                        .assign_epoch(state.leader_epoch, broker.log.end());
                    let log = LocalLog {
                        log_end: broker.log.end(),
                        durable_end: broker.log.durable_end(),
                        high_watermark: broker.high_watermark,
                        broker_epoch: broker.broker_epoch,
                    };
                    let config = LeaderConfig {
                        replica_lag_time_max_ms: LAG_TIME_MAX_MS,
                        min_insync_replicas: min_isr,
                    };
                    broker.role = Role::Leader {
                        state: Box::new(LeaderState::new(id, assignment, log, config, now)),
                        waiting: Vec::new(),
                    };
                    notes.push(format!(
                        "broker {id} leads in epoch {} from offset {}",
                        state.leader_epoch,
                        broker.log.end()
                    ));
                }
            }
        }
        for local in changes.followers {
            let state = local.state;
            broker.role = if state.leader == NO_LEADER {
                Role::None
            } else {
                Role::Follower {
                    leader: state.leader,
                    leader_epoch: state.leader_epoch,
                }
            };
        }
        if !changes.removed.is_empty() {
            // Moved off this broker: it stops serving the partition and deletes its replica.
            broker.role = Role::None;
            broker.log = ReplicaLog::default();
            broker.high_watermark = 0;
            broker.checkpointed_high_watermark = 0;
            notes.push(format!("broker {id} deletes its replica"));
        }
        for line in notes {
            self.note(line);
        }
    }

    /// An operator moves the partition to `replication_factor` random brokers, or cancels
    /// the move under way.
    fn reassign(&mut self) {
        let cancel = self.rng.chance(1, 4);
        let target: Option<Vec<BrokerId>> = (!cancel).then(|| {
            let mut pool: Vec<BrokerId> = (1..=self.config.brokers).collect();
            let mut chosen = Vec::new();
            while chosen.len() < self.config.replication_factor as usize && !pool.is_empty() {
                let at = self.rng.below(pool.len() as u64) as usize;
                chosen.push(pool.remove(at));
            }
            chosen
        });
        let _ = self.reassign_to(target.as_deref());
    }

    /// An operator moves the partition to `target`, or cancels the move under way (`None`).
    pub fn reassign_to(&mut self, target: Option<&[BrokerId]>) -> Result<(), String> {
        match self.controller().reassign("sim", 0, target) {
            Ok(records) => {
                self.note(format!("operator reassigns to {target:?}"));
                self.commit(records);
                Ok(())
            }
            Err(error) => {
                let refused = format!("reassignment to {target:?} refused: {error}");
                self.note(refused.clone());
                Err(refused)
            }
        }
    }

    /// Every broker that can reach the controller heartbeats and takes the latest metadata,
    /// and nothing else happens.
    pub fn tick(&mut self) {
        self.tick_control_plane(false);
    }

    fn produce(&mut self) {
        // Clients mostly send to the leader the controller names, sometimes to whoever
        // their stale metadata names.
        let target = if self.rng.chance(1, 5) {
            1 + self.rng.below(self.config.brokers as u64) as BrokerId
        } else {
            match self.leader() {
                Some(leader) => leader,
                None => return,
            }
        };
        self.produce_to(target);
    }

    /// An `acks=all` produce of a new value to `target`; the value, if it took it.
    pub fn produce_to(&mut self, target: BrokerId) -> Option<u64> {
        let value = self.next_value;
        let broker = self.brokers.get_mut(&target)?;
        if !broker.reachable() {
            return None;
        }
        let Role::Leader { state, waiting } = &mut broker.role else {
            return None;
        };
        state.check_produce().ok()?;
        self.next_value += 1;
        broker.log.append(Entry {
            epoch: state.leader_epoch(),
            value,
        });
        state.on_append(broker.log.end());
        if !self.config.durable {
            // Page-cache mode: what is written counts.
            state.on_durable(broker.log.end());
        }
        waiting.push((broker.log.end(), value));
        let line = format!(
            "broker {target} appends value {value} at offset {} (epoch {})",
            broker.log.end() - 1,
            state.leader_epoch()
        );
        self.note(line);
        Some(value)
    }

    pub fn sync_leader(&mut self, id: BrokerId) {
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if !broker.up {
            return;
        }
        broker.log.sync();
        if let Role::Leader { state, .. } = &mut broker.role {
            state.on_durable(broker.log.durable_end());
            broker.high_watermark = state.high_watermark();
        }
    }

    /// Follower `id` fetches from the leader it knows.
    pub fn fetch(&mut self, id: BrokerId) {
        let Some(follower) = self.brokers.get(&id) else {
            return;
        };
        let Role::Follower {
            leader,
            leader_epoch,
        } = follower.role
        else {
            return;
        };
        let reachable = |broker: Option<&Broker>| broker.is_some_and(Broker::reachable);
        if !reachable(Some(follower)) || !reachable(self.brokers.get(&leader)) {
            return;
        }
        // KIP-320: the last fetched epoch travels with the fetch.
        let request = ReplicaFetch {
            replica: id,
            broker_epoch: follower.broker_epoch,
            current_leader_epoch: leader_epoch,
            fetch_offset: follower.log.end(),
            last_fetched_epoch: follower.log.latest_epoch(),
        };
        let now = self.now_ms;
        let Some(source) = self.brokers.get_mut(&leader) else {
            return;
        };
        let Role::Leader { state, .. } = &mut source.role else {
            return;
        };
        let source_log = &source.log;
        let (answer, _) = state.answer_fetch(
            &request,
            |epoch| EpochEnd::from_log(source_log.end_for_epoch(epoch)),
            now,
        );
        source.high_watermark = state.high_watermark();
        let leader_end = source.log.end();
        let records: Vec<Entry> = match answer {
            FetchAnswer::Records { .. } => source
                .log
                .entries()
                .iter()
                .skip(usize::try_from(request.fetch_offset).unwrap_or(0))
                .take(FETCH_MAX_ENTRIES)
                .copied()
                .collect(),
            _ => Vec::new(),
        };
        let Some(follower) = self.brokers.get_mut(&id) else {
            return;
        };
        let step = follower_step(
            answer,
            |epoch| EpochEnd::from_log(follower.log.end_for_epoch(epoch)),
            follower.log.end(),
            follower.high_watermark,
        );
        let cut_to = match step {
            FollowerStep::Append { high_watermark } => {
                for entry in records {
                    follower.log.append(entry);
                }
                // Fsynced before the next fetch reports it, unless in page-cache mode.
                if self.config.durable {
                    follower.log.sync();
                }
                follower.high_watermark = high_watermark.min(follower.log.end());
                None
            }
            FollowerStep::Truncate(plan) => Some(plan.offset),
            FollowerStep::Reset => Some(leader_end.min(follower.log.end())),
            FollowerStep::AwaitMetadata | FollowerStep::Retry => None,
        };
        if let Some(offset) = cut_to {
            let removed = (follower.log.end() - offset).max(0) as usize;
            follower.log.truncate(offset);
            follower.high_watermark = follower.high_watermark.min(offset);
            self.outcome.truncated_entries += removed;
            self.note(format!(
                "broker {id} diverges from {leader} ({step:?} after {answer:?}): truncated to {offset}"
            ));
        }
    }

    pub fn change_isr(&mut self, id: BrokerId) {
        let now = self.now_ms;
        let image = self.image.clone();
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if !broker.reachable() {
            return;
        }
        let broker_epoch = broker.broker_epoch;
        let Role::Leader { state, .. } = &mut broker.role else {
            return;
        };
        let Some(change) = state.next_isr_change(now, |replica| image.is_usable(replica)) else {
            return;
        };
        let request = AlterPartition {
            broker_id: id,
            broker_epoch,
            topic_id: self.topic,
            partition: 0,
            leader_epoch: change.leader_epoch,
            partition_epoch: change.partition_epoch,
            new_isr: change
                .new_isr
                .iter()
                .map(|member| (member.id, member.broker_epoch))
                .collect(),
        };
        let outcome = match self.controller().alter_partition(&request) {
            Ok(records) => {
                self.commit(records);
                match Self::partition(&self.image, self.topic) {
                    Some(state)
                        if state.leader == id && state.leader_epoch == change.leader_epoch =>
                    {
                        IsrChangeOutcome::Committed(Assignment {
                            leader_epoch: state.leader_epoch,
                            partition_epoch: state.partition_epoch,
                            replicas: state.replicas.clone(),
                            isr: state.isr.clone(),
                        })
                    }
                    _ => IsrChangeOutcome::Unsettled,
                }
            }
            Err(error) => {
                self.note(format!(
                    "broker {id}'s ISR change {:?} refused: {error}",
                    request.new_isr
                ));
                if alter_partition_not_applied(error.code) {
                    IsrChangeOutcome::NotApplied
                } else {
                    IsrChangeOutcome::Unsettled
                }
            }
        };
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if let Role::Leader { state, .. } = &mut broker.role {
            state.isr_change_done(&change, outcome, now);
            broker.high_watermark = state.high_watermark();
        }
    }

    pub fn answer_produces(&mut self, id: BrokerId) {
        let mut acknowledged = Vec::new();
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if !broker.reachable() {
            return;
        }
        if let Role::Leader { state, waiting } = &mut broker.role {
            broker.high_watermark = state.high_watermark();
            waiting.retain(|&(end, value)| match state.ack(end) {
                AckOutcome::Waiting => true,
                AckOutcome::Acknowledged => {
                    acknowledged.push((end - 1, value));
                    false
                }
                AckOutcome::NotEnoughReplicasAfterAppend => false,
            });
        }
        for (offset, value) in acknowledged {
            self.note(format!(
                "broker {id} acknowledges value {value} at offset {offset}"
            ));
            self.acknowledged.push((offset, value));
            self.outcome.acknowledged += 1;
        }
    }

    pub fn crash(&mut self, id: BrokerId, power_cut: bool) {
        if power_cut && !self.config.durable {
            for other in self
                .brokers
                .values_mut()
                .filter(|other| other.up && other.id != id)
            {
                other.log.sync();
            }
        }
        let durable = self.config.durable;
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if !broker.up {
            return;
        }
        broker.lost_unflushed |= power_cut && !durable;
        broker.up = false;
        broker.role = Role::None;
        if power_cut {
            broker.log.power_cut();
        } else {
            // kill -9: the page cache keeps what was written.
            broker.log.sync();
        }
        broker.high_watermark = broker.checkpointed_high_watermark.min(broker.log.end());
        broker.broker_epoch = -1;
        let how = if power_cut {
            "loses power"
        } else {
            "is killed"
        };
        let line = format!("broker {id} {how} (log end {})", broker.log.end());
        self.outcome.crashes += 1;
        self.note(line);
    }

    pub fn restart(&mut self, id: BrokerId) {
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if broker.up {
            return;
        }
        broker.up = true;
        broker.image = MetadataImage::default();
        self.note(format!("broker {id} restarts"));
        self.register(id);
    }

    /// Brokers that can reach the controller heartbeat and, usually, learn the metadata;
    /// the controller fences the ones whose sessions expired.
    /// The leader the controller names, if any.
    pub fn leader(&self) -> Option<BrokerId> {
        Self::partition(&self.image, self.topic)
            .map(|state| state.leader)
            .filter(|&leader| leader != NO_LEADER)
    }

    /// The partition as the controller has it.
    pub fn partition_state(&self) -> Option<PartitionState> {
        Self::partition(&self.image, self.topic).cloned()
    }

    /// The values in a broker's log, in offset order.
    pub fn values(&self, id: BrokerId) -> Vec<u64> {
        self.brokers.get(&id).map_or_else(Vec::new, |broker| {
            broker
                .log
                .entries()
                .iter()
                .map(|entry| entry.value)
                .collect()
        })
    }

    pub fn high_watermark(&self, id: BrokerId) -> i64 {
        self.brokers
            .get(&id)
            .map_or(-1, |broker| broker.high_watermark)
    }

    /// Every acknowledged `(offset, value)`.
    pub fn acknowledged(&self) -> &[(i64, u64)] {
        &self.acknowledged
    }

    pub fn outcome(&self) -> &Outcome {
        &self.outcome
    }

    pub fn trace(&self) -> &str {
        &self.trace
    }

    pub fn advance(&mut self, millis: i64) {
        self.now_ms += millis;
    }

    /// Cuts a broker off from everyone (`true`), or connects it again.
    pub fn isolate(&mut self, id: BrokerId, isolated: bool) {
        if let Some(broker) = self.brokers.get_mut(&id) {
            broker.isolated = isolated;
        }
        self.note(format!("broker {id} isolated: {isolated}"));
    }

    /// One fault-free round for scripted scenarios: heartbeats, metadata, a fetch, an fsync
    /// and an ISR check on every broker, answers; then the safety checks.
    pub fn round(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.now_ms += 100;
        self.tick_control_plane(false);
        let ids: Vec<BrokerId> = self.brokers.keys().copied().collect();
        for &id in &ids {
            self.fetch(id);
            self.sync_leader(id);
            self.change_isr(id);
            self.answer_produces(id);
        }
        self.check().map_err(|what| self.violation(what))
    }

    /// Runs `count` rounds.
    pub fn rounds(&mut self, count: usize) -> Result<(), Violation> {
        for _ in 0..count {
            self.round()?;
        }
        Ok(())
    }

    fn tick_control_plane(&mut self, partitioned: bool) {
        // Expired sessions first, as the controller does before deciding a request: a
        // registration is decided on who is really alive.
        self.fence_expired();
        let ids: Vec<BrokerId> = self.brokers.keys().copied().collect();
        for &id in &ids {
            if self.brokers.get(&id).is_some_and(Broker::reachable) {
                self.heartbeat(id);
                if !partitioned || self.rng.chance(2, 3) {
                    self.learn_metadata(id);
                }
            }
        }
    }

    fn fence_expired(&mut self) {
        for (id, epoch) in self.sessions.take_expired(self.now_ms) {
            let records = self.controller().fence_broker(id, epoch);
            if !records.is_empty() {
                self.note(format!("controller fences broker {id} (epoch {epoch})"));
            }
            self.commit(records);
        }
    }

    pub fn check(&mut self) -> Result<(), String> {
        let Some(state) = Self::partition(&self.image, self.topic).cloned() else {
            return Ok(());
        };
        for broker in self.brokers.values() {
            if let Role::Leader { state: leader, .. } = &broker.role {
                if leader.leader_epoch() != state.leader_epoch || !broker.up {
                    continue;
                }
                for &(offset, value) in &self.acknowledged {
                    if broker.log.get(offset).map(|entry| entry.value) != Some(value) {
                        return Err(format!(
                            "broker {} leads epoch {} without acknowledged value {value} at offset {offset} (its log ends at {})",
                            broker.id,
                            leader.leader_epoch(),
                            broker.log.end()
                        ));
                    }
                }
            }
        }
        let brokers: Vec<&Broker> = self.brokers.values().collect();
        for (at, a) in brokers.iter().enumerate() {
            for b in &brokers[at + 1..] {
                let committed = a.high_watermark.min(b.high_watermark);
                for offset in 0..committed {
                    if a.log.get(offset) != b.log.get(offset) {
                        return Err(format!(
                            "brokers {} and {} differ at offset {offset}, below both high watermarks ({} and {}): {:?} vs {:?}",
                            a.id,
                            b.id,
                            a.high_watermark,
                            b.high_watermark,
                            a.log.get(offset),
                            b.log.get(offset)
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    fn violation(&self, what: String) -> Violation {
        Violation {
            seed: self.seed,
            step: self.step,
            what,
            trace: self.trace.clone(),
        }
    }

    /// One step: time passes, one fault may strike, every broker does its part.
    fn step(&mut self, faults: bool) {
        self.step += 1;
        self.now_ms += 10 + self.rng.below(200) as i64;
        let ids: Vec<BrokerId> = self.brokers.keys().copied().collect();
        if faults {
            for &id in &ids {
                if self.rng.chance(self.config.crash_per_mille, 1000) {
                    let power_cut = self.rng.chance(1, 2);
                    self.crash(id, power_cut);
                } else if self.rng.chance(self.config.isolate_per_mille, 1000) {
                    if let Some(broker) = self.brokers.get_mut(&id) {
                        broker.isolated = !broker.isolated;
                    }
                    let line = format!("broker {id} isolation toggled");
                    self.note(line);
                }
            }
        }
        for &id in &ids {
            let down = self.brokers.get(&id).is_some_and(|broker| !broker.up);
            if down && self.rng.chance(1, 10) {
                self.restart(id);
            }
        }
        if faults && self.rng.chance(self.config.reassign_per_mille, 1000) {
            self.reassign();
        }
        self.tick_control_plane(faults);
        for _ in 0..1 + self.rng.below(3) {
            self.produce();
        }
        for &id in &ids {
            if self.rng.chance(3, 4) {
                self.fetch(id);
            }
            if self.rng.chance(1, 2) {
                self.sync_leader(id);
            }
            if self.rng.chance(1, 3) {
                self.change_isr(id);
            }
            self.answer_produces(id);
            if self.rng.chance(1, 10) {
                if let Some(broker) = self.brokers.get_mut(&id) {
                    broker.checkpointed_high_watermark = broker.high_watermark;
                }
            }
        }
    }

    /// Runs the faulty steps, then heals everything and runs quiet steps until the cluster
    /// settles, checking the safety rules after every step and at the end that every
    /// acknowledged record is readable below the settled leader's high watermark.
    pub fn run(mut self) -> Result<Outcome, Violation> {
        for _ in 0..self.config.steps {
            self.step(true);
            self.check().map_err(|what| self.violation(what))?;
        }
        let ids: Vec<BrokerId> = self.brokers.keys().copied().collect();
        for id in ids {
            if let Some(broker) = self.brokers.get_mut(&id) {
                broker.isolated = false;
            }
            self.restart(id);
        }
        for _ in 0..self.config.steps {
            self.step(false);
            self.check().map_err(|what| self.violation(what))?;
        }
        let Some(leader) = self.leader() else {
            if !self.config.durable {
                self.outcome.left_offline = true;
                return Ok(self.outcome);
            }
            // Durable replicas never lose what they reported: one of them must lead again.
            return Err(self.violation("no leader after the cluster healed".into()));
        };
        let broker = &self.brokers[&leader];
        for &(offset, value) in &self.acknowledged {
            let readable = offset < broker.high_watermark
                && broker.log.get(offset).map(|entry| entry.value) == Some(value);
            if !readable {
                return Err(self.violation(format!(
                    "acknowledged value {value} at offset {offset} is not readable from leader {leader} (high watermark {})",
                    broker.high_watermark
                )));
            }
        }
        Ok(self.outcome)
    }
}
