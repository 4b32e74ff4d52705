use super::*;

const MAX_TIMEOUT: i32 = 900_000;
const TIMEOUT: i32 = 60_000;

struct Ids(i64);

impl Ids {
    fn next(&mut self) -> i64 {
        self.0 += 1;
        self.0
    }
}

fn init(
    sm: &mut TransactionStateMachine,
    ids: &mut Ids,
    id: &str,
    expected: Option<(i64, i16)>,
    now: u64,
) -> InitPidOutcome {
    sm.init_producer_id(id, TIMEOUT, expected, now, &mut || ids.next())
}

fn tp(topic: &str, p: i32) -> (String, i32) {
    (topic.to_string(), p)
}

#[test]
fn commit_cycle_and_idempotent_retries() {
    let mut sm = TransactionStateMachine::new(MAX_TIMEOUT);
    let mut ids = Ids(999);
    let out = init(&mut sm, &mut ids, "t", None, 0);
    assert_eq!(out.result, Ok((1000, 0)));
    assert_eq!(sm.get("t").map(|t| t.state), Some(TxnState::Empty));

    // EndTxn with nothing open is INVALID_TXN_STATE.
    assert_eq!(
        sm.end_txn("t", 1000, 0, TxnResult::Commit, 1).result,
        Err(TxnError::InvalidTxnState)
    );

    sm.add_partitions("t", 1000, 0, &[tp("a", 0), tp("b", 1)], 2).unwrap();
    sm.add_partitions("t", 1000, 0, &[tp("a", 0), tp("a", 1)], 3).unwrap();
    let t = sm.get("t").unwrap();
    assert_eq!(t.state, TxnState::Ongoing);
    assert_eq!(t.txn_start_ms, 2, "the first add starts the transaction");
    assert_eq!(t.partitions.len(), 3);

    let end = sm.end_txn("t", 1000, 0, TxnResult::Commit, 4);
    assert_eq!(end.result, Ok(()));
    let job = end.markers.unwrap();
    assert_eq!(job.result, TxnResult::Commit);
    assert_eq!((job.producer_id, job.producer_epoch), (1000, 0));
    assert_eq!(job.partitions, vec![tp("a", 0), tp("a", 1), tp("b", 1)]);
    assert_eq!(sm.get("t").unwrap().state, TxnState::PrepareCommit);

    // While markers are written: the same decision again is CONCURRENT_TRANSACTIONS, the
    // opposite one INVALID_TXN_STATE, a new transaction must wait, and so must a new producer.
    assert_eq!(
        sm.end_txn("t", 1000, 0, TxnResult::Commit, 5).result,
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        sm.end_txn("t", 1000, 0, TxnResult::Abort, 5).result,
        Err(TxnError::InvalidTxnState)
    );
    assert_eq!(
        sm.add_partitions("t", 1000, 0, &[tp("a", 0)], 5),
        Err(TxnError::ConcurrentTransactions)
    );
    assert_eq!(
        init(&mut sm, &mut ids, "t", None, 5).result,
        Err(TxnError::ConcurrentTransactions)
    );

    sm.markers_written(&job, 6);
    assert_eq!(sm.get("t").unwrap().state, TxnState::CompleteCommit);
    assert!(sm.get("t").unwrap().partitions.is_empty());
    assert_eq!(
        sm.end_txn("t", 1000, 0, TxnResult::Commit, 7).result,
        Ok(()),
        "a retried commit"
    );
    assert_eq!(
        sm.end_txn("t", 1000, 0, TxnResult::Abort, 7).result,
        Err(TxnError::InvalidTxnState)
    );

    // The next transaction, aborted by the client this time.
    sm.add_partitions("t", 1000, 0, &[tp("c", 0)], 8).unwrap();
    assert_eq!(sm.get("t").unwrap().txn_start_ms, 8);
    let end = sm.end_txn("t", 1000, 0, TxnResult::Abort, 9);
    let job = end.markers.unwrap();
    assert_eq!(job.partitions, vec![tp("c", 0)], "only this transaction's partitions");
    sm.markers_written(&job, 10);
    assert_eq!(sm.get("t").unwrap().state, TxnState::CompleteAbort);
}

#[test]
fn a_new_producer_fences_the_old_and_aborts_its_transaction() {
    let mut sm = TransactionStateMachine::new(MAX_TIMEOUT);
    let mut ids = Ids(0);
    assert_eq!(init(&mut sm, &mut ids, "t", None, 0).result, Ok((1, 0)));
    sm.add_partitions("t", 1, 0, &[tp("a", 0)], 1).unwrap();

    let second = init(&mut sm, &mut ids, "t", None, 2);
    assert_eq!(
        second.result,
        Err(TxnError::ConcurrentTransactions),
        "retry after the abort"
    );
    let job = second.markers.unwrap();
    assert_eq!(
        (job.result, job.producer_epoch),
        (TxnResult::Abort, 1),
        "markers carry the fencing epoch"
    );
    assert_eq!(job.partitions, vec![tp("a", 0)]);

    // The zombie cannot go on.
    assert_eq!(
        sm.add_partitions("t", 1, 0, &[tp("a", 1)], 3),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        sm.end_txn("t", 1, 0, TxnResult::Commit, 3).result,
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        init(&mut sm, &mut ids, "t", None, 3).result,
        Err(TxnError::ConcurrentTransactions)
    );

    sm.markers_written(&job, 4);
    assert_eq!(
        init(&mut sm, &mut ids, "t", None, 5).result,
        Ok((1, 2)),
        "the new producer's epoch"
    );
    assert_eq!(
        sm.end_txn("t", 1, 1, TxnResult::Commit, 6).result,
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        sm.add_partitions("t", 2, 2, &[tp("a", 0)], 6),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        sm.add_partitions("nope", 1, 2, &[tp("a", 0)], 6),
        Err(TxnError::InvalidProducerIdMapping)
    );
}

#[test]
fn timeouts_abort_and_the_producer_may_reinitialise_with_its_old_epoch() {
    let mut sm = TransactionStateMachine::new(MAX_TIMEOUT);
    let mut ids = Ids(0);
    init(&mut sm, &mut ids, "slow", None, 0);
    init(&mut sm, &mut ids, "fast", None, 0);
    sm.add_partitions("slow", 1, 0, &[tp("a", 0)], 1_000).unwrap();
    sm.add_partitions("fast", 2, 0, &[tp("a", 1)], 30_000).unwrap();
    assert!(sm.abort_timed_out(60_999).is_empty());
    let jobs = sm.abort_timed_out(61_000);
    assert_eq!(jobs.len(), 1);
    let job = jobs.first().unwrap();
    assert_eq!((job.transactional_id.as_str(), job.producer_epoch), ("slow", 1));
    assert_eq!(sm.get("fast").unwrap().state, TxnState::Ongoing);
    sm.markers_written(job, 61_001);

    // The timed-out producer is fenced for writes, but KIP-360/588 lets it re-initialise.
    assert_eq!(
        sm.end_txn("slow", 1, 0, TxnResult::Commit, 62_000).result,
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(init(&mut sm, &mut ids, "slow", Some((1, 0)), 62_000).result, Ok((1, 2)));
    // Someone with a made-up epoch is fenced.
    assert_eq!(
        init(&mut sm, &mut ids, "slow", Some((1, 7)), 62_001).result,
        Err(TxnError::ProducerFenced)
    );
    // A retry of the InitProducerId that just bumped gets the same epoch again.
    assert_eq!(init(&mut sm, &mut ids, "slow", Some((1, 1)), 62_002).result, Ok((1, 2)));
}

#[test]
fn epoch_exhaustion_moves_to_a_new_producer_id() {
    let mut sm = TransactionStateMachine::new(MAX_TIMEOUT);
    let mut ids = Ids(0);
    init(&mut sm, &mut ids, "t", None, 0);
    let mut meta = sm.get("t").unwrap().clone();
    meta.producer_epoch = i16::MAX - 1;
    sm.restore(meta);
    let out = init(&mut sm, &mut ids, "t", None, 1);
    assert_eq!(out.result, Ok((2, 0)));
    let t = sm.get("t").unwrap();
    assert_eq!(t.last_producer_id, 1);
    // The client that lost the answer retries with the exhausted pair: accepted.
    assert_eq!(
        init(&mut sm, &mut ids, "t", Some((1, i16::MAX - 1)), 2).result,
        Ok((2, 0))
    );
    // The new pair itself bumps as usual.
    assert_eq!(init(&mut sm, &mut ids, "t", Some((2, 0)), 3).result, Ok((2, 1)));
}

#[test]
fn timeouts_are_bounded_and_idle_ids_expire() {
    let mut sm = TransactionStateMachine::new(MAX_TIMEOUT);
    let mut ids = Ids(0);
    for bad in [0, -5, MAX_TIMEOUT + 1] {
        let out = sm.init_producer_id("t", bad, None, 0, &mut || ids.next());
        assert_eq!(out.result, Err(TxnError::InvalidTransactionTimeout), "{bad}");
    }
    assert_eq!(
        init(&mut sm, &mut ids, "new", Some((5, 0)), 0).result,
        Err(TxnError::InvalidProducerIdMapping)
    );
    init(&mut sm, &mut ids, "idle", None, 0);
    init(&mut sm, &mut ids, "busy", None, 0);
    let busy_pid = sm.get("busy").unwrap().producer_id;
    sm.add_partitions("busy", busy_pid, 0, &[tp("a", 0)], 10).unwrap();
    assert_eq!(sm.expire_ids(100, 50), vec!["idle".to_string()]);
    assert!(sm.get("busy").is_some(), "open transactions do not expire");
    let names: Vec<&str> = sm.list().iter().map(|t| t.state.as_str()).collect();
    assert_eq!(names, vec!["Ongoing"]);
    let codes: Vec<i16> = [
        TxnError::ConcurrentTransactions,
        TxnError::InvalidProducerIdMapping,
        TxnError::ProducerFenced,
        TxnError::InvalidTxnState,
        TxnError::InvalidTransactionTimeout,
    ]
    .iter()
    .map(|e| e.code())
    .collect();
    assert_eq!(codes, vec![51, 49, 90, 48, 50]);
}

#[test]
fn verify_partitions_and_start_time() {
    let mut sm = TransactionStateMachine::new(MAX_TIMEOUT);
    let mut ids = Ids(0);
    init(&mut sm, &mut ids, "t", None, 0);
    assert_eq!(
        sm.get("t").map(TransactionMetadata::started_ms),
        Some(-1),
        "Empty: no start"
    );
    assert_eq!(
        sm.verify_partitions("t", 1, 0, &[tp("a", 0)]),
        Err(TxnError::InvalidTxnState),
        "nothing open"
    );
    sm.add_partitions("t", 1, 0, &[tp("a", 0)], 5).unwrap();
    assert_eq!(sm.get("t").map(TransactionMetadata::started_ms), Some(5));
    assert_eq!(sm.verify_partitions("t", 1, 0, &[tp("a", 0)]), Ok(()));
    assert_eq!(
        sm.verify_partitions("t", 1, 0, &[tp("a", 1)]),
        Err(TxnError::InvalidTxnState)
    );
    assert_eq!(
        sm.verify_partitions("t", 1, 1, &[tp("a", 0)]),
        Err(TxnError::ProducerFenced)
    );
    assert_eq!(
        sm.verify_partitions("t", 2, 0, &[tp("a", 0)]),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        sm.verify_partitions("u", 1, 0, &[tp("a", 0)]),
        Err(TxnError::InvalidProducerIdMapping)
    );
    assert_eq!(
        sm.get("t").map(|t| t.state),
        Some(TxnState::Ongoing),
        "verification changes nothing"
    );
}
