//! [`BrokerLifecycle`]: a broker's standing with the controller quorum. It registers the
//! broker (a new broker epoch per process), heartbeats, follows the metadata image, and on
//! shutdown asks the controller to move the broker's leaderships away first (controlled
//! shutdown), as KRaft brokers do.
//!
//! The broker takes partition roles only while [`BrokerStatus::Active`] or fenced-but-
//! registered in its current epoch: never from an image it learnt before this process's
//! registration was accepted (the simulation shows what a restarted broker reusing its
//! previous life's leader epoch does).

use std::sync::Arc;
use std::time::Duration;

use runnel_controller::records::Listener;
use runnel_controller::{BrokerId, Heartbeat, MetadataImage, Registration};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::client::ControllerClient;
use crate::wire::{ControllerRequest, ControllerResponse};

/// How long one request to the quorum may take, retries included.
const CALL_WITHIN: Duration = Duration::from_secs(10);
/// How long an image fetch waits for the image to move.
const IMAGE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct LifecycleConfig {
    pub broker_id: BrokerId,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
    /// This process's incarnation, and the one its data directory last registered as (see
    /// [`Registration::previous_incarnation_id`]).
    pub incarnation_id: Uuid,
    pub previous_incarnation_id: Option<Uuid>,
    /// See [`Registration::data_intact`].
    pub data_intact: bool,
    /// Controllers to reach (any of them).
    pub controllers: Vec<String>,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// Named in every heartbeat.
    pub offline_replicas: OfflineReplicas,
}

/// The broker's replicas whose disk failed, as (topic id, partition), asked for at each
/// heartbeat.
#[derive(Clone)]
pub struct OfflineReplicas(Arc<dyn Fn() -> Vec<(Uuid, i32)> + Send + Sync>);

impl OfflineReplicas {
    pub fn new(list: impl Fn() -> Vec<(Uuid, i32)> + Send + Sync + 'static) -> OfflineReplicas {
        OfflineReplicas(Arc::new(list))
    }

    /// For a broker that holds no replicas.
    pub fn none() -> OfflineReplicas {
        OfflineReplicas::new(Vec::new)
    }
}

impl std::fmt::Debug for OfflineReplicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OfflineReplicas")
    }
}

/// Where the broker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStatus {
    /// Not registered yet in this process (or asked to register again).
    Registering,
    /// Registered in `epoch`, fenced until its image catches up with its registration.
    Fenced { epoch: i64 },
    /// Registered and unfenced: it may lead and be in sync.
    Active { epoch: i64 },
    /// A controlled shutdown is under way.
    ShuttingDown { epoch: i64 },
    /// Leads nothing any more, or the shutdown gave up waiting: the process may stop.
    Stopped,
}

impl BrokerStatus {
    /// The epoch of the registration, once there is one.
    pub fn epoch(self) -> Option<i64> {
        match self {
            BrokerStatus::Fenced { epoch }
            | BrokerStatus::Active { epoch }
            | BrokerStatus::ShuttingDown { epoch } => Some(epoch),
            BrokerStatus::Registering | BrokerStatus::Stopped => None,
        }
    }
}

#[derive(Debug)]
pub struct BrokerLifecycle {
    status: watch::Receiver<BrokerStatus>,
    image: watch::Receiver<Arc<MetadataImage>>,
    shutdown: Option<oneshot::Sender<()>>,
    heartbeats: JoinHandle<()>,
    images: JoinHandle<()>,
}

impl BrokerLifecycle {
    /// Starts registering and heartbeating, and following the image.
    pub fn start(config: LifecycleConfig) -> BrokerLifecycle {
        let (status_tx, status) = watch::channel(BrokerStatus::Registering);
        let (image_tx, image) = watch::channel(Arc::new(MetadataImage::default()));
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let images = tokio::spawn(follow_images(config.controllers.clone(), image_tx));
        let heartbeats = tokio::spawn(heartbeat_loop(
            config,
            status_tx,
            image.clone(),
            shutdown_rx,
        ));
        BrokerLifecycle {
            status,
            image,
            shutdown: Some(shutdown_tx),
            heartbeats,
            images,
        }
    }

    pub fn status(&self) -> watch::Receiver<BrokerStatus> {
        self.status.clone()
    }

    /// The latest metadata image this broker has.
    pub fn image(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.image.clone()
    }

    /// A controlled shutdown: asks the controller to move this broker's leaderships and ISR
    /// memberships away and waits, up to `within`, until it leads nothing.
    pub async fn shut_down(mut self, within: Duration) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let mut status = self.status.clone();
        let stopped = status.wait_for(|status| *status == BrokerStatus::Stopped);
        if tokio::time::timeout(within, stopped).await.is_err() {
            tracing::warn!(
                ?within,
                "controlled shutdown did not finish in time; stopping anyway"
            );
        }
        self.heartbeats.abort();
        self.images.abort();
    }
}

impl Drop for BrokerLifecycle {
    fn drop(&mut self) {
        self.heartbeats.abort();
        self.images.abort();
    }
}

async fn follow_images(controllers: Vec<String>, image: watch::Sender<Arc<MetadataImage>>) {
    let mut client = ControllerClient::new(&controllers);
    loop {
        let after = image.borrow().offset();
        match client.fetch_image(after, IMAGE_WAIT).await {
            Ok(ControllerResponse::Image(Some(newer))) if newer.offset() > after => {
                image.send_replace(Arc::new(*newer));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the metadata image");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn heartbeat_loop(
    config: LifecycleConfig,
    status: watch::Sender<BrokerStatus>,
    image: watch::Receiver<Arc<MetadataImage>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut client = ControllerClient::new(&config.controllers);
    let mut shutting_down = false;
    loop {
        let current = *status.borrow();
        let next = match current.epoch() {
            None if shutting_down => BrokerStatus::Stopped,
            None => register(&mut client, &config).await,
            Some(epoch) => {
                let heartbeat = Heartbeat {
                    id: config.broker_id,
                    broker_epoch: epoch,
                    metadata_offset: image.borrow().offset(),
                    want_fence: false,
                    want_shutdown: shutting_down,
                    offline_replicas: (config.offline_replicas.0)(),
                };
                beat(&mut client, heartbeat, current).await
            }
        };
        if next != current {
            tracing::info!(broker = config.broker_id, status = ?next, "broker status");
            status.send_replace(next);
        }
        if next == BrokerStatus::Stopped {
            return;
        }
        let pause = if matches!(
            next,
            BrokerStatus::Registering | BrokerStatus::Fenced { .. }
        ) {
            // Catching up: heartbeat often so the unfencing comes soon.
            config.heartbeat_interval.min(Duration::from_millis(100))
        } else {
            config.heartbeat_interval
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = &mut shutdown, if !shutting_down => shutting_down = true,
        }
    }
}

async fn register(client: &mut ControllerClient, config: &LifecycleConfig) -> BrokerStatus {
    let registration = Registration {
        id: config.broker_id,
        incarnation_id: config.incarnation_id,
        previous_incarnation_id: config.previous_incarnation_id,
        listeners: config.listeners.clone(),
        rack: config.rack.clone(),
        data_intact: config.data_intact,
    };
    match client
        .call(ControllerRequest::Register(registration), CALL_WITHIN)
        .await
    {
        Ok(ControllerResponse::Registered { broker_epoch }) => BrokerStatus::Fenced {
            epoch: broker_epoch,
        },
        Ok(ControllerResponse::Refused { code, message }) => {
            // DUPLICATE_BROKER_REGISTRATION until the previous process's session expires.
            tracing::info!(code, %message, "registration refused; retrying");
            BrokerStatus::Registering
        }
        Ok(other) => {
            tracing::warn!(?other, "unexpected answer to a registration");
            BrokerStatus::Registering
        }
        Err(error) => {
            tracing::warn!(%error, "cannot register with the controller quorum");
            BrokerStatus::Registering
        }
    }
}

async fn beat(
    client: &mut ControllerClient,
    heartbeat: Heartbeat,
    current: BrokerStatus,
) -> BrokerStatus {
    let epoch = heartbeat.broker_epoch;
    let want_shutdown = heartbeat.want_shutdown;
    match client
        .call(ControllerRequest::Heartbeat(heartbeat), CALL_WITHIN)
        .await
    {
        Ok(ControllerResponse::Heartbeat(answer)) => {
            if want_shutdown {
                if answer.should_shut_down {
                    BrokerStatus::Stopped
                } else {
                    BrokerStatus::ShuttingDown { epoch }
                }
            } else if answer.fenced {
                BrokerStatus::Fenced { epoch }
            } else {
                BrokerStatus::Active { epoch }
            }
        }
        Ok(ControllerResponse::Refused { code, message }) => {
            // STALE_BROKER_EPOCH: fenced for good in that epoch; a new registration starts over.
            tracing::warn!(code, %message, "heartbeat refused; registering again");
            if want_shutdown {
                BrokerStatus::Stopped
            } else {
                BrokerStatus::Registering
            }
        }
        Ok(other) => {
            tracing::warn!(?other, "unexpected answer to a heartbeat");
            current
        }
        Err(error) => {
            tracing::warn!(%error, "heartbeat failed");
            current
        }
    }
}
