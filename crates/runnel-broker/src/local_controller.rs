//! A one-node cluster's metadata for in-process tests, without a quorum or a network: the
//! controller's own state machine (`runnel_controller::Controller`) decides registrations,
//! unfencing and topics, and the broker applies the resulting image as it does one from the
//! quorum (`cluster::apply_image`). Its partitions then lead with the replication state
//! machine, as a `runnel server` on its own does, while a test keeps its simulated disk and
//! clock deterministic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use runnel_controller::records::Listener;
use runnel_controller::{
    Controller, ControllerConfig, Heartbeat, MetadataImage, MetadataRecord, NewTopic, Registration,
};
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster;
use crate::config::BrokerConfig;

/// The node id of the cluster's one broker.
const NODE_ID: i32 = 1;

/// The controller's side: the metadata image, built record by record.
pub(crate) struct LocalController {
    image: MetadataImage,
    config: ControllerConfig,
    incarnations: u128,
}

impl LocalController {
    pub(crate) fn new() -> LocalController {
        LocalController {
            image: MetadataImage::default(),
            config: ControllerConfig {
                default_partitions: 1,
                default_replication_factor: 1,
                min_insync_replicas: 1,
                producer_id_block_size: 1000,
            },
            incarnations: 0,
        }
    }

    fn controller(&self) -> Controller<'_> {
        Controller {
            image: &self.image,
            config: &self.config,
        }
    }

    fn commit(&mut self, records: Vec<MetadataRecord>) {
        for record in records {
            let offset = self.image.offset() + 1;
            self.image
                .apply(offset, &record)
                .unwrap_or_else(|error| panic!("the controller decided {record:?}: {error}"));
        }
    }

    /// Registers broker `id` as a new incarnation (a start or a restart) and unfences it;
    /// returns its broker epoch. Its data is intact: it reports only what it fsynced, or
    /// (with `replica.fsync` off) the test stands for Kafka, which cannot tell.
    pub(crate) fn register(&mut self, id: i32) -> i64 {
        self.incarnations += 1;
        let previous = self
            .image
            .broker(id)
            .map(|registered| registered.registration.incarnation_id);
        let registration = Registration {
            id,
            incarnation_id: Uuid::from_u128(self.incarnations),
            previous_incarnation_id: previous,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
            }],
            rack: None,
            data_intact: true,
        };
        let records = self
            .controller()
            .register_broker(&registration, false)
            .expect("registration");
        self.commit(records);
        let broker_epoch = self
            .image
            .broker(id)
            .map(|registered| registered.registration.epoch)
            .expect("registered");
        let heartbeat = Heartbeat {
            id,
            broker_epoch,
            metadata_offset: self.image.offset(),
            want_fence: false,
            want_shutdown: false,
            offline_replicas: Vec::new(),
        };
        let (records, _) = self.controller().heartbeat(&heartbeat).expect("heartbeat");
        self.commit(records);
        broker_epoch
    }

    /// A broker config for node 1 of this cluster, with its data in `data_dir`.
    pub(crate) fn broker_config(data_dir: impl Into<PathBuf>) -> BrokerConfig {
        BrokerConfig {
            data_dir: data_dir.into(),
            node_id: NODE_ID,
            // A quorum of this node alone, never called: the test applies the metadata itself.
            controller_quorum: Some(format!("{NODE_ID}@127.0.0.1:9")),
            offsets_topic_num_partitions: 1,
            ..BrokerConfig::default()
        }
    }

    pub(crate) fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) {
        let topic = NewTopic {
            name: name.to_owned(),
            partitions,
            replication_factor: 1,
            assignments: Vec::new(),
            configs: configs.into_iter().collect(),
        };
        let id = Uuid::from_u128((u128::from(self.image.offset()) + 1) << 64);
        let records = self
            .controller()
            .create_topic(&topic, id, 0)
            .expect("create topic");
        self.commit(records);
    }

    /// Registers `broker` as a new incarnation and has it take the roles the image gives it.
    pub(crate) fn start(&mut self, broker: &Arc<Broker>) {
        let broker_epoch = self.register(broker.node_id());
        self.apply(broker, broker_epoch);
    }

    /// `broker` takes the roles the image gives it, and its coordinators follow.
    fn apply(&self, broker: &Arc<Broker>, broker_epoch: i64) {
        let follow = cluster::apply_image(broker, &self.image, broker_epoch);
        assert!(follow.is_empty(), "a one-node cluster follows nobody");
        broker.groups.follow_leadership(broker);
        broker.transactions.follow_leadership(broker);
    }
}
