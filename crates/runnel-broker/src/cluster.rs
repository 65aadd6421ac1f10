//! This broker as a member of a cluster: its standing with the controller quorum
//! (registration, heartbeats, the metadata image: `runnel_quorum::BrokerLifecycle`), the
//! image applied to its partitions, ISR changes sent to the controller, and admin requests
//! forwarded to it.
//!
//! - The image is applied whole each time it moves, so applying is idempotent and a restart
//!   needs no history: for every topic, the partitions with a replica here are opened, and
//!   each takes the role the image gives it (leader, follower of a named leader, or none).
//!   Roles are taken only once the image holds this process's own registration, never from an
//!   image learnt before it (a restarted broker must not act on its previous life's roles).
//! - A leader's ISR changes go to the controller one at a time per partition
//!   (AlterPartition), on a short timer; the answer, or a newer image, settles them.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use runnel_controller::records::{ConfigResource, Listener};
use runnel_controller::{
    alter_partition_not_applied, AdoptedTopic, AlterPartition, MetadataImage, PartitionState,
    TopicImage,
};
use runnel_quorum::{
    BrokerLifecycle, BrokerStatus, ControllerClient, ControllerRequest, ControllerResponse,
    LifecycleConfig, OfflineReplicas, Quorum,
};
use runnel_replication::{Assignment, IsrChange, IsrChangeOutcome, LeaderConfig};
use runnel_storage::fs::{read_optional, write_atomically};
use runnel_storage::FileSystem;
use tokio::sync::watch;
use uuid::Uuid;

use crate::broker::Broker;
use crate::config::ProcessRole;
use crate::error::ApiError;
use crate::partition::{Partition, Role};
use crate::producer_ids;
use crate::replica_fetcher::ReplicaFetchers;

/// How long an admin request forwarded to the controller may take.
const CONTROLLER_CALL_WITHIN: Duration = Duration::from_secs(15);
/// How often leaders look for ISR changes to propose.
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// How often the high watermarks are checkpointed (`replica.high.watermark.checkpoint.interval.ms`).
const HIGH_WATERMARK_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// How long an admin request waits for this broker's image to show its change.
const APPLIED_WAIT: Duration = Duration::from_secs(10);

/// This broker's membership of the cluster: its registration, the metadata image it applies,
/// its replica fetchers and the controller voter it may also run.
#[derive(Debug)]
pub(crate) struct ClusterMember {
    pub broker_id: i32,
    lifecycle: Mutex<Option<BrokerLifecycle>>,
    image: watch::Receiver<Arc<MetadataImage>>,
    status: watch::Receiver<BrokerStatus>,
    controller: tokio::sync::Mutex<ControllerClient>,
    /// The offset of the image this broker's partitions follow.
    applied: watch::Sender<u64>,
    /// Whether the image this broker's partitions follow shows it unfenced: listed as a live
    /// broker, leading what the controller gave it.
    applied_unfenced: watch::Sender<bool>,
    /// One replica fetcher per leader this broker copies partitions from.
    fetchers: ReplicaFetchers,
    /// The controller quorum voter this process also runs (`--roles broker,controller`).
    quorum: tokio::sync::Mutex<Option<Quorum>>,
}

impl ClusterMember {
    /// Starts registering with the quorum at `controllers`, as this broker's advertised
    /// listener.
    pub(crate) fn start(
        broker: &Arc<Broker>,
        controllers: Vec<String>,
        quorum: Option<Quorum>,
        incarnation: Incarnation,
    ) -> Self {
        let config = broker.config();
        let lifecycle = BrokerLifecycle::start(LifecycleConfig {
            broker_id: config.node_id,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: broker.advertised_host.clone(),
                port: u16::try_from(broker.advertised_port).unwrap_or_default(),
            }],
            rack: config.rack.clone(),
            incarnation_id: incarnation.this,
            previous_incarnation_id: incarnation.previous,
            data_intact: config.replica_fsync || incarnation.previous_ended_cleanly,
            controllers: controllers.clone(),
            heartbeat_interval: Duration::from_millis(config.broker_heartbeat_interval_ms),
            offline_replicas: {
                // Weak: the broker owns this member, which owns the lifecycle.
                let broker = Arc::downgrade(broker);
                OfflineReplicas::new(move || {
                    broker
                        .upgrade()
                        .map(|broker| broker.topics.offline_replicas())
                        .unwrap_or_default()
                })
            },
        });
        let (applied, _) = watch::channel(0);
        let (applied_unfenced, _) = watch::channel(false);
        ClusterMember {
            broker_id: config.node_id,
            image: lifecycle.image(),
            status: lifecycle.status(),
            lifecycle: Mutex::new(Some(lifecycle)),
            controller: tokio::sync::Mutex::new(ControllerClient::new(&controllers)),
            applied,
            applied_unfenced,
            fetchers: ReplicaFetchers::default(),
            quorum: tokio::sync::Mutex::new(quorum),
        }
    }

    /// The latest metadata image this broker has.
    pub(crate) fn image(&self) -> Arc<MetadataImage> {
        self.image.borrow().clone()
    }

    /// The epoch of this process's registration, once it has one.
    pub(crate) fn broker_epoch(&self) -> Option<i64> {
        self.status.borrow().epoch()
    }

    /// Returns once this broker has applied an image that holds its own registration,
    /// unfenced: it knows every topic created before it registered and every live broker,
    /// and lists itself among them (as a KRaft broker waits for its first unfencing before it
    /// serves clients: listed as fenced, it would be absent from its own Metadata answers,
    /// which sends admin clients looking for a controller that is not there).
    pub(crate) async fn wait_caught_up(&self) {
        let mut unfenced = self.applied_unfenced.subscribe();
        let _ = unfenced.wait_for(|unfenced| *unfenced).await;
    }

    /// Waits until the controller has unfenced this process's registration; its epoch.
    async fn wait_unfenced(&self) -> i64 {
        let mut status = self.status.clone();
        loop {
            if let BrokerStatus::Active { epoch } = *status.borrow_and_update() {
                return epoch;
            }
            if status.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    /// Sends a request to the active controller; a refusal becomes its Kafka error.
    pub(crate) async fn call(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerResponse, ApiError> {
        let answer = self
            .controller
            .lock()
            .await
            .call(request, CONTROLLER_CALL_WITHIN)
            .await
            .map_err(|error| ApiError::new(ResponseError::RequestTimedOut, error.to_string()))?;
        match answer {
            ControllerResponse::Refused { code, message } => Err(ApiError::new(
                ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError),
                message,
            )),
            other => Ok(other),
        }
    }

    /// Waits until this broker's partitions follow an image at or past `offset`, so that a
    /// client's next request sees the change it just made. A timeout is not an error: the
    /// change is committed and will arrive.
    pub(crate) async fn wait_applied(&self, offset: u64) {
        let mut applied = self.applied.subscribe();
        let _ = tokio::time::timeout(APPLIED_WAIT, applied.wait_for(|at| *at >= offset)).await;
    }

    /// Sends a request the controller answers with a commit offset, and waits for this
    /// broker to apply it.
    pub(crate) async fn commit(&self, request: ControllerRequest) -> Result<(), ApiError> {
        match self.call(request).await? {
            ControllerResponse::Committed { offset } => {
                self.wait_applied(offset).await;
                Ok(())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// KIP-951: the partition's leader as the image names it, for a client this broker sent
    /// away with NOT_LEADER_OR_FOLLOWER, and where that leader listens. By topic id, or by
    /// name when the id is nil.
    pub(crate) fn leader_hint(&self, topic: (&str, Uuid), partition: i32) -> Option<LeaderHint> {
        let image = self.image();
        let found = if topic.1.is_nil() {
            image.topic_by_name(topic.0)
        } else {
            image.topic(topic.1)
        }?;
        let state = found.partitions.get(&partition)?;
        if !state.has_leader() {
            return None;
        }
        let registered = image.broker(state.leader)?;
        let listener = registered.registration.listeners.first()?;
        Some(LeaderHint {
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            host: listener.host.clone(),
            port: i32::from(listener.port),
            rack: registered.registration.rack.clone(),
        })
    }

    /// Controlled shutdown: moves this broker's leaderships away, then stops fetching and
    /// stops the quorum voter this process runs, if any.
    pub(crate) async fn shut_down(&self) {
        let lifecycle = self
            .lifecycle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(lifecycle) = lifecycle {
            lifecycle.shut_down(Duration::from_secs(10)).await;
        }
        self.fetchers.stop_all();
        if let Some(quorum) = self.quorum.lock().await.take() {
            quorum.shutdown().await;
        }
    }
}

/// The file naming the quorum this data directory's topics belong to ([`quorum_name`]): the
/// topics it held before were adopted by that quorum's controller, or it had none.
pub(crate) const ADOPTED_FILE: &str = "quorum.adopted";
/// How long adoption waits between attempts while the controller cannot take it yet.
const ADOPT_RETRY: Duration = Duration::from_millis(200);

/// The quorum a data directory's topics belong to, as [`ADOPTED_FILE`] names it: the sorted
/// voters of a quorum shared with other nodes, or this node alone (whose voter address may
/// change at each start).
pub(crate) fn quorum_name(shared_quorum: Option<&str>, node_id: i32) -> String {
    match shared_quorum {
        Some(quorum) => {
            let mut voters: Vec<&str> = quorum.split(',').map(str::trim).collect();
            voters.sort_unstable();
            voters.join(",")
        }
        None => format!("node {node_id} alone"),
    }
}

/// Whether the quorum `name` has adopted this data directory's topics.
pub(crate) fn adopted_by(fs: &dyn FileSystem, data_dir: &Path, name: &str) -> io::Result<bool> {
    let marker = read_optional(fs, &data_dir.join(ADOPTED_FILE))?;
    Ok(marker.is_some_and(|text| String::from_utf8_lossy(&text).trim() == name))
}

/// A node that joins a quorum other than the one its topics belong to (a single node
/// restarted with `--roles broker --controller-quorum ...`) hands the controller what it
/// held, before it applies any image (applying removes every topic the cluster does not
/// know): its topics with their ids and configs, each partition on this broker alone
/// (`runnel cluster reassign` adds replicas), and the producer ids it handed out. Waits for
/// the quorum and for this broker to be unfenced. Done once per data directory and quorum; a
/// topic the cluster holds under another id is refused, as adopting either would hand one
/// topic's data to the other.
pub(crate) async fn adopt_local_topics(
    broker: &Arc<Broker>,
    member: &ClusterMember,
) -> Result<(), String> {
    let reader = Arc::clone(broker);
    let local = broker
        .io
        .run(move || held_alone(&reader))
        .await
        .map_err(|error| error.to_string())??;
    let Some((topics, next_producer_id)) = local else {
        return Ok(());
    };
    if !topics.is_empty() || next_producer_id > 0 {
        let offset = loop {
            let broker_epoch = member.wait_unfenced().await;
            let request = ControllerRequest::AdoptTopics {
                broker_id: member.broker_id,
                broker_epoch,
                topics: topics.clone(),
                next_producer_id,
            };
            match member.call(request).await {
                Ok(ControllerResponse::Committed { offset }) => break offset,
                Ok(other) => {
                    return Err(format!("unexpected answer from the controller: {other:?}"))
                }
                Err(error) if error.code == ResponseError::TopicAlreadyExists => {
                    return Err(format!(
                        "cannot join the cluster with this data directory's topics: {}",
                        error.message.unwrap_or_default()
                    ))
                }
                Err(error) => {
                    tracing::info!(error = ?error.message, "the controller cannot adopt this broker's topics yet; retrying");
                    tokio::time::sleep(ADOPT_RETRY).await;
                }
            }
        };
        let mut image = member.image.clone();
        let _ = image.wait_for(|image| image.offset() >= offset).await;
        tracing::info!(
            topics = topics.len(),
            next_producer_id,
            "the cluster adopted what this broker held as a single node"
        );
    }
    let writer = Arc::clone(broker);
    broker
        .io
        .run(move || {
            let marker = format!("{}\n", writer.quorum_name());
            write_atomically(
                &*writer.fs,
                &writer.config.data_dir,
                ADOPTED_FILE,
                marker.as_bytes(),
            )
        })
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| format!("cannot write {ADOPTED_FILE}: {error}"))
}

/// What this data directory held before it joined the quorum it is configured with, or
/// `None` when that quorum adopted it already: the topics a single node of old wrote to
/// `topics/`, and those of the quorum this node ran alone, read from its metadata log (never
/// while this process runs a voter, which owns that log). Blocks.
fn held_alone(broker: &Broker) -> Result<Option<(Vec<AdoptedTopic>, i64)>, String> {
    let dir = &broker.config.data_dir;
    if adopted_by(&*broker.fs, dir, &broker.quorum_name()).map_err(|error| error.to_string())? {
        return Ok(None);
    }
    let mut topics: BTreeMap<String, AdoptedTopic> = broker
        .topics
        .list()
        .iter()
        .map(|topic| {
            let adopted = AdoptedTopic {
                name: topic.name.to_string(),
                id: topic.id,
                partitions: topic.partition_count(),
                configs: topic.overrides().into_iter().collect(),
            };
            (adopted.name.clone(), adopted)
        })
        .collect();
    let mut next_producer_id = producer_ids::durable_end(&*broker.fs, dir)?;
    let node = u64::try_from(broker.config.node_id).map_err(|error| error.to_string())?;
    let alone = if broker.config.has_role(ProcessRole::Controller) {
        None
    } else {
        runnel_quorum::read_stored_metadata(Arc::clone(&broker.fs), dir)
            .map_err(|error| format!("cannot read the metadata this node held alone: {error}"))?
            .filter(|stored| stored.voters.len() == 1 && stored.voters.contains(&node))
    };
    if let Some(stored) = alone {
        for topic in stored.image.topics() {
            let configs = stored
                .image
                .configs(&ConfigResource::Topic(topic.name.clone()))
                .map(|configs| configs.clone().into_iter().collect())
                .unwrap_or_default();
            topics.insert(
                topic.name.clone(),
                AdoptedTopic {
                    name: topic.name.clone(),
                    id: topic.id,
                    partitions: i32::try_from(topic.partitions.len())
                        .map_err(|error| error.to_string())?,
                    configs,
                },
            );
        }
        next_producer_id = next_producer_id.max(stored.image.next_producer_id());
    }
    Ok(Some((topics.into_values().collect(), next_producer_id)))
}

/// The file in the data directory naming the incarnation this broker last registered as.
const INCARNATION_FILE: &str = "broker.incarnation";

/// The file a broker leaves when every partition log closed cleanly (flushed), and removes
/// before it registers again.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "broker.clean-shutdown";

/// This process's incarnation (the id it registers under), and its data directory's previous
/// one, which lets the controller replace that registration at once instead of waiting out
/// its session: a `kill -9` and restart takes its partitions back in moments.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incarnation {
    pub this: Uuid,
    pub previous: Option<Uuid>,
    /// The previous life flushed every log before it ended, so this one holds everything it
    /// ever reported, fsync on acknowledgement or not ([`CLEAN_SHUTDOWN_FILE`]).
    pub previous_ended_cleanly: bool,
}

impl Incarnation {
    /// A new incarnation, durable in the data directory before it is ever registered, so that
    /// the file names every incarnation the controller may have registered. The clean-shutdown
    /// mark is consumed, durably, before too: this life may end in a crash. Blocks.
    pub(crate) fn next(broker: &Broker) -> std::io::Result<Incarnation> {
        let fs = &*broker.fs;
        let dir = &broker.config.data_dir;
        let previous = read_optional(fs, &dir.join(INCARNATION_FILE))?
            .and_then(|bytes| Uuid::try_parse_ascii(bytes.trim_ascii()).ok());
        let this = Uuid::new_v4();
        write_atomically(fs, dir, INCARNATION_FILE, this.to_string().as_bytes())?;
        let mark = dir.join(CLEAN_SHUTDOWN_FILE);
        let previous_ended_cleanly = fs.exists(&mark)?;
        if previous_ended_cleanly {
            fs.remove_file(&mark)?;
            fs.sync_dir(dir)?;
        }
        Ok(Incarnation {
            this,
            previous,
            previous_ended_cleanly,
        })
    }
}

/// Where a partition's leader is, for KIP-951's hints in Produce and Fetch answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaderHint {
    pub leader: i32,
    pub leader_epoch: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// KIP-951 for one response: `refused` lists each partition the broker sent away (topic
/// name, topic id, index) as `(place, hint)`; `set_leader` writes each hint's leader into
/// its place, and the distinct leaders come back for the response's node endpoints.
pub(crate) fn leader_hints<'a, P: 'a>(
    member: &ClusterMember,
    refused: impl Iterator<Item = ((&'a str, Uuid, i32), P)>,
    mut set_leader: impl FnMut(P, i32, i32),
) -> Vec<LeaderHint> {
    let mut leaders: Vec<LeaderHint> = Vec::new();
    for ((name, id, index), place) in refused {
        let Some(hint) = member.leader_hint((name, id), index) else {
            continue;
        };
        set_leader(place, hint.leader, hint.leader_epoch);
        if !leaders.iter().any(|known| known.leader == hint.leader) {
            leaders.push(hint);
        }
    }
    leaders
}

pub(crate) fn unexpected(answer: &ControllerResponse) -> ApiError {
    ApiError::new(
        ResponseError::UnknownServerError,
        format!("unexpected answer from the controller: {answer:?}"),
    )
}

/// Applies every new image (or registration) to this broker's partitions until shutdown.
pub(crate) async fn apply_images(broker: Arc<Broker>) {
    let Some(member) = broker.cluster().cloned() else {
        return;
    };
    let mut images = member.image.clone();
    let mut status = member.status.clone();
    let mut shutdown = broker.shutdown_signal();
    loop {
        let image = images.borrow_and_update().clone();
        let current = *status.borrow_and_update();
        let registered_in_image = current.epoch().is_some_and(|epoch| {
            image
                .broker(member.broker_id)
                .is_some_and(|registered| registered.registration.epoch == epoch)
        });
        if registered_in_image {
            let epoch = current.epoch().unwrap_or(-1);
            let applier = Arc::clone(&broker);
            let applied_image = Arc::clone(&image);
            let changes = broker
                .io
                .run(move || apply_image(&applier, &applied_image, epoch))
                .await;
            match changes {
                Ok(follow) => {
                    member
                        .fetchers
                        .assign(&broker, follow, |leader| broker_address(&image, leader));
                    follow_coordinator_leadership(&broker).await;
                }
                Err(error) => tracing::error!(%error, "could not apply the metadata image"),
            }
            member.applied.send_replace(image.offset());
            let unfenced = image
                .broker(member.broker_id)
                .is_some_and(|registered| !registered.registration.fenced);
            member.applied_unfenced.send_replace(unfenced);
        } else if current == BrokerStatus::Registering {
            // Registered no more (a stale epoch): lead and follow nothing until registered.
            member.applied_unfenced.send_replace(false);
            let resigner = Arc::clone(&broker);
            let _ = broker.io.run(move || resign_all(&resigner)).await;
            follow_coordinator_leadership(&broker).await;
            member.fetchers.stop_all();
        }
        tokio::select! {
            _ = images.changed() => {}
            _ = status.changed() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// The group and transaction coordinators load the partitions of their internal topics
/// this broker now leads and unload the others. Off the async workers: the transaction
/// coordinator's lock is held across writes that wait for the in-sync replicas, and a
/// worker blocked on it would stall the connections those replicas fetch through.
async fn follow_coordinator_leadership(broker: &Arc<Broker>) {
    let broker = Arc::clone(broker);
    let outcome = tokio::task::spawn_blocking(move || {
        broker.groups.follow_leadership(&broker);
        broker.transactions.follow_leadership(&broker);
    })
    .await;
    if let Err(error) = outcome {
        tracing::error!(%error, "the coordinators could not follow the leaderships");
    }
}

/// A partition to follow: which topic, which leader in which epoch.
pub(crate) struct Follow {
    pub partition: Arc<Partition>,
    pub topic_id: Uuid,
    pub leader: i32,
    pub leader_epoch: i32,
}

/// Applies `image` to the topics and partitions here; returns the partitions to follow.
/// Blocks (logs are opened and epochs persisted).
pub(crate) fn apply_image(
    broker: &Broker,
    image: &MetadataImage,
    broker_epoch: i64,
) -> Vec<Follow> {
    let me = broker.node_id();
    let now_ms = broker.now_ms();
    let deleted = broker
        .topics
        .remove_topics_not_in(|id| image.topic(id).is_some());
    // Kafka's onPartitionsDeleted: every broker applies the image that deletes a topic, and
    // each clears the groups it coordinates. Done before the image counts as applied, which
    // the answer to DeleteTopics waits for: where this broker coordinates the group too, the
    // client that deleted a topic no longer finds offsets on it.
    broker.groups.remove_offsets_of_topics(&deleted);
    // Before the topics: a new topic resolves its settings with the defaults in force.
    broker.topics.set_dynamic_defaults(
        image.configs(&ConfigResource::Cluster),
        image.configs(&ConfigResource::Broker(me)),
    );
    let mut follow = Vec::new();
    for topic in image.topics() {
        let configs: BTreeMap<String, String> = image
            .configs(&ConfigResource::Topic(topic.name.clone()))
            .cloned()
            .unwrap_or_default();
        let hosted = |index: i32| {
            topic
                .partitions
                .get(&index)
                .is_some_and(|state| state.replicas.contains(&me))
        };
        let count = topic
            .partitions
            .keys()
            .next_back()
            .map_or(0, |last| last + 1);
        if let Err(error) =
            broker
                .topics
                .apply_image_topic(&topic.name, topic.id, count, &configs, hosted, now_ms)
        {
            tracing::error!(topic = %topic.name, error = ?error.message, "could not open the topic's partitions");
            continue;
        }
        let Some(local) = broker.topics.get(&topic.name) else {
            continue;
        };
        for (&index, state) in &topic.partitions {
            let Some(partition) = local.partition(index).filter(|p| p.is_held()) else {
                continue;
            };
            if let Some(follower) =
                take_role(broker, topic, &partition, state, broker_epoch, now_ms)
            {
                follow.push(follower);
            }
        }
    }
    follow
}

/// Gives one partition the role `state` says. Blocks.
fn take_role(
    broker: &Broker,
    topic: &TopicImage,
    partition: &Arc<Partition>,
    state: &PartitionState,
    broker_epoch: i64,
    now_ms: i64,
) -> Option<Follow> {
    let me = broker.node_id();
    let assignment = Assignment {
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        replicas: state.replicas.clone(),
        isr: state.isr.clone(),
    };
    if state.leader == me {
        let min_insync_replicas = usize::try_from(
            broker
                .topics
                .get(&topic.name)
                .map_or(1, |t| t.settings().min_insync_replicas),
        )
        .unwrap_or(1);
        let leads_in_epoch = partition.with_leader_state(state.leader_epoch, |leader| {
            leader.update_assignment(assignment.clone(), now_ms);
            // The image carries the topic's configs too: an AlterConfigs of
            // min.insync.replicas reaches a leader here.
            leader.set_min_insync_replicas(min_insync_replicas);
        });
        if leads_in_epoch.is_none() {
            let config = LeaderConfig {
                replica_lag_time_max_ms: broker.config.replica_lag_time_max_ms,
                min_insync_replicas,
            };
            match partition.become_leader(me, assignment, broker_epoch, config, now_ms) {
                Ok(()) => {
                    broker.metrics.leadership_taken();
                    tracing::info!(
                        partition = %partition.name(),
                        leader_epoch = state.leader_epoch,
                        "leading"
                    )
                }
                Err(error) => {
                    tracing::error!(partition = %partition.name(), error = ?error.message, "could not take the leadership")
                }
            }
        }
        return None;
    }
    if !state.has_leader() {
        partition.become_follower(None);
        return None;
    }
    let same = partition.with_role(|role| {
        matches!(role, Role::Follower { leader, leader_epoch }
            if *leader == state.leader && *leader_epoch == state.leader_epoch)
    });
    if !same {
        partition.become_follower(Some((state.leader, state.leader_epoch)));
        tracing::info!(
            partition = %partition.name(),
            leader = state.leader,
            leader_epoch = state.leader_epoch,
            "following"
        );
    }
    Some(Follow {
        partition: Arc::clone(partition),
        topic_id: topic.id,
        leader: state.leader,
        leader_epoch: state.leader_epoch,
    })
}

/// Every partition here gives up its role. Blocks.
fn resign_all(broker: &Broker) {
    for topic in broker.topics.list() {
        for partition in topic.partitions() {
            partition.become_follower(None);
        }
    }
}

/// Keeps a spare block of producer ids from the controller, until shutdown.
pub(crate) async fn refill_producer_ids(broker: Arc<Broker>) {
    let Some(member) = broker.cluster().cloned() else {
        return;
    };
    let mut shutdown = broker.shutdown_signal();
    loop {
        if broker.producer_ids.wants_block() {
            let fetched = match member.broker_epoch() {
                Some(broker_epoch) => member
                    .call(ControllerRequest::AllocateProducerIds {
                        broker_id: member.broker_id,
                        broker_epoch,
                    })
                    .await
                    .map(|answer| match answer {
                        ControllerResponse::ProducerIds { first, count } => Some((first, count)),
                        _ => None,
                    })
                    .unwrap_or(None),
                None => None,
            };
            match fetched {
                Some((first, count)) => {
                    broker.producer_ids.add_block(first, count);
                    continue;
                }
                None => tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                },
            }
        } else {
            tokio::select! {
                _ = broker.producer_ids.spare_taken.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// Writes the high watermarks of the replicas held here every few seconds, and once more at
/// shutdown, so that a restarted replica does not start from its log start. Only a change is
/// written.
pub(crate) async fn checkpoint_high_watermarks(broker: Arc<Broker>) {
    let mut shutdown = broker.shutdown_signal();
    let mut written = BTreeMap::new();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(HIGH_WATERMARK_CHECKPOINT_INTERVAL) => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        let writer = Arc::clone(&broker);
        let previous = std::mem::take(&mut written);
        let outcome = broker
            .io
            .run(move || {
                let now = writer.topics.high_watermarks();
                if now != previous {
                    if let Err(error) = crate::topics::write_high_watermarks(
                        &**writer.topics.fs(),
                        &writer.config.data_dir,
                        &now,
                    ) {
                        tracing::warn!(%error, "could not checkpoint the high watermarks");
                        return previous;
                    }
                }
                now
            })
            .await;
        match outcome {
            Ok(now) => written = now,
            Err(_) => return,
        }
        if stopping {
            return;
        }
    }
}

/// Proposes the ISR changes leaders want, until shutdown.
pub(crate) async fn propose_isr_changes(broker: Arc<Broker>) {
    let Some(member) = broker.cluster().cloned() else {
        return;
    };
    let mut shutdown = broker.shutdown_signal();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(ISR_CHECK_INTERVAL) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let Some(broker_epoch) = member.broker_epoch() else {
            continue;
        };
        let image = member.image();
        let now_ms = broker.now_ms();
        for topic in broker.topics.list() {
            for partition in topic.partitions() {
                let change = partition.with_role(|role| match role {
                    Role::Leader(state) => state.next_isr_change(now_ms, |id| image.is_usable(id)),
                    _ => None,
                });
                if let Some(change) = change {
                    alter_partition(&broker, &member, topic.id, &partition, change, broker_epoch)
                        .await;
                }
            }
        }
    }
}

/// Sends one ISR change to the controller and settles it with the answer.
async fn alter_partition(
    broker: &Broker,
    member: &ClusterMember,
    topic_id: Uuid,
    partition: &Partition,
    change: IsrChange,
    broker_epoch: i64,
) {
    tracing::info!(
        partition = %partition.name(),
        isr = ?change.new_isr.iter().map(|m| m.id).collect::<Vec<_>>(),
        "proposing an ISR change"
    );
    let request = ControllerRequest::AlterPartition(AlterPartition {
        broker_id: member.broker_id,
        broker_epoch,
        topic_id,
        partition: partition.index,
        leader_epoch: change.leader_epoch,
        partition_epoch: change.partition_epoch,
        new_isr: change
            .new_isr
            .iter()
            .map(|m| (m.id, m.broker_epoch))
            .collect(),
    });
    let outcome = match member.call(request).await {
        Ok(ControllerResponse::Partition(state))
            if state.leader == member.broker_id && state.leader_epoch == change.leader_epoch =>
        {
            IsrChangeOutcome::Committed(Assignment {
                leader_epoch: state.leader_epoch,
                partition_epoch: state.partition_epoch,
                replicas: state.replicas,
                isr: state.isr,
            })
        }
        Ok(ControllerResponse::Partition(state)) => {
            // Committed, and the partition moved on at once: a reassignment completed on
            // this change may have made a joiner the leader (Kafka's NEW_LEADER_ELECTED).
            tracing::info!(partition = %partition.name(), leader = state.leader, leader_epoch = state.leader_epoch, "ISR change committed; the partition moved on");
            IsrChangeOutcome::Unsettled
        }
        Ok(other) => {
            tracing::warn!(partition = %partition.name(), answer = ?other, "unexpected answer to an ISR change");
            IsrChangeOutcome::Unsettled
        }
        Err(error) if alter_partition_not_applied(error.code) => {
            tracing::info!(partition = %partition.name(), error = ?error.message, "ISR change refused");
            IsrChangeOutcome::NotApplied
        }
        // No answer, or the partition is not as this leader knows it (perhaps because an
        // earlier attempt of this change was applied): newer metadata will settle it.
        Err(error) => {
            tracing::info!(partition = %partition.name(), code = ?error.code, error = ?error.message, "ISR change unsettled");
            IsrChangeOutcome::Unsettled
        }
    };
    let now_ms = broker.now_ms();
    partition.with_leader_state(change.leader_epoch, |state| {
        let before = state.isr().len();
        let committed = matches!(outcome, IsrChangeOutcome::Committed(_));
        state.isr_change_done(&change, outcome, now_ms);
        if committed {
            broker.metrics.isr_changed(before, state.isr().len());
        }
    });
}

/// Where broker `id` takes requests, as its registration in `image` says.
pub(crate) fn broker_address(image: &MetadataImage, id: i32) -> Option<String> {
    let listener = image.broker(id)?.registration.listeners.first()?;
    Some(format!("{}:{}", listener.host, listener.port))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use runnel_storage::sim::{ManualClock, SimFileSystem};

    use super::{quorum_name, Incarnation};
    use crate::broker::{shared_quorum, Broker};
    use crate::local_controller::LocalController;

    /// Only a life that closed every log cleanly lets the next one register with its data
    /// intact; the mark is consumed before that registration, so a crash after it counts.
    #[test]
    fn only_a_clean_close_marks_the_next_life_intact() {
        let clock = Arc::new(ManualClock::new(0));
        let disk = SimFileSystem::new(clock.clone());
        let config = LocalController::broker_config("data");
        let open = || {
            Broker::open_with(config.clone(), Arc::new(disk.clone()), clock.clone()).expect("start")
        };
        let intact = |broker: &Broker| {
            Incarnation::next(broker)
                .expect("incarnation")
                .previous_ended_cleanly
        };
        let first = open();
        assert!(
            !intact(&first),
            "a new data directory has no clean shutdown behind it"
        );
        first.close();
        assert!(intact(&open()));
        // That life crashed (no close): the next one is not intact.
        assert!(!intact(&open()));
    }

    #[test]
    fn a_quorum_is_named_by_its_sorted_voters_and_a_lone_node_by_itself() {
        assert_eq!(quorum_name(Some("2@b:1, 1@a:1"), 1), "1@a:1,2@b:1");
        // A one-node cluster's voter address changes at each start; its name does not.
        let lone = shared_quorum(Some("3@127.0.0.1:40001"), 3);
        assert_eq!(lone, None);
        assert_eq!(quorum_name(lone, 3), "node 3 alone");
        assert_eq!(shared_quorum(Some("3@h:1,4@h:2"), 3), Some("3@h:1,4@h:2"));
    }
}
