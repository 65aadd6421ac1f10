//! [`World`]: a cluster of brokers replicating one partition, driven step by step from a
//! seed. The controller's decisions ([`Controller`]) and each replica's rules
//! ([`LeaderState`], [`runnel_replication::follower`]) are the real ones; the network, the
//! disks and the clock are simulated, and so are the faults: `kill -9`, power cuts (which
//! lose what was not fsynced), pauses (`kill -STOP`: messages wait for the paused broker,
//! which acts on its old state when it resumes), isolation of a broker from everyone, lost
//! and reordered messages, and metadata that reaches brokers late.
//!
//! The durability rule is the product's: every replica fsyncs what it appends before it
//! reports it (a follower's next fetch offset; the leader's `on_durable`), so a power cut
//! loses only what no `acks=all` answer counted.
//!
//! After each step the world checks, and [`World::run`] fails with the step's trace if:
//! - a broker leading the partition in the current leader epoch lacks an acknowledged
//!   record (an in-sync replica took over and lost it);
//! - two replicas hold different records at an offset below both their high watermarks;
//! - two brokers acknowledge produces in one leader epoch;
//! - a consumer finds its position past the log end of the leader it reads from (records it
//!   read are gone), or reads a value at an offset where another was read before.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use runnel_controller::records::Listener;
use runnel_controller::{
    alter_partition_not_applied, local_changes, AlterPartition, BrokerId, BrokerSessions,
    Controller, ControllerConfig, Heartbeat, MetadataImage, MetadataRecord, NewTopic,
    PartitionState, Registration, NO_LEADER,
};
use runnel_replication::{
    check_leader_epoch, follower_step, AckOutcome, Assignment, EpochCheck, EpochEnd, FetchAnswer,
    FollowerStep, IsrChange, IsrChangeOutcome, LeaderConfig, LeaderState, LocalLog, ReplicaFetch,
};
use runnel_storage::sim::SplitMix64;
use uuid::Uuid;

use crate::network::Network;
use crate::replica_log::ReplicaLog;

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
    /// Per step, out of 1000: the chance a broker is paused (`kill -STOP`); a paused one
    /// resumes after a seeded while, sometimes past its session and lag timeouts, and acts
    /// on what it knew before, with the messages sent to it meanwhile.
    pub pause_per_mille: u64,
    /// Out of 1000: the chance a message (a produce, a replica fetch or its answer) is lost.
    pub loss_per_mille: u64,
    /// Each message takes from 1 ms up to this long, drawn per message, so messages overtake
    /// each other.
    pub max_delay_ms: u64,
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
            pause_per_mille: 10,
            loss_per_mille: 30,
            max_delay_ms: 400,
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
    /// Truncations a follower had to continue with another fetch, not knowing the leader's
    /// epoch (KIP-279).
    pub truncations_in_rounds: usize,
    pub pauses: usize,
    pub messages_lost: usize,
    /// Records the consumers read (a record read again after a seek counts again).
    pub consumed: usize,
    /// A hash of the whole trace: two runs of one seed must agree on it.
    pub trace_digest: u64,
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

/// One end of a connection: a broker in one life (a crash ends its connections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Endpoint {
    id: BrokerId,
    life: u64,
}

/// A leader's answer to a replica fetch, with the entries that came with it.
#[derive(Debug, Clone)]
struct FetchReply {
    leader: BrokerId,
    request: ReplicaFetch,
    answer: FetchAnswer,
    /// Whole batches, as the leader's log returned them.
    records: Vec<u8>,
    leader_end: i64,
}

#[derive(Debug, Clone)]
enum Message {
    /// A client's `acks=all` produce of a new value.
    Produce { to: Endpoint, value: u64 },
    Fetch {
        from: Endpoint,
        to: Endpoint,
        request: ReplicaFetch,
    },
    FetchReply {
        from: Endpoint,
        to: Endpoint,
        reply: FetchReply,
    },
    /// A leader's ISR change, to the controller.
    AlterPartition {
        from: Endpoint,
        request: AlterPartition,
        change: IsrChange,
    },
    /// The controller's answer to it.
    IsrAnswer {
        to: Endpoint,
        change: IsrChange,
        outcome: IsrChangeOutcome,
    },
}

impl Message {
    /// The broker it goes to; `None` for the controller.
    fn recipient(&self) -> Option<BrokerId> {
        match self {
            Message::Produce { to, .. }
            | Message::Fetch { to, .. }
            | Message::FetchReply { to, .. }
            | Message::IsrAnswer { to, .. } => Some(to.id),
            Message::AlterPartition { .. } => None,
        }
    }

    /// The brokers at its ends (the controller is always there).
    fn endpoints(&self) -> Vec<Endpoint> {
        match self {
            Message::Produce { to, .. } | Message::IsrAnswer { to, .. } => vec![*to],
            Message::AlterPartition { from, .. } => vec![*from],
            Message::Fetch { from, to, .. } | Message::FetchReply { from, to, .. } => {
                vec![*from, *to]
            }
        }
    }

    /// The leader waiting for the controller's answer to this ISR change.
    fn isr_change_of(&self) -> Option<(Endpoint, &IsrChange)> {
        match self {
            Message::AlterPartition { from, change, .. } => Some((*from, change)),
            Message::IsrAnswer { to, change, .. } => Some((*to, change)),
            _ => None,
        }
    }

    /// The follower whose fetch this is part of, and the leader and leader epoch the fetch
    /// went to.
    fn fetch_of(&self) -> Option<(BrokerId, (BrokerId, i32))> {
        match self {
            Message::Produce { .. }
            | Message::AlterPartition { .. }
            | Message::IsrAnswer { .. } => None,
            Message::Fetch { from, to, request } => {
                Some((from.id, (to.id, request.current_leader_epoch)))
            }
            Message::FetchReply { to, from, reply } => {
                Some((to.id, (from.id, reply.request.current_leader_epoch)))
            }
        }
    }
}

/// A consumer reading the partition from the leader its metadata names, below the high
/// watermark, with the leader epoch it knows (KIP-320).
#[derive(Debug, Clone, Default)]
struct Consumer {
    position: i64,
    leader: Option<(BrokerId, i32)>,
    /// The newest leader epoch it has seen: metadata naming an older one is stale, and
    /// ignored (KIP-320), or a deposed leader could send it back.
    newest_epoch: i32,
}

#[derive(Debug)]
struct Broker {
    id: BrokerId,
    up: bool,
    isolated: bool,
    /// Stopped (`kill -STOP`): it does nothing, and messages to it wait.
    paused: bool,
    /// Counts its crashes: a connection of an earlier life is gone.
    life: u64,
    /// As a follower: the leader and leader epoch its fetch on its way went to (one at a
    /// time per leader, as a replica fetcher; one to a former leader is given up).
    fetching: Option<(BrokerId, i32)>,
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
    /// Whether it runs and others can talk to it.
    fn reachable(&self) -> bool {
        self.up && !self.isolated && !self.paused
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            id: self.id,
            life: self.life,
        }
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
    network: Network<Message>,
    consumers: Vec<Consumer>,
    /// What the consumers read: (offset, value).
    consumed: BTreeMap<i64, u64>,
    /// Which broker acknowledged produces in each leader epoch.
    acknowledged_by_epoch: BTreeMap<i32, BrokerId>,
    /// A safety rule broken while acting, reported by the next check.
    broken: Option<String>,
    /// Faults are over: no message is lost any more.
    healed: bool,
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
            network: Network::default(),
            consumers: vec![Consumer::default(), Consumer::default()],
            consumed: BTreeMap::new(),
            acknowledged_by_epoch: BTreeMap::new(),
            broken: None,
            healed: false,
        };
        for id in 1..=config.brokers {
            world.brokers.insert(
                id,
                Broker {
                    id,
                    up: true,
                    isolated: false,
                    paused: false,
                    life: 0,
                    fetching: None,
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

    /// A client sends an `acks=all` produce of a new value: mostly to the leader the
    /// controller names, sometimes to whoever its stale metadata names.
    fn produce(&mut self) {
        let target = if self.rng.chance(1, 5) {
            1 + self.rng.below(self.config.brokers as u64) as BrokerId
        } else {
            match self.leader() {
                Some(leader) => leader,
                None => return,
            }
        };
        let Some(to) = self.brokers.get(&target).map(Broker::endpoint) else {
            return;
        };
        let value = self.next_value;
        self.next_value += 1;
        self.send(Message::Produce { to, value });
    }

    /// An `acks=all` produce of a new value to `target`, taken at once; the value, if it
    /// took it.
    pub fn produce_to(&mut self, target: BrokerId) -> Option<u64> {
        let value = self.next_value;
        self.next_value += 1;
        self.take_produce(target, value).then_some(value)
    }

    /// Broker `target` takes a produce of `value` if it leads and has enough replicas in sync.
    fn take_produce(&mut self, target: BrokerId, value: u64) -> bool {
        let now = self.now_ms;
        let Some(broker) = self.brokers.get_mut(&target) else {
            return false;
        };
        if !broker.reachable() {
            return false;
        }
        let Role::Leader { state, waiting } = &mut broker.role else {
            return false;
        };
        if state.check_produce().is_err() {
            return false;
        }
        broker.log.append(value, state.leader_epoch(), now);
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
        true
    }

    /// Broker `id` fsyncs its log; as a leader, it counts what is now durable.
    pub fn sync_leader(&mut self, id: BrokerId) {
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if !broker.up || broker.paused {
            return;
        }
        broker.log.sync();
        if let Role::Leader { state, .. } = &mut broker.role {
            state.on_durable(broker.log.durable_end());
            broker.high_watermark = state.high_watermark();
        }
    }

    /// Sends `message` over the simulated network: lost, or delivered after a seeded delay.
    fn send(&mut self, message: Message) {
        if !self.healed && self.rng.chance(self.config.loss_per_mille, 1000) {
            self.outcome.messages_lost += 1;
            self.call_failed(&message);
            return;
        }
        let delay = 1 + self.rng.below(self.config.max_delay_ms) as i64;
        self.network.send(message, self.now_ms + delay);
    }

    /// A request or its answer is lost: the fetch it was part of is over, and an ISR change
    /// is unsettled (the leader's call times out, not knowing whether the controller took it).
    fn call_failed(&mut self, message: &Message) {
        self.fetch_ended(message);
        if let Some((leader, change)) = message.isr_change_of() {
            let change = change.clone();
            self.take_isr_answer(leader, &change, IsrChangeOutcome::Unsettled);
        }
    }

    /// A replica fetch ended without an answer to act on: its follower may fetch again (a
    /// real fetcher learns it from an error or a timeout).
    fn fetch_ended(&mut self, message: &Message) {
        let Some((follower, target)) = message.fetch_of() else {
            return;
        };
        if let Some(broker) = self.brokers.get_mut(&follower) {
            if broker.fetching == Some(target) {
                broker.fetching = None;
            }
        }
    }

    /// Delivers the messages due: to running brokers, over connections both ends of which
    /// are still in the life that opened them and not cut off; a paused recipient's wait.
    fn deliver(&mut self) {
        let brokers = &self.brokers;
        let due = self.network.take_due(self.now_ms, |message| {
            message
                .recipient()
                .and_then(|id| brokers.get(&id))
                .is_some_and(|broker| broker.up && broker.paused)
        });
        for message in due {
            let connected = message.endpoints().iter().all(|end| {
                self.brokers
                    .get(&end.id)
                    .is_some_and(|broker| broker.up && !broker.isolated && broker.life == end.life)
            });
            if !connected {
                self.call_failed(&message);
                continue;
            }
            if matches!(message, Message::FetchReply { .. }) {
                self.fetch_ended(&message);
            }
            match message {
                Message::Produce { to, value } => {
                    self.take_produce(to.id, value);
                }
                Message::Fetch { from, to, request } => match self.serve_fetch(to.id, &request) {
                    Some(reply) => self.send(Message::FetchReply {
                        from: to,
                        to: from,
                        reply,
                    }),
                    None => self.fetch_ended(&Message::Fetch { from, to, request }),
                },
                Message::FetchReply { to, reply, .. } => self.take_fetch_reply(to.id, reply),
                Message::AlterPartition {
                    from,
                    request,
                    change,
                } => {
                    let outcome = self.decide_alter_partition(&request, &change);
                    self.send(Message::IsrAnswer {
                        to: from,
                        change,
                        outcome,
                    });
                }
                Message::IsrAnswer {
                    to,
                    change,
                    outcome,
                } => self.take_isr_answer(to, &change, outcome),
            }
        }
    }

    /// Follower `id`'s next fetch, and the leader it goes to, if it follows one it can reach
    /// and has no fetch out.
    fn next_fetch(&self, id: BrokerId) -> Option<(BrokerId, ReplicaFetch)> {
        let follower = self.brokers.get(&id)?;
        let Role::Follower {
            leader,
            leader_epoch,
        } = follower.role
        else {
            return None;
        };
        if !follower.reachable() || follower.fetching == Some((leader, leader_epoch)) {
            return None;
        }
        // KIP-320: the last fetched epoch travels with the fetch.
        let request = ReplicaFetch {
            replica: id,
            broker_epoch: follower.broker_epoch,
            current_leader_epoch: leader_epoch,
            fetch_offset: follower.log.end(),
            last_fetched_epoch: follower.log.latest_epoch(),
        };
        Some((leader, request))
    }

    /// Follower `id` sends its next fetch over the network.
    fn send_fetch(&mut self, id: BrokerId) {
        let Some((leader, request)) = self.next_fetch(id) else {
            return;
        };
        let (Some(from), Some(to)) = (
            self.brokers.get(&id).map(Broker::endpoint),
            self.brokers.get(&leader).map(Broker::endpoint),
        ) else {
            return;
        };
        if let Some(follower) = self.brokers.get_mut(&id) {
            follower.fetching = Some((leader, request.current_leader_epoch));
        }
        self.send(Message::Fetch { from, to, request });
    }

    /// Follower `id` fetches from the leader it knows, and acts on the answer, at once.
    pub fn fetch(&mut self, id: BrokerId) {
        let Some((leader, request)) = self.next_fetch(id) else {
            return;
        };
        if !self.brokers.get(&leader).is_some_and(Broker::reachable) {
            return;
        }
        if let Some(reply) = self.serve_fetch(leader, &request) {
            self.take_fetch_reply(id, reply);
        }
    }

    /// Broker `leader` answers a replica fetch, if it leads the partition.
    fn serve_fetch(&mut self, leader: BrokerId, request: &ReplicaFetch) -> Option<FetchReply> {
        let now = self.now_ms;
        let source = self.brokers.get_mut(&leader)?;
        let Role::Leader { state, .. } = &mut source.role else {
            return None;
        };
        let source_log = &source.log;
        let (answer, _) = state.answer_fetch(
            request,
            |epoch| EpochEnd::from_log(source_log.end_for_epoch(epoch)),
            now,
        );
        source.high_watermark = state.high_watermark();
        let records = match answer {
            FetchAnswer::Records { .. } => source.log.read_for_follower(request.fetch_offset),
            _ => Vec::new(),
        };
        Some(FetchReply {
            leader,
            request: *request,
            answer,
            records,
            leader_end: source.log.end(),
        })
    }

    /// Follower `id` acts on a fetch's answer: only if it still follows that leader in that
    /// epoch, in the registration that asked, from the offset it asked at (as the broker's
    /// partition refuses an answer that was on its way when any of those changed).
    fn take_fetch_reply(&mut self, id: BrokerId, reply: FetchReply) {
        let now = self.now_ms;
        let Some(follower) = self.brokers.get_mut(&id) else {
            return;
        };
        let FetchReply {
            leader,
            request,
            answer,
            records,
            leader_end,
        } = reply;
        let current = matches!(
            follower.role,
            Role::Follower { leader: following, leader_epoch }
                if following == leader && leader_epoch == request.current_leader_epoch
        );
        if !current
            || follower.broker_epoch != request.broker_epoch
            || follower.log.end() != request.fetch_offset
        {
            return;
        }
        let step = follower_step(
            answer,
            |epoch| EpochEnd::from_log(follower.log.end_for_epoch(epoch)),
            follower.log.end(),
            follower.high_watermark,
        );
        let cut_to = match step {
            FollowerStep::Append { high_watermark } => {
                follower.log.append_replicated(&records, now);
                // Fsynced before the next fetch reports it, unless in page-cache mode.
                if self.config.durable {
                    follower.log.sync();
                }
                follower.high_watermark = high_watermark.min(follower.log.end());
                None
            }
            FollowerStep::Truncate(plan) => {
                if !plan.complete {
                    self.outcome.truncations_in_rounds += 1;
                }
                Some(plan.offset)
            }
            FollowerStep::Reset => Some(leader_end.min(follower.log.end())),
            FollowerStep::AwaitMetadata | FollowerStep::Retry => None,
        };
        if let Some(offset) = cut_to {
            let removed = (follower.log.end() - offset).max(0) as usize;
            follower.log.truncate(offset, now);
            follower.high_watermark = follower.high_watermark.min(offset);
            self.outcome.truncated_entries += removed;
            let kept = follower.log.describe();
            self.note(format!(
                "broker {id} diverges from {leader} ({step:?} after {answer:?}): truncated to {offset}: {kept}"
            ));
        }
    }

    /// Broker `id`, if it leads, proposes the ISR change its rules call for, and takes the
    /// controller's answer.
    pub fn change_isr(&mut self, id: BrokerId) {
        self.change_isr_over(id, false);
    }

    /// [`Self::change_isr`], the request and its answer sent over the network (late, or
    /// lost) with `over_network`.
    fn change_isr_over(&mut self, id: BrokerId, over_network: bool) {
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
        let Some(from) = self.brokers.get(&id).map(Broker::endpoint) else {
            return;
        };
        if over_network {
            self.send(Message::AlterPartition {
                from,
                request,
                change,
            });
        } else {
            let outcome = self.decide_alter_partition(&request, &change);
            self.take_isr_answer(from, &change, outcome);
        }
    }

    /// The controller decides an ISR change; what its answer tells the leader.
    fn decide_alter_partition(
        &mut self,
        request: &AlterPartition,
        change: &IsrChange,
    ) -> IsrChangeOutcome {
        match self.controller().alter_partition(request) {
            Ok(records) => {
                self.commit(records);
                match Self::partition(&self.image, self.topic) {
                    Some(state)
                        if state.leader == request.broker_id
                            && state.leader_epoch == change.leader_epoch =>
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
                    "broker {}'s ISR change {:?} refused: {error}",
                    request.broker_id, request.new_isr
                ));
                if alter_partition_not_applied(error.code) {
                    IsrChangeOutcome::NotApplied
                } else {
                    IsrChangeOutcome::Unsettled
                }
            }
        }
    }

    /// The leader that proposed `change`, if still in that life and leading in its epoch,
    /// takes the answer (as the broker's partition does only in the change's leader epoch).
    fn take_isr_answer(&mut self, leader: Endpoint, change: &IsrChange, outcome: IsrChangeOutcome) {
        let now = self.now_ms;
        let Some(broker) = self.brokers.get_mut(&leader.id) else {
            return;
        };
        if broker.life != leader.life {
            return;
        }
        if let Role::Leader { state, .. } = &mut broker.role {
            if state.leader_epoch() == change.leader_epoch {
                state.isr_change_done(change, outcome, now);
                broker.high_watermark = state.high_watermark();
            }
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
        let mut leader_epoch = None;
        if let Role::Leader { state, waiting } = &mut broker.role {
            leader_epoch = Some(state.leader_epoch());
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
        if let (Some(epoch), false) = (leader_epoch, acknowledged.is_empty()) {
            let first = *self.acknowledged_by_epoch.entry(epoch).or_insert(id);
            if first != id {
                self.broken.get_or_insert(format!(
                    "brokers {first} and {id} both acknowledged produces in leader epoch {epoch}"
                ));
            }
        }
        for (offset, value) in acknowledged {
            self.note(format!(
                "broker {id} acknowledges value {value} at offset {offset}"
            ));
            self.acknowledged.push((offset, value));
            self.outcome.acknowledged += 1;
        }
    }

    /// Consumer `index` reads on from the leader its metadata names, which it takes, when it
    /// has none or now and then, from a broker's image (perhaps a stale one, ignored if it
    /// names an older leader epoch than one seen before). It must never
    /// find its position past the log end of a leader in the epoch it knows (records it read
    /// were lost), nor an offset holding another value than one read before.
    fn consume(&mut self, index: usize) {
        let refresh = self.consumers[index].leader.is_none() || self.rng.chance(1, 10);
        if refresh {
            let asked = 1 + self.rng.below(self.config.brokers as u64) as BrokerId;
            let Some(image) = self
                .brokers
                .get(&asked)
                .filter(|broker| broker.reachable())
                .map(|broker| &broker.image)
            else {
                return;
            };
            let consumer = &mut self.consumers[index];
            if let Some(state) = Self::partition(image, self.topic)
                .filter(|state| state.leader_epoch >= consumer.newest_epoch)
            {
                consumer.newest_epoch = state.leader_epoch;
                consumer.leader =
                    (state.leader != NO_LEADER).then_some((state.leader, state.leader_epoch));
            }
        }
        let Some((leader, leader_epoch)) = self.consumers[index].leader else {
            return;
        };
        let Some(broker) = self.brokers.get(&leader).filter(|b| b.reachable()) else {
            self.consumers[index].leader = None;
            return;
        };
        let Role::Leader { state, .. } = &broker.role else {
            // NOT_LEADER_OR_FOLLOWER: refresh.
            self.consumers[index].leader = None;
            return;
        };
        if check_leader_epoch(leader_epoch, state.leader_epoch()) != EpochCheck::Current {
            self.consumers[index].leader = None;
            return;
        }
        let position = self.consumers[index].position;
        if position > broker.log.end() {
            self.broken.get_or_insert(format!(
                "consumer {index} at offset {position} is past the log end {} of broker {leader}, leading epoch {leader_epoch}: records it read are gone",
                broker.log.end()
            ));
            return;
        }
        let until = state
            .high_watermark()
            .min(position + FETCH_MAX_ENTRIES as i64);
        let read: Vec<(i64, u64)> = (position..until)
            .filter_map(|offset| broker.log.get(offset).map(|entry| (offset, entry.value)))
            .collect();
        for &(offset, value) in &read {
            let first = *self.consumed.entry(offset).or_insert(value);
            if first != value {
                self.broken.get_or_insert(format!(
                    "consumer {index} read value {value} at offset {offset} from broker {leader}, where value {first} was read before"
                ));
            }
        }
        self.outcome.consumed += read.len();
        self.consumers[index].position = position + read.len() as i64;
        // The second consumer sometimes reads everything again (reprocessing).
        if index == 1 && self.rng.chance(1, 100) {
            self.consumers[index].position = 0;
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
        let disk_seed = self.rng.next_u64();
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        if !broker.up {
            return;
        }
        broker.lost_unflushed |= power_cut && !durable;
        broker.up = false;
        broker.paused = false;
        broker.fetching = None;
        broker.life += 1;
        broker.role = Role::None;
        // The log is opened again from what the disk kept, as the broker will when it
        // restarts: fsynced first, where replicas count only what they fsynced.
        if power_cut {
            broker.log.power_cut(disk_seed, durable);
        } else {
            broker.log.killed(durable);
        }
        broker.high_watermark = broker.checkpointed_high_watermark.min(broker.log.end());
        broker.broker_epoch = -1;
        let how = if power_cut {
            "loses power"
        } else {
            "is killed"
        };
        let line = format!(
            "broker {id} {how}: its disk keeps {}",
            broker.log.describe()
        );
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
        if let Some(broken) = self.broken.take() {
            return Err(broken);
        }
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
                } else {
                    self.pause_or_resume(id);
                }
            }
        }
        self.deliver();
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
        for index in 0..self.consumers.len() {
            if self.rng.chance(1, 2) {
                self.consume(index);
            }
        }
        for &id in &ids {
            if self.rng.chance(3, 4) {
                self.send_fetch(id);
            }
            if self.rng.chance(1, 2) {
                self.sync_leader(id);
            }
            if self.rng.chance(1, 3) {
                self.change_isr_over(id, !self.healed);
            }
            self.answer_produces(id);
            if self.rng.chance(1, 10) {
                if let Some(broker) = self.brokers.get_mut(&id) {
                    broker.checkpointed_high_watermark = broker.high_watermark;
                }
            }
        }
    }

    /// A running broker is paused now and then; a paused one resumes after 15 steps on
    /// average (about 1.6 s, often past the session and lag timeouts).
    fn pause_or_resume(&mut self, id: BrokerId) {
        let Some(broker) = self.brokers.get(&id).filter(|broker| broker.up) else {
            return;
        };
        let toggle = if broker.paused {
            self.rng.chance(1, 15)
        } else {
            self.rng.chance(self.config.pause_per_mille, 1000)
        };
        if !toggle {
            return;
        }
        let paused = !broker.paused;
        if let Some(broker) = self.brokers.get_mut(&id) {
            broker.paused = paused;
        }
        if paused {
            self.outcome.pauses += 1;
        }
        self.note(format!(
            "broker {id} {}",
            if paused { "is paused" } else { "resumes" }
        ));
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
                broker.paused = false;
            }
            self.restart(id);
        }
        self.healed = true;
        // Quiet steps, then more until the cluster settles: a leader that serves every
        // acknowledged record below its high watermark (a move completed late needs them).
        let mut quiet = 0;
        loop {
            self.step(false);
            self.check().map_err(|what| self.violation(what))?;
            quiet += 1;
            if quiet < self.config.steps {
                continue;
            }
            let unsettled = match self.unsettled() {
                Ok(()) => break,
                Err(what) => what,
            };
            if quiet >= 3 * self.config.steps {
                if self.leader().is_none() && !self.config.durable {
                    self.outcome.left_offline = true;
                    return Ok(self.finish());
                }
                return Err(self.violation(unsettled));
            }
        }
        Ok(self.finish())
    }

    /// The outcome, with the trace's digest (a fixed-key hash: the same in every process).
    fn finish(mut self) -> Outcome {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.trace.hash(&mut hasher);
        self.outcome.trace_digest = hasher.finish();
        self.outcome
    }

    /// Whether the healed cluster has settled: a leader (durable replicas never lose what
    /// they reported, so one of them must lead again) serving every acknowledged record
    /// below its high watermark, and holding every record a consumer read.
    fn unsettled(&self) -> Result<(), String> {
        let Some(leader) = self.leader() else {
            return Err("no leader after the cluster healed".into());
        };
        let broker = &self.brokers[&leader];
        for &(offset, value) in &self.acknowledged {
            let readable = offset < broker.high_watermark
                && broker.log.get(offset).map(|entry| entry.value) == Some(value);
            if !readable {
                return Err(format!(
                    "acknowledged value {value} at offset {offset} is not readable from leader {leader} (high watermark {})",
                    broker.high_watermark
                ));
            }
        }
        for (&offset, &value) in &self.consumed {
            if broker.log.get(offset).map(|entry| entry.value) != Some(value) {
                return Err(format!(
                    "value {value} a consumer read at offset {offset} is not in leader {leader}'s log"
                ));
            }
        }
        Ok(())
    }
}
