//! The accept loops (one per listener), in the manner of mini-redis: a permit is taken before `accept` (bounding
//! connections by `max.connections`: at the limit the broker stops accepting until one closes,
//! as Kafka does), failed accepts back off, one connection's failure never escapes its task,
//! and shutdown stops accepting then waits for connections to drain.
//!
//! `max.connections.per.ip` (with its overrides) is checked once a connection is accepted: one
//! over its address's limit is closed at once, as Kafka's acceptor does.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::broker::Broker;
use crate::server::connection::{self, ConnectionInfo};
use crate::server::memory_pool::MemoryPool;
use crate::server::tls;

/// One bound listener: its socket, its name (`listeners`), and its TLS acceptor if it is an
/// SSL listener.
pub struct Bound {
    pub listener: TcpListener,
    pub name: Arc<str>,
    pub tls: Option<TlsAcceptor>,
    /// SASL listeners: their settings (connections authenticate first).
    pub sasl: Option<Arc<crate::config::SaslSettings>>,
}

/// What every listener's accept loop shares: `max.connections` and `max.connections.per.ip`
/// count across listeners, and one request memory pool.
#[derive(Clone)]
struct Shared {
    broker: Arc<Broker>,
    permits: Arc<Semaphore>,
    pool: MemoryPool,
    per_ip: PerIpLimits,
}

/// Serves connections on every listener until `shutdown` turns true, then waits (bounded) for
/// open connections to finish their in-flight requests.
pub async fn serve(listeners: Vec<Bound>, broker: Arc<Broker>, shutdown: watch::Receiver<bool>) {
    let max = broker.config.max_connections;
    crate::metrics::connection_rejections_at_zero();
    let shared = Shared {
        permits: Arc::new(Semaphore::new(max)),
        pool: MemoryPool::new(broker.config.queued_max_request_bytes),
        per_ip: PerIpLimits::new(
            broker.config.max_connections_per_ip,
            broker.config.max_connections_per_ip_overrides.clone(),
        ),
        broker,
    };
    futures::future::join_all(
        listeners
            .into_iter()
            .map(|bound| accept_loop(bound, shared.clone(), shutdown.clone())),
    )
    .await;
    // Drain: every connection returns its permit when done.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(Duration::from_secs(30), shared.permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s; shutting down anyway");
    }
}

async fn accept_loop(bound: Bound, shared: Shared, mut shutdown: watch::Receiver<bool>) {
    let Bound {
        listener,
        name,
        tls,
        sasl,
    } = bound;
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = shared.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(5);
                let Some(slot) = shared.per_ip.admit(peer.ip()) else {
                    tracing::info!(%peer, "closing connection: over max.connections.per.ip");
                    crate::metrics::connection_rejected("per_ip");
                    drop(socket);
                    continue;
                };
                let broker = shared.broker.clone();
                let shutdown = shutdown.clone();
                let pool = shared.pool.clone();
                let info = ConnectionInfo {
                    peer,
                    listener: Arc::clone(&name),
                    sasl: sasl.clone(),
                };
                let tls = tls.clone();
                crate::metrics::connection_opened();
                tokio::spawn(async move {
                    let result = match tls {
                        None => connection::run(socket, info, broker, pool, shutdown).await,
                        Some(acceptor) => {
                            let _ = socket.set_nodelay(true);
                            match tls::accept(&acceptor, socket).await {
                                Ok(stream) => connection::run_tls(stream, info, broker, pool, shutdown).await,
                                Err(e) => {
                                    tracing::debug!(%peer, listener = %info.listener, error = %e, "TLS handshake failed");
                                    crate::metrics::connection_rejected("tls_handshake");
                                    Ok(())
                                }
                            }
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                    crate::metrics::connection_closed();
                    drop(slot);
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: wait and retry rather than spin or give up.
                tracing::warn!(listener = %name, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drop(listener);
}

/// Open connections per address against `max.connections.per.ip` and its overrides.
#[derive(Clone)]
struct PerIpLimits {
    inner: Arc<PerIpInner>,
}

struct PerIpInner {
    default: usize,
    overrides: BTreeMap<IpAddr, usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection's place in its address's count; given back on drop.
struct IpSlot {
    limits: PerIpLimits,
    ip: IpAddr,
}

impl PerIpLimits {
    fn new(default: usize, overrides: BTreeMap<IpAddr, usize>) -> Self {
        PerIpLimits {
            inner: Arc::new(PerIpInner {
                default,
                overrides,
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// A slot for one more connection from `ip`, or `None` if it is at its limit.
    fn admit(&self, ip: IpAddr) -> Option<IpSlot> {
        let limit = self.inner.overrides.get(&ip).copied().unwrap_or(self.inner.default);
        let mut open = self.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limits.inner.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limits_count_open_connections_per_address() {
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let c: IpAddr = [127, 0, 0, 3].into();
        let limits = PerIpLimits::new(2, BTreeMap::from([(b, 0), (c, 3)]));
        let first = limits.admit(a);
        let second = limits.admit(a);
        assert!(first.is_some() && second.is_some());
        assert!(limits.admit(a).is_none());
        drop(first);
        assert!(limits.admit(a).is_some());
        assert!(limits.admit(b).is_none());
        let held: Vec<_> = (0..3).filter_map(|_| limits.admit(c)).collect();
        assert_eq!(held.len(), 3);
        assert!(limits.admit(c).is_none());
        drop(held);
        drop(second);
        assert!(limits.inner.open.lock().map(|m| m.is_empty()).unwrap_or(false));
    }
}
