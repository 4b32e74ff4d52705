//! Partitions as Kafka models them (log end offset, high watermark, leader epoch, the leader's
//! view of its followers and ISR), the replica manager with its delayed-produce and
//! delayed-fetch waits, the followers' fetchers and the replication throttles.

pub mod broker_client;
pub mod fetcher;
pub mod isr;
pub mod leadership;
pub mod log_cleaner;
pub mod log_dir;
pub mod partition;
pub mod quota;
pub mod read_replica;
pub mod replica_manager;
