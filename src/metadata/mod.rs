//! The broker's view of the cluster metadata: the latest [`MetadataImage`] the controller
//! quorum applied, the way to change it (propose a command and wait until it is applied), and
//! producer-id blocks. Handlers read images; they never write metadata themselves.
//!
//! - `heartbeat`: this broker's registration and its heartbeats to the active controller.
//! - `listener`: applies each new image to this broker's replicas (create, delete, reconfigure).
//! - `startup`: forming or joining the quorum, the cluster id and `meta.properties`, and the
//!   one-time import of a pre-quorum `__cluster_metadata/metadata.json`.

pub mod heartbeat;
pub mod listener;
pub mod startup;

use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::controller::image::{MetadataImage, TopicImage};
use crate::controller::record::{ApplyResult, MetadataCommand, MetadataRecord, NodeId, Refusal};
use crate::controller::{Controller, ControllerError};
use crate::error::BrokerError;

/// Producer ids are taken from the controller in blocks of this many (Kafka's block size).
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// A new block is asked for when this few ids are left.
const PRODUCER_ID_PREFETCH_AT: i64 = 100;

#[derive(Debug, Default)]
struct ProducerIdBlocks {
    next: i64,
    end: i64,
    prefetched: Option<i64>,
    fetching: bool,
}

/// Reads and changes of the cluster metadata, for one broker.
#[derive(Debug)]
pub struct MetadataClient {
    controller: Arc<Controller>,
    producer_ids: Mutex<ProducerIdBlocks>,
}

/// What a refused command means to a client.
pub fn refusal_error(refused: Refusal) -> BrokerError {
    match refused {
        Refusal::TopicAlreadyExists(name) => BrokerError::TopicAlreadyExists(format!("Topic '{name}' already exists.")),
        Refusal::UnknownTopicId(_) => BrokerError::UnknownTopicOrPartition,
        Refusal::UnknownPartition(..) => BrokerError::UnknownTopicOrPartition,
        other => BrokerError::InvalidRequest(other.to_string()),
    }
}

fn controller_error(e: ControllerError) -> BrokerError {
    match e {
        ControllerError::NotController(_) => BrokerError::NotController,
        ControllerError::Unavailable(why) => BrokerError::ControllerUnavailable(why),
    }
}

impl MetadataClient {
    pub fn new(controller: Arc<Controller>) -> Arc<Self> {
        Arc::new(MetadataClient {
            controller,
            producer_ids: Mutex::new(ProducerIdBlocks::default()),
        })
    }

    pub fn controller(&self) -> &Arc<Controller> {
        &self.controller
    }

    pub fn node_id(&self) -> NodeId {
        self.controller.node_id()
    }

    /// The latest applied image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.controller.image()
    }

    pub fn cluster_id(&self) -> String {
        self.image().cluster_id.clone().unwrap_or_default()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicImage>> {
        self.image().topic(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<Arc<TopicImage>> {
        self.image().topic_by_id(id).cloned()
    }

    pub fn topic_name_by_id(&self, id: Uuid) -> Option<String> {
        self.image().topic_by_id(id).map(|t| t.name.clone())
    }

    /// The live brokers with their endpoint on `listener`, as clients get them
    /// (Metadata, DescribeCluster): (id, host, port, rack).
    pub fn live_endpoints(image: &MetadataImage, listener: &str) -> Vec<(NodeId, String, i32, Option<String>)> {
        image
            .live_brokers()
            .filter_map(|b| {
                let e = b.endpoint(listener)?;
                Some((b.id, e.host.clone(), e.port, b.rack.clone()))
            })
            .collect()
    }

    /// The controller id clients are told. Clients cannot reach KRaft controllers: Kafka names
    /// a random live broker (KIP-590), which forwards what a client sends the "controller".
    /// This broker is named when it is live: the client has just reached it. Not the quorum's
    /// leader, which a kill would take away from every client that cached it (an admin client
    /// waits for its cached controller to come back until its request times out).
    pub fn controller_id_for_clients(&self, image: &MetadataImage) -> NodeId {
        let me = self.node_id();
        if image.is_live(me) {
            return me;
        }
        image
            .brokers
            .keys()
            .copied()
            .find(|id| image.is_live(*id))
            .unwrap_or(me)
    }

    /// Proposes `command` and returns once it is applied to this broker's image; a refusal is
    /// the error Kafka gives for it.
    pub async fn write(&self, command: MetadataCommand) -> Result<ApplyResult, BrokerError> {
        let result = self.controller.write(command).await.map_err(controller_error)?;
        match result.refused {
            Some(refused) => Err(refusal_error(refused)),
            None => Ok(result),
        }
    }

    /// A producer id unique in the cluster, from this broker's current block. A new block is
    /// asked for before this one runs out; if none has arrived yet the caller gets a
    /// retriable error (COORDINATOR_LOAD_IN_PROGRESS, as Kafka's brokers answer then).
    pub fn allocate_producer_id(self: &Arc<Self>) -> Result<i64, BrokerError> {
        let mut blocks = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        if blocks.next >= blocks.end {
            if let Some(start) = blocks.prefetched.take() {
                blocks.next = start;
                blocks.end = start + PRODUCER_ID_BLOCK;
            }
        }
        let id = (blocks.next < blocks.end).then(|| {
            blocks.next += 1;
            blocks.next - 1
        });
        if blocks.end - blocks.next < PRODUCER_ID_PREFETCH_AT && blocks.prefetched.is_none() && !blocks.fetching {
            blocks.fetching = true;
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let fetched = me.fetch_producer_id_block().await;
                let mut blocks = me.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
                blocks.fetching = false;
                match fetched {
                    Ok(start) => blocks.prefetched = Some(start),
                    Err(e) => tracing::warn!(error = %e, "could not get a block of producer ids"),
                }
            });
        }
        id.ok_or(BrokerError::ProducerIdsUnavailable)
    }

    /// Asks the controller for a block; returns its first id.
    async fn fetch_producer_id_block(&self) -> Result<i64, BrokerError> {
        let result = self
            .write(MetadataCommand::one(MetadataRecord::AllocateProducerIds {
                broker: self.node_id(),
                count: PRODUCER_ID_BLOCK,
            }))
            .await?;
        result
            .producer_id_start
            .ok_or_else(|| BrokerError::InvalidRequest("no producer id block in the answer".into()))
    }

    /// Takes a first block of producer ids (at startup, so the first InitProducerId is served).
    pub async fn prime_producer_ids(&self) -> Result<(), BrokerError> {
        let start = self.fetch_producer_id_block().await?;
        let mut blocks = self.producer_ids.lock().unwrap_or_else(|p| p.into_inner());
        blocks.next = start;
        blocks.end = start + PRODUCER_ID_BLOCK;
        Ok(())
    }
}
