//! The broker-wide budget for request bytes being read: Kafka's `queued.max.request.bytes` and
//! its memory pool, with a bounded default (Kafka's is unbounded).
//!
//! A connection reserves a frame's declared size here when its length prefix arrives, before it
//! reads the body; the reservation travels with the frame and is given back when the request
//! has been handled. When the pool is spent, connections that need more stop being read (their
//! bytes wait in the kernel's socket buffer, so TCP pushes back on the sender) until memory
//! frees, as Kafka mutes channels when its pool is depleted.
//!
//! Reserving the whole frame up front (rather than byte by byte as the body arrives) means a
//! frame that got its reservation can always be read to the end: connections that each hold
//! half a frame can never deadlock the pool between them. The memory itself is still only
//! allocated as bytes arrive (see `connection::read_body`), so a bare length prefix costs a
//! reservation, not RSS.
//!
//! A slice of the pool (an eighth, at most 16 MiB) is kept for small frames (64 KiB or less:
//! Metadata, heartbeats, offset commits, fetches, small produces), so clients holding huge
//! frames cannot starve everyone else. A frame larger than the rest of the pool waits until
//! the whole shared part is free and then takes all of it: it is admitted alone rather than
//! never.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Frames this size or smaller may use the reserve.
pub const SMALL_FRAME_BYTES: usize = 64 * 1024;
/// The most the reserve for small frames holds.
const MAX_RESERVE_BYTES: usize = 16 << 20;

/// The pool; cheap to clone (one per broker, shared by every connection).
#[derive(Clone, Debug)]
pub struct MemoryPool {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    /// Permits any frame may take.
    shared: Arc<Semaphore>,
    shared_capacity: usize,
    /// Permits only small frames may take.
    reserve: Arc<Semaphore>,
}

/// Bytes reserved for one frame; released on drop.
#[derive(Debug)]
pub struct Reservation {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(permit) = &self._permit {
            crate::metrics::request_memory_released(permit.num_permits());
        }
    }
}

impl MemoryPool {
    /// A pool of `capacity` bytes; `None` is Kafka's unbounded `-1`.
    pub fn new(capacity: Option<usize>) -> Self {
        let inner = capacity.map(|capacity| {
            let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
            let reserve = (capacity / 8).min(MAX_RESERVE_BYTES);
            let shared_capacity = capacity - reserve;
            Arc::new(Inner {
                shared: Arc::new(Semaphore::new(shared_capacity)),
                shared_capacity,
                reserve: Arc::new(Semaphore::new(reserve)),
            })
        });
        MemoryPool { inner }
    }

    /// Waits until `len` bytes can be reserved. `None` only if the pool was closed.
    pub async fn reserve(&self, len: usize) -> Option<Reservation> {
        let Some(inner) = &self.inner else {
            return Some(Reservation { _permit: None });
        };
        let small = len <= SMALL_FRAME_BYTES;
        // A frame never asks for more than the shared part holds (see the module comment).
        let want = u32::try_from(len.min(inner.shared_capacity)).unwrap_or(u32::MAX);
        let permit = if small {
            // Whichever frees first; an abandoned acquire gives back what it had taken.
            tokio::select! {
                biased;
                p = inner.shared.clone().acquire_many_owned(want) => p,
                p = inner.reserve.clone().acquire_many_owned(want) => p,
            }
        } else {
            inner.shared.clone().acquire_many_owned(want).await
        };
        let permit = permit.ok()?;
        crate::metrics::request_memory_reserved(permit.num_permits());
        Some(Reservation { _permit: Some(permit) })
    }

    /// Bytes not reserved now (`None` when unbounded).
    pub fn available(&self) -> Option<usize> {
        self.inner
            .as_ref()
            .map(|i| i.shared.available_permits() + i.reserve.available_permits())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn blocked(pool: &MemoryPool, len: usize) -> bool {
        tokio::time::timeout(Duration::from_millis(50), pool.reserve(len))
            .await
            .is_err()
    }

    #[tokio::test]
    async fn big_frames_wait_and_small_ones_use_the_reserve() {
        let pool = MemoryPool::new(Some(8 << 20)); // 1 MiB reserve, 7 MiB shared
        assert_eq!(pool.available(), Some(8 << 20));
        let a = pool.reserve(4 << 20).await;
        let b = pool.reserve(3 << 20).await;
        assert!(a.is_some() && b.is_some());
        assert_eq!(pool.available(), Some(1 << 20));
        // The shared part is spent: another big frame waits...
        assert!(blocked(&pool, 1 << 20).await);
        // ... but small frames are still admitted, up to the reserve.
        let mut small = Vec::new();
        for _ in 0..16 {
            small.push(pool.reserve(SMALL_FRAME_BYTES).await);
        }
        assert!(blocked(&pool, 1).await);
        drop(small);
        assert_eq!(pool.available(), Some(1 << 20));
        // Memory freed: the waiting big frame proceeds.
        drop(a);
        assert!(!blocked(&pool, 2 << 20).await);
        assert_eq!(pool.available(), Some(5 << 20));
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_pool_is_admitted_alone() {
        let pool = MemoryPool::new(Some(1 << 20));
        let held = pool.reserve(100).await;
        assert!(blocked(&pool, 10 << 20).await);
        drop(held);
        let huge = pool.reserve(10 << 20).await;
        assert!(huge.is_some());
        assert!(blocked(&pool, SMALL_FRAME_BYTES + 1).await);
        // The reserve still serves small frames beside it.
        assert!(!blocked(&pool, 100).await);
    }

    #[tokio::test]
    async fn unbounded_never_waits() {
        let pool = MemoryPool::new(None);
        assert_eq!(pool.available(), None);
        let _a = pool.reserve(usize::MAX).await;
        assert!(!blocked(&pool, usize::MAX).await);
    }
}
