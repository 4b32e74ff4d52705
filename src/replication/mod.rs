//! Partitions as Kafka models them (log end offset, high watermark, leader epoch) and the
//! replica manager with its delayed-produce and delayed-fetch waits. One node today; followers,
//! ISR and elections extend these types rather than replace them.

pub mod broker_client;
pub mod fetcher;
pub mod isr;
pub mod leadership;
pub mod log_dir;
pub mod partition;
pub mod replica_manager;
