//! `TransactionStateMachine`: Kafka's transaction coordinator rules (`TransactionCoordinator`
//! and `TransactionMetadata`, protocol version 1) for every transactional id, synchronous and
//! driven by an explicit `now_ms`.
//!
//! States and transitions (Kafka's names):
//! - Empty: an initialised producer with no open transaction. AddPartitionsToTxn -> Ongoing.
//! - Ongoing: partitions were added. EndTxn(commit) -> PrepareCommit, EndTxn(abort) ->
//!   PrepareAbort; a new InitProducerId for the same id, or the transaction timeout, fences the
//!   producer (epoch + 1) and aborts (-> PrepareAbort).
//! - PrepareCommit / PrepareAbort: the decision is made (and, once persistence exists, durable);
//!   markers are being written. Requests that need the transaction get CONCURRENT_TRANSACTIONS.
//!   [`TransactionStateMachine::markers_written`] -> CompleteCommit / CompleteAbort.
//! - CompleteCommit / CompleteAbort: done; the next AddPartitionsToTxn starts a new transaction.
//!
//! The producer epoch: InitProducerId bumps it (a new producer id with epoch 0 once the epoch is
//! exhausted), and so does a coordinator-side abort (fencing or timeout), which leaves the old
//! epoch in `last_producer_epoch` so a producer that timed out can re-initialise with its old
//! epoch (KIP-360 / KIP-588) while a zombie cannot write.

use std::collections::{BTreeSet, HashMap};

/// Kafka's transaction states, named as Kafka prints them (ListTransactions, DescribeTransactions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    /// The states a transactional id is found in (ListTransactions filters, metrics).
    pub const LISTED: [TxnState; 6] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// A transaction request's failure, each one Kafka error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// The transaction is being completed; retry (CONCURRENT_TRANSACTIONS, 51).
    #[error("a transaction of this transactional id is being completed; retry")]
    ConcurrentTransactions,
    /// The producer id does not belong to the transactional id (INVALID_PRODUCER_ID_MAPPING, 49).
    #[error("the producer id is not the transactional id's")]
    InvalidProducerIdMapping,
    /// A newer producer with the same transactional id exists (PRODUCER_FENCED, 90).
    #[error("the producer was fenced by a newer epoch")]
    ProducerFenced,
    /// The request does not fit the transaction's state (INVALID_TXN_STATE, 48).
    #[error("the request does not fit the transaction's state")]
    InvalidTxnState,
    /// The timeout exceeds `transaction.max.timeout.ms` or is not positive (INVALID_TRANSACTION_TIMEOUT, 50).
    #[error("the transaction timeout is outside (0, transaction.max.timeout.ms]")]
    InvalidTransactionTimeout,
    /// The coordinator cannot take the request now: its log failed or it is shutting down
    /// (COORDINATOR_NOT_AVAILABLE, 15; the client finds the coordinator again and retries).
    #[error("the transaction coordinator is not available")]
    CoordinatorNotAvailable,
    /// This broker does not lead the id's `__transaction_state` partition (NOT_COORDINATOR, 16;
    /// the client looks the coordinator up again).
    #[error("this broker is not the transactional id's coordinator")]
    NotCoordinator,
    /// This broker is loading the id's partition (COORDINATOR_LOAD_IN_PROGRESS, 14; retry).
    #[error("the transaction coordinator is loading the id's partition")]
    CoordinatorLoadInProgress,
}

impl TxnError {
    /// The Kafka error code (mapped in `crate::error` with every other one).
    pub fn code(self) -> i16 {
        crate::error::txn_response_error(self).code()
    }
}

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnResult {
    Commit,
    Abort,
}

/// Markers (control batches) the owner must write to finish a transaction, then report with
/// [`TransactionStateMachine::markers_written`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The epoch stamped on the markers (the bumped one for coordinator-side aborts).
    pub producer_epoch: i16,
    pub result: TxnResult,
    /// The transaction's partitions, sorted.
    pub partitions: Vec<(String, i32)>,
}

/// One transactional id's state (Kafka's `TransactionMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before an epoch overflow moved to a new one, else -1.
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, else -1.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// When the current transaction started (its first AddPartitionsToTxn).
    pub txn_start_ms: u64,
    pub last_update_ms: u64,
}

impl TransactionMetadata {
    /// When the current (or last) transaction started, -1 for an id without one since its
    /// InitProducerId (Kafka's `txnStartTimestamp`, as DescribeTransactions and ListTransactions
    /// use it).
    pub fn started_ms(&self) -> i64 {
        if self.state == TxnState::Empty {
            -1
        } else {
            i64::try_from(self.txn_start_ms).unwrap_or(-1)
        }
    }

    /// When the open transaction times out.
    fn deadline_ms(&self) -> u64 {
        self.txn_start_ms
            .saturating_add(u64::try_from(self.timeout_ms.max(0)).unwrap_or(0))
    }

    fn is_epoch_exhausted(epoch: i16) -> bool {
        epoch >= i16::MAX - 1
    }

    /// InitProducerId's bump: epoch + 1, or a new producer id at epoch 0 when exhausted.
    fn increment_epoch(&mut self, allocate: &mut dyn FnMut() -> i64) {
        if Self::is_epoch_exhausted(self.producer_epoch) {
            self.last_producer_id = self.producer_id;
            self.producer_id = allocate();
            self.last_producer_epoch = -1;
            self.producer_epoch = 0;
        } else {
            self.last_producer_epoch = self.producer_epoch;
            self.producer_epoch += 1;
        }
    }

    /// A coordinator-side abort fences the current producer: epoch + 1 (never past i16::MAX).
    fn fence_epoch(&mut self) {
        if self.producer_epoch < i16::MAX {
            self.last_producer_epoch = self.producer_epoch;
            self.producer_epoch += 1;
        }
    }

    fn marker_job(&self, result: TxnResult) -> MarkerJob {
        MarkerJob {
            transactional_id: self.transactional_id.clone(),
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            result,
            partitions: self.partitions.iter().cloned().collect(),
        }
    }

    /// Kafka's `isValidProducerId` for InitProducerId with an expected producer id and epoch
    /// (KIP-360): the current pair, a retry after a bump, or a retry after an overflow.
    fn accepts_expected(&self, producer_id: i64, epoch: i16) -> bool {
        (producer_id == self.producer_id && (epoch == self.producer_epoch || epoch == self.last_producer_epoch))
            || (producer_id == self.last_producer_id && Self::is_epoch_exhausted(epoch))
    }
}

/// The producer id and epoch must be the transactional id's current ones.
fn check_producer(txn: &TransactionMetadata, producer_id: i64, epoch: i16) -> Result<(), TxnError> {
    if txn.producer_id != producer_id {
        return Err(TxnError::InvalidProducerIdMapping);
    }
    if txn.producer_epoch != epoch {
        return Err(TxnError::ProducerFenced);
    }
    Ok(())
}

/// InitProducerId's answer, and the abort to run when it fenced an open transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPidOutcome {
    /// `(producer id, epoch)` or the error for the client.
    pub result: Result<(i64, i16), TxnError>,
    /// Markers to write (an open transaction of the fenced producer is aborted).
    pub markers: Option<MarkerJob>,
}

/// EndTxn's answer and the markers to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndTxnOutcome {
    pub result: Result<(), TxnError>,
    pub markers: Option<MarkerJob>,
}

/// Every transactional id's state.
#[derive(Debug)]
pub struct TransactionStateMachine {
    /// `transaction.max.timeout.ms` (Kafka's default 900000 = 15 min).
    max_timeout_ms: i32,
    txns: HashMap<String, TransactionMetadata>,
}

impl TransactionStateMachine {
    pub fn new(max_timeout_ms: i32) -> Self {
        TransactionStateMachine {
            max_timeout_ms,
            txns: HashMap::new(),
        }
    }

    /// One transactional id's state.
    pub fn get(&self, transactional_id: &str) -> Option<&TransactionMetadata> {
        self.txns.get(transactional_id)
    }

    /// Every transactional id's state, sorted by id (ListTransactions).
    pub fn list(&self) -> Vec<&TransactionMetadata> {
        let mut all: Vec<&TransactionMetadata> = self.txns.values().collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }

    /// Restores a persisted id (replay of `__transaction_state`).
    pub fn restore(&mut self, metadata: TransactionMetadata) {
        self.txns.insert(metadata.transactional_id.clone(), metadata);
    }

    /// Forgets an id (a tombstone in the log, or undoing a change that could not be persisted).
    pub fn forget(&mut self, transactional_id: &str) {
        self.txns.remove(transactional_id);
    }

    /// Marker jobs of transactions in a Prepare state (to resume after a restart).
    pub fn pending_marker_jobs(&self) -> Vec<MarkerJob> {
        let mut jobs: Vec<MarkerJob> = self
            .txns
            .values()
            .filter_map(|t| match t.state {
                TxnState::PrepareCommit => Some(t.marker_job(TxnResult::Commit)),
                TxnState::PrepareAbort => Some(t.marker_job(TxnResult::Abort)),
                _ => None,
            })
            .collect();
        jobs.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        jobs
    }

    /// InitProducerId with a transactional id (Kafka's `handleInitProducerId`). `expected` is
    /// the producer id and epoch the client already has (v3+, KIP-360), `None` for (-1, -1).
    /// `allocate` hands out a new producer id.
    pub fn init_producer_id(
        &mut self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        now_ms: u64,
        allocate: &mut dyn FnMut() -> i64,
    ) -> InitPidOutcome {
        let answer = |result| InitPidOutcome { result, markers: None };
        if timeout_ms <= 0 || timeout_ms > self.max_timeout_ms {
            return answer(Err(TxnError::InvalidTransactionTimeout));
        }
        let Some(txn) = self.txns.get_mut(transactional_id) else {
            if expected.is_some() {
                // A client that believes it has an id the coordinator never gave.
                return answer(Err(TxnError::InvalidProducerIdMapping));
            }
            let txn = TransactionMetadata {
                transactional_id: transactional_id.to_string(),
                producer_id: allocate(),
                last_producer_id: -1,
                producer_epoch: 0,
                last_producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                txn_start_ms: now_ms,
                last_update_ms: now_ms,
            };
            let result = Ok((txn.producer_id, txn.producer_epoch));
            self.txns.insert(transactional_id.to_string(), txn);
            return answer(result);
        };
        if let Some((pid, epoch)) = expected {
            if !txn.accepts_expected(pid, epoch) {
                return answer(Err(TxnError::ProducerFenced));
            }
        }
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                answer(Err(TxnError::ConcurrentTransactions))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Dead => {
                // A retry of an InitProducerId that already bumped (the client lost the answer)
                // gets the same epoch again instead of fencing itself.
                let retry = txn.state == TxnState::Empty
                    && expected.is_some_and(|(pid, epoch)| {
                        (pid == txn.producer_id && epoch == txn.last_producer_epoch)
                            || (pid == txn.last_producer_id
                                && TransactionMetadata::is_epoch_exhausted(epoch)
                                && txn.producer_epoch == 0)
                    });
                if !retry {
                    txn.increment_epoch(allocate);
                }
                txn.timeout_ms = timeout_ms;
                txn.state = TxnState::Empty;
                txn.partitions.clear();
                txn.last_update_ms = now_ms;
                answer(Ok((txn.producer_id, txn.producer_epoch)))
            }
            TxnState::Ongoing => {
                // A new producer instance: fence the old one and abort its transaction. The
                // client retries and gets its epoch once the abort completed.
                txn.fence_epoch();
                txn.state = TxnState::PrepareAbort;
                txn.last_update_ms = now_ms;
                InitPidOutcome {
                    result: Err(TxnError::ConcurrentTransactions),
                    markers: Some(txn.marker_job(TxnResult::Abort)),
                }
            }
        }
    }

    /// The checks AddPartitionsToTxn, AddOffsetsToTxn and EndTxn share.
    fn validate(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&mut TransactionMetadata, TxnError> {
        let txn = self
            .txns
            .get_mut(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        check_producer(txn, producer_id, epoch)?;
        Ok(txn)
    }

    /// KIP-890's verification (AddPartitionsToTxn v4+ with verify_only): the partitions are in
    /// the producer's open transaction. Changes nothing.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), TxnError> {
        let txn = self
            .txns
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        check_producer(txn, producer_id, epoch)?;
        if txn.state != TxnState::Ongoing || partitions.iter().any(|p| !txn.partitions.contains(p)) {
            return Err(TxnError::InvalidTxnState);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, which adds the group's offsets partition).
    pub fn add_partitions(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
        now_ms: u64,
    ) -> Result<(), TxnError> {
        let txn = self.validate(transactional_id, producer_id, epoch)?;
        match txn.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Dead => Err(TxnError::InvalidTxnState),
            TxnState::Ongoing | TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                if txn.state != TxnState::Ongoing {
                    txn.partitions.clear();
                    txn.txn_start_ms = now_ms;
                }
                txn.partitions.extend(partitions.iter().cloned());
                txn.state = TxnState::Ongoing;
                txn.last_update_ms = now_ms;
                Ok(())
            }
        }
    }

    /// EndTxn from the client (Kafka's `handleEndTransaction`, isFromClient = true).
    pub fn end_txn(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        result: TxnResult,
        now_ms: u64,
    ) -> EndTxnOutcome {
        let answer = |result| EndTxnOutcome { result, markers: None };
        let txn = match self.validate(transactional_id, producer_id, epoch) {
            Ok(t) => t,
            Err(e) => return answer(Err(e)),
        };
        use TxnResult::{Abort, Commit};
        match (txn.state, result) {
            (TxnState::Ongoing, _) => {
                txn.state = match result {
                    Commit => TxnState::PrepareCommit,
                    Abort => TxnState::PrepareAbort,
                };
                txn.last_update_ms = now_ms;
                EndTxnOutcome {
                    result: Ok(()),
                    markers: Some(txn.marker_job(result)),
                }
            }
            // A retry of the same decision.
            (TxnState::CompleteCommit, Commit) | (TxnState::CompleteAbort, Abort) => answer(Ok(())),
            (TxnState::PrepareCommit, Commit) | (TxnState::PrepareAbort, Abort) => {
                answer(Err(TxnError::ConcurrentTransactions))
            }
            (TxnState::PrepareEpochFence, _) => answer(Err(TxnError::ConcurrentTransactions)),
            _ => answer(Err(TxnError::InvalidTxnState)),
        }
    }

    /// The owner wrote `job`'s markers: the transaction is complete. A job that no longer
    /// matches the id's producer (a stale one) is ignored.
    pub fn markers_written(&mut self, job: &MarkerJob, now_ms: u64) {
        let Some(txn) = self.txns.get_mut(&job.transactional_id) else {
            return;
        };
        let expected = match job.result {
            TxnResult::Commit => TxnState::PrepareCommit,
            TxnResult::Abort => TxnState::PrepareAbort,
        };
        if txn.state != expected || txn.producer_id != job.producer_id || txn.producer_epoch != job.producer_epoch {
            return;
        }
        txn.state = match job.result {
            TxnResult::Commit => TxnState::CompleteCommit,
            TxnResult::Abort => TxnState::CompleteAbort,
        };
        txn.partitions.clear();
        txn.last_update_ms = now_ms;
    }

    /// Transactions open longer than their timeout are aborted by the coordinator, fencing their
    /// producer (Kafka's `abortTimedOutTransactions`). Returns the markers to write.
    pub fn abort_timed_out(&mut self, now_ms: u64) -> Vec<MarkerJob> {
        self.timed_out(now_ms)
            .iter()
            .filter_map(|id| self.abort_timed_out_one(id, now_ms))
            .collect()
    }

    /// The ids whose open transaction is past its timeout, sorted.
    pub fn timed_out(&self, now_ms: u64) -> Vec<String> {
        let mut ids: Vec<String> = self
            .txns
            .values()
            .filter(|t| t.state == TxnState::Ongoing && now_ms >= t.deadline_ms())
            .map(|t| t.transactional_id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Aborts `transactional_id`'s transaction if it is open past its timeout, fencing its
    /// producer; the markers to write.
    pub fn abort_timed_out_one(&mut self, transactional_id: &str, now_ms: u64) -> Option<MarkerJob> {
        let txn = self.txns.get_mut(transactional_id)?;
        if txn.state != TxnState::Ongoing || now_ms < txn.deadline_ms() {
            return None;
        }
        txn.fence_epoch();
        txn.state = TxnState::PrepareAbort;
        txn.last_update_ms = now_ms;
        Some(txn.marker_job(TxnResult::Abort))
    }

    /// Forgets ids idle (Empty or complete) for `expiration_ms` (`transactional.id.expiration.ms`).
    /// Returns the removed ids.
    pub fn expire_ids(&mut self, now_ms: u64, expiration_ms: u64) -> Vec<String> {
        let gone = self.expired(now_ms, expiration_ms);
        for id in &gone {
            self.txns.remove(id);
        }
        gone
    }

    /// The ids [`Self::expire_ids`] would remove, sorted.
    pub fn expired(&self, now_ms: u64, expiration_ms: u64) -> Vec<String> {
        let mut gone: Vec<String> = self
            .txns
            .values()
            .filter(|t| {
                matches!(
                    t.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && now_ms.saturating_sub(t.last_update_ms) >= expiration_ms
            })
            .map(|t| t.transactional_id.clone())
            .collect();
        gone.sort();
        gone
    }

    /// Forgets every id `unloaded` selects (a coordinator partition this broker stopped
    /// leading); how many.
    pub fn forget_where(&mut self, unloaded: impl Fn(&str) -> bool) -> usize {
        let before = self.txns.len();
        self.txns.retain(|id, _| !unloaded(id));
        before - self.txns.len()
    }
}

#[cfg(test)]
#[path = "state_machine_tests.rs"]
mod tests;
