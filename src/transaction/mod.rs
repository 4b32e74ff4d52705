//! The transaction coordinator (KIP-98), issue #5. NOT wired to the API layer yet: this module
//! holds the rules, as a pure, clock-free state machine in the style of `coordinator::group`,
//! so they can be tested exhaustively before any I/O exists around them.
//!
//! Scope: Kafka's transaction protocol version 1 (the broker will not advertise the
//! `transaction.version` feature, so Java 4.x clients use it too): the producer epoch is bumped
//! by InitProducerId and by coordinator-side aborts (fencing, timeouts), not by every EndTxn.
//!
//! How the pieces will fit:
//! - [`TransactionStateMachine`] owns every transactional id's [`TransactionMetadata`]. Each
//!   call takes `now_ms` and returns its answer plus the work the owner must do: persist the
//!   metadata (`__transaction_state`), and for a transaction being completed, write commit/abort
//!   markers (control batches) to its partitions and then call
//!   [`TransactionStateMachine::markers_written`].
//! - [`record`]: the `__transaction_state` record format (no log writes it yet).
//! - `storage::control` builds and reads the marker batches themselves.
//! - Not here yet: the actor around it, the `__transaction_state` log, markers in the log (producer
//!   state, LSO, `.txnindex`), read_committed fetch, TxnOffsetCommit, the APIs.

pub mod record;
pub mod state_machine;

pub use state_machine::{
    EndTxnOutcome, InitPidOutcome, MarkerJob, TransactionMetadata, TransactionStateMachine, TxnError, TxnResult,
    TxnState,
};
