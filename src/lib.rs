//! Sluice: a Kafka wire-protocol-compatible message broker.
//!
//! Module map (requests flow top to bottom):
//!
//! - [`server`]: the accept loops, one per listener, TLS (rustls) for SSL listeners
//!   (connection permits, per-IP limits, backoff, drain on shutdown), SASL authentication
//!   before any other request on SASL listeners, the per-connection framing (size cap before
//!   allocation, memory allocated as bytes arrive, in-order responses) and the broker-wide
//!   request memory pool.
//! - [`security`]: principals, and the SASL exchanges (PLAIN, SCRAM-SHA-256/512) as pure
//!   state machines; SCRAM credentials (salted, hashed) as the metadata keeps them.
//! - [`api`]: request header and body decoding with the kafka-protocol crate, one `match` to one
//!   module per Kafka API, the versions table, response encoding; the old versions the crate
//!   dropped (Produce v0-2, Fetch v0-3, ListOffsets v0) decoded and encoded by hand (`legacy`).
//! - [`broker`]: the broker's state and life cycle: startup with recovery, schedules, shutdown;
//!   topic administration (proposed to the controller, answered once applied locally).
//! - [`coordinator`]: consumer groups: the classic group state machine (join, sync, heartbeat,
//!   leave, rebalance timers), its actor, and committed offsets in the partitions of the
//!   replicated `__consumer_offsets` this broker leads (`coordinator::log`).
//! - [`transaction`]: the transaction coordinator: Kafka's state machine, its actor serving the
//!   transactional ids of the replicated `__transaction_state` partitions this broker leads, and
//!   the marker writer.
//! - [`controller`]: the controller quorum: the replicated metadata log (openraft), its records
//!   and the `MetadataImage` they build, deterministically, on every node.
//! - [`metadata`]: the broker's side of it: the latest image handlers read, proposing changes,
//!   producer-id blocks, joining the quorum at startup, and the listener that applies each new
//!   image to this broker's replicas.
//! - [`replication`]: `Partition` (LEO, high watermark, leader epoch) and `ReplicaManager`
//!   (appends with acks, fetches, the delayed produce / delayed fetch purgatory, group commit).
//! - [`storage`]: the segment log on disk, knowing nothing of the wire: batches, segments,
//!   offset and time indexes, producer state, checkpoints, recovery; the cleaner (compaction),
//!   codecs, and the old message formats converted up and down (`message_set`).
//! - [`clock`]: the wall clock in ms, one function for every layer.
//! - [`config`]: Kafka's broker config names, embedded defaults, validation.
//! - [`error`]: the one mapping from typed errors to Kafka error codes.
//! - [`metrics`]: every metric name, declared once.
//! - [`supervisor`]: every background task is spawned through it; a panic is logged, counted
//!   and stops the broker with an error.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod alloc;
pub mod api;
pub mod broker;
pub mod clock;
pub mod config;
pub mod controller;
pub mod coordinator;
pub mod error;
pub mod metadata;
pub mod metrics;
pub mod replication;
pub mod security;
pub mod server;
pub mod storage;
pub mod supervisor;
pub mod transaction;

/// See [`alloc`]: large reservations must not abort the process.
#[global_allocator]
static GLOBAL: alloc::GuardedAlloc = alloc::GuardedAlloc;
