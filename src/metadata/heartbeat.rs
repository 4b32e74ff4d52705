//! This broker's registration with the active controller and its heartbeats (Kafka's
//! `BrokerLifecycleManager`): register (a new broker epoch each start), then heartbeat every
//! `broker.heartbeat.interval.ms` with the metadata offset applied so far. The controller
//! unfences the broker once that offset reaches its registration, and fences it when the
//! heartbeats stop. A change of the quorum's leader sends one at once. If the controller no
//! longer knows the registration (it fenced and a newer registration replaced it, or it was
//! lost), the broker registers again.
//!
//! Controlled shutdown (`controlled.shutdown.enable`): a stopping broker's heartbeats say it
//! wants to shut down; the controller moves its leaderships and ISR places to other brokers
//! and answers "shut down" once it leads nothing; the heartbeats go every
//! [`SHUTDOWN_HEARTBEAT`] meanwhile ([`ShutdownRequest`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use uuid::Uuid;

use crate::controller::network::BrokerHeartbeat;
use crate::controller::record::{Endpoint, MetadataCommand, MetadataRecord, NodeId};
use crate::controller::Controller;
use crate::replication::log_dir::LogDirHealth;

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

/// How often a broker in controlled shutdown heartbeats, until the controller lets it go.
pub const SHUTDOWN_HEARTBEAT: Duration = Duration::from_millis(50);

/// How long the log dir must take writes again before the controller is told it is back (a
/// nearly full disk takes some writes and refuses others).
pub const LOG_DIR_SETTLE: Duration = Duration::from_secs(5);

/// A controlled shutdown is given up when no controller has answered for this long (no quorum
/// left, as when the last brokers of a cluster stop): the broker stops anyway.
pub const SHUTDOWN_UNANSWERED: Duration = Duration::from_secs(2);

/// A stopping broker's request for a controlled shutdown, carried by its heartbeats.
#[derive(Debug)]
pub struct ShutdownRequest {
    wanted: watch::Sender<bool>,
    /// `Some(true)`: the controller let the broker go; `Some(false)`: no controller answered.
    outcome: watch::Sender<Option<bool>>,
}

impl ShutdownRequest {
    pub fn new() -> Arc<Self> {
        Arc::new(ShutdownRequest {
            wanted: watch::channel(false).0,
            outcome: watch::channel(None).0,
        })
    }

    /// Asks the controller to move this broker's leaderships away; true once it answers that
    /// the broker leads nothing, false if no controller answers or `timeout` passes first.
    pub async fn controlled_shutdown(&self, timeout: Duration) -> bool {
        self.wanted.send_replace(true);
        let mut outcome = self.outcome.subscribe();
        let settled = tokio::time::timeout(timeout, outcome.wait_for(Option::is_some))
            .await
            .map(|r| r.map(|o| *o == Some(true)));
        matches!(settled, Ok(Ok(true)))
    }

    fn settle(&self, moved: bool) {
        self.outcome.send_if_modified(|o| {
            let first = o.is_none();
            if first {
                *o = Some(moved);
            }
            first
        });
    }

    fn pending(&self) -> bool {
        *self.wanted.borrow() && self.outcome.borrow().is_none()
    }
}

/// Heartbeats until `shutdown`; the first one goes at once. Each says whether the log dir
/// (`health`) is offline, a change at once; back online, only after [`LOG_DIR_SETTLE`].
pub async fn run(
    controller: Arc<Controller>,
    registration: Registration,
    mut epoch: i64,
    every: Duration,
    request: Arc<ShutdownRequest>,
    health: Arc<LogDirHealth>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut log_dir = health.subscribe();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut fenced_seen = true; // a registration starts fenced
    let mut wanted = request.wanted.subscribe();
    let mut last_answer = tokio::time::Instant::now();
    loop {
        // Also at once when the quorum's leader changes: a new leader fences brokers it does
        // not hear from (see `QuorumController::check`); and when a shutdown is asked for.
        let leader = controller.leader();
        let shutting_down = request.pending();
        tokio::select! {
            _ = tick.tick() => {}
            () = controller.leader_changes_from(leader) => {}
            _ = wanted.changed() => last_answer = tokio::time::Instant::now(),
            _ = log_dir.changed() => {}
            () = tokio::time::sleep(SHUTDOWN_HEARTBEAT), if shutting_down => {}
            _ = shutdown.changed() => return,
        }
        let hb = BrokerHeartbeat {
            id: registration.id,
            epoch,
            applied_offset: controller.image().offset,
            want_shut_down: *wanted.borrow(),
            log_dir_offline: health.unsettled(LOG_DIR_SETTLE),
        };
        // A heartbeat older than the interval is stale: the next one goes instead.
        match controller.heartbeat(hb, every).await {
            Ok(reply) if reply.unknown_epoch && *wanted.borrow() => request.settle(true),
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
                last_answer = tokio::time::Instant::now();
                if reply.should_shut_down && request.pending() {
                    tracing::info!(
                        broker_epoch = epoch,
                        "controlled shutdown: this broker leads nothing now"
                    );
                    request.settle(true);
                }
                if reply.fenced != fenced_seen {
                    fenced_seen = reply.fenced;
                    if reply.fenced {
                        tracing::info!(broker_epoch = epoch, "fenced by the controller");
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat not delivered");
                if request.pending() && last_answer.elapsed() >= SHUTDOWN_UNANSWERED {
                    tracing::warn!(error = %e, "controlled shutdown: no controller answers; stopping without it");
                    request.settle(false);
                }
            }
        }
    }
}
