//! The accept loop, in the manner of mini-redis: a permit is taken before `accept` (bounding
//! connections by `max.connections`), failed accepts back off, one connection's failure never
//! escapes its task, and shutdown stops accepting then waits for connections to drain.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::broker::Broker;
use crate::server::connection;

/// Serves connections until `shutdown` turns true, then waits (bounded) for open connections
/// to finish their in-flight requests.
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let max = broker.config.max_connections;
    let permits = Arc::new(Semaphore::new(max));
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(5);
                let broker = broker.clone();
                let shutdown = shutdown.clone();
                crate::metrics::connection_opened();
                tokio::spawn(async move {
                    if let Err(e) = connection::run(socket, peer, broker, shutdown).await {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                    crate::metrics::connection_closed();
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: wait and retry rather than spin or give up.
                tracing::warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
    // Drain: every connection returns its permit when done.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; shutting down anyway");
    }
}
