//! This broker's registration with the active controller and its heartbeats (Kafka's
//! `BrokerLifecycleManager`): register (a new broker epoch each start), then heartbeat every
//! `broker.heartbeat.interval.ms` with the metadata offset applied so far. The controller
//! unfences the broker once that offset reaches its registration, and fences it when the
//! heartbeats stop. A change of the quorum's leader sends one at once. If the controller no longer knows the registration (it fenced and a newer
//! registration replaced it, or it was lost), the broker registers again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::controller::network::BrokerHeartbeat;
use crate::controller::record::{Endpoint, MetadataCommand, MetadataRecord, NodeId};
use crate::controller::Controller;

/// What this broker registers.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: NodeId,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
}

impl Registration {
    /// Registers (fenced) and returns the new broker epoch.
    pub async fn register(&self, controller: &Controller) -> anyhow::Result<i64> {
        let registered = controller
            .write(MetadataCommand::one(MetadataRecord::RegisterBroker {
                id: self.id,
                incarnation_id: Uuid::new_v4(),
                endpoints: self.endpoints.clone(),
                rack: self.rack.clone(),
            }))
            .await?;
        let epoch = i64::try_from(registered.offset).unwrap_or(i64::MAX);
        tracing::info!(
            node_id = self.id,
            broker_epoch = epoch,
            "registered with the controller"
        );
        Ok(epoch)
    }
}

/// Heartbeats until `shutdown`; the first one goes at once.
pub async fn run(
    controller: Arc<Controller>,
    registration: Registration,
    mut epoch: i64,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fenced_seen = true; // a registration starts fenced
    loop {
        // Also at once when the quorum's leader changes: a new leader fences brokers it does
        // not hear from (see `QuorumController::check`).
        let leader = controller.leader();
        tokio::select! {
            _ = tick.tick() => {}
            () = controller.leader_changes_from(leader) => {}
            _ = shutdown.changed() => return,
        }
        let hb = BrokerHeartbeat {
            id: registration.id,
            epoch,
            applied_offset: controller.image().offset,
        };
        // A heartbeat older than the interval is stale: the next one goes instead.
        match controller.heartbeat(hb, every).await {
            Ok(reply) if reply.unknown_epoch => {
                tracing::warn!(
                    broker_epoch = epoch,
                    "the controller no longer knows this registration; registering again"
                );
                match registration.register(&controller).await {
                    Ok(e) => epoch = e,
                    Err(e) => tracing::warn!(error = %e, "registering again failed"),
                }
            }
            Ok(reply) => {
                if reply.fenced != fenced_seen {
                    fenced_seen = reply.fenced;
                    if reply.fenced {
                        tracing::info!(broker_epoch = epoch, "fenced by the controller");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "heartbeat not delivered"),
        }
    }
}
