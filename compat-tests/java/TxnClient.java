// TxnClient: Kafka transactions (KIP-98) with the official Java client, for Sluice's `transactions`
// compat suite (compat-tests/transactions/suite.py drives it; compat-tests/transactions/run.sh
// compiles it into the cache). A separate program so SluiceClient stays the stock tools' mirror.
//
// Building blocks the suite orchestrates around broker and client kill -9s (one JVM each):
//   create-topic --topic T --partitions N
//   produce-seq  --topic T --partitions N --count C     idempotent producer: key = value = "i",
//                partition i % N; prints "END p offset" per partition
//   produce-acks --topic T --partitions N --prefix P --stop-file F [--interval-us 2000] [--max-run-ms 60000]
//                idempotent acks=all producer, paced: key = value = "P<i>" to partition i % N, one every
//                interval until F exists (or max-run-ms); prints "STARTED" at the first acknowledgement;
//                then flushes and prints "ACK i p offset ms" (ms: acknowledged, since the first send)
//                per acknowledged record, "ERR i error" per failed one, "SENT n"
//   eos-loop     --in T --out T --group G --txn-id ID [--timeout-ms 10000] --expect TOTAL
//                [--hold-at N --release-file F [--pause-after-hold-ms MS]]
//                consume-transform-produce, exactly once; once N inputs are committed it flushes
//                its open transaction, prints HOLDING and waits for F before committing (then
//                sleeps MS after each commit)
//   read         --topic T --isolation read_committed|read_uncommitted   every record from the start
//                to the end offset the consumer's isolation level sees: "R p offset key value", "END p o"
//   offsets      --topic T [--group G]                  "END read_committed p o", "END read_uncommitted p o",
//                "COMMITTED p o"
//   open-txn     --txn-id ID --topic T --count N --prefix P [--timeout-ms] [--release-file F]
//                sends N records in a transaction (partition i % partitions), flushes, prints
//                "OPEN p firstOffset lastOffset" and "HOLDING"; commits once F exists (never if not given)
//   txn-produce  --txn-id ID --topic T --count N --prefix P [--timeout-ms] [--abort]
//   list-txns                                          "TXN id producerId STATE" per listed transaction
//   describe-quorum                                    "QUORUM leader=L epoch=E hw=H", then "VOTER id logEnd lastCaughtUpMs" / "OBSERVER ..." (Admin.describeMetadataQuorum)
//   elect-leaders --topic T --partitions 0,1 [--type preferred|unclean]
//                "ELECT p NONE" or "ELECT p <exception class>" per partition (Admin.electLeaders)
//   reassign     --topic T --partition P (--replicas 1,2 | --cancel) [--no-rf-change]
//                "REASSIGN p NONE" or "REASSIGN p <exception class>" (Admin.alterPartitionReassignments,
//                what kafka-reassign-partitions --execute / --cancel sends)
//   list-reassignments --topic T                       "REASSIGNING p replicas=.. adding=.. removing=.." per
//                partition in progress, then "LISTED n" (Admin.listPartitionReassignments)
//   unregister-broker --id N                           "UNREGISTER N NONE" or "UNREGISTER N <exception class>"
//                (Admin.unregisterBroker, what kafka-cluster.sh unregister sends)
//   add-raft-voter --id N --host H --port P            "ADD_VOTER N NONE" or "ADD_VOTER N <exception class> <message>"
//                (Admin.addRaftVoter with the CONTROLLER endpoint, what kafka-metadata-quorum add-controller sends)
//   remove-raft-voter --id N                           "REMOVE_VOTER N NONE" or "REMOVE_VOTER N <exception class> <message>"
//                (Admin.removeRaftVoter, what kafka-metadata-quorum remove-controller sends)
//   describe-topics --topics T1,T2 [--page N]          "PARTITION topic p leader=L replicas=.. isr=.." per partition
//                (Admin.describeTopics: DescribeTopicPartitions, N partitions a response)
// Scenarios that assert themselves and print "PASS <check>" / "FAIL <check>: <reason>":
//   abort-scenario, fence-scenario, timeout-scenario, admin-scenario
//
// Lines starting with "#" are information. Exit status: 0 ok, 1 a check or step failed, 2 usage,
// 3 the eos loop hit a fatal producer error, 4 a hold was never released.
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class TxnClient {
    static final long OP_TIMEOUT_MS = 30_000;
    static String bootstrap;

    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) { super(msg); }
    }

    static void fail(String fmt, Object... args) { throw new CheckFailed(String.format(fmt, args)); }

    static void out(String s) {
        System.out.println(s);
        System.out.flush();
    }

    // ------------------------------------------------------------------ arguments
    static final class Args {
        final Map<String, String> opts = new HashMap<>();
        Args(String[] argv, int from) {
            for (int i = from; i < argv.length; i++) {
                String a = argv[i];
                if (!a.startsWith("--")) usage("unexpected argument " + a);
                String k = a.substring(2);
                if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) opts.put(k, argv[++i]);
                else opts.put(k, "true");
            }
        }
        String get(String k, String dflt) { return opts.getOrDefault(k, dflt); }
        String need(String k) {
            String v = opts.get(k);
            if (v == null) usage("missing --" + k);
            return v;
        }
        int getInt(String k, int dflt) { return Integer.parseInt(get(k, Integer.toString(dflt))); }
        long getLong(String k, long dflt) { return Long.parseLong(get(k, Long.toString(dflt))); }
    }

    static void usage(String why) {
        System.err.println("error: " + why);
        System.err.println("usage: TxnClient --bootstrap-server HOST:PORT COMMAND [options] (see the top of TxnClient.java)");
        System.exit(2);
    }

    // ------------------------------------------------------------------ client configs
    /** A transactional producer. Bounded blocking: initTransactions/commit/abort/sendOffsets give up
     *  after max.block.ms (15 s) with a TimeoutException. */
    static Properties txnProducerProps(String txnId, int txnTimeoutMs) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "txn-" + txnId);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, Integer.toString(txnTimeoutMs));
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return p;
    }

    static Properties idempotentProducerProps(String clientId) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, clientId);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "15000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return p;
    }

    /** A consumer; group null = assign only (no group.id). isolation: read_committed / read_uncommitted. */
    static Properties consumerProps(String group, String isolation) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "txn-consumer-" + isolation);
        if (group != null) p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "15000");
        p.put(ConsumerConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, "500");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return p;
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "txn-admin");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
        return Admin.create(p);
    }

    static <T> T await(KafkaFuture<T> f, String what) {
        try {
            return f.get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            fail("%s failed: %s: %s", what, c.getClass().getSimpleName(), c.getMessage());
        } catch (java.util.concurrent.TimeoutException e) {
            fail("%s timed out after %d ms", what, OP_TIMEOUT_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            fail("%s interrupted", what);
        }
        return null;
    }

    static RecordMetadata awaitSend(Future<RecordMetadata> f, String what) {
        try {
            return f.get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            fail("%s failed: %s: %s", what, c.getClass().getSimpleName(), c.getMessage());
        } catch (java.util.concurrent.TimeoutException e) {
            fail("%s: no acknowledgement within %d ms", what, OP_TIMEOUT_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            fail("%s interrupted", what);
        }
        return null;
    }

    static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static long nowMs() { return System.nanoTime() / 1_000_000L; }

    static String describe(Throwable t) {
        return t == null ? "null" : t.getClass().getSimpleName() + ": " + t.getMessage();
    }

    /** The exception and its causes, outermost first, as "A: msg <- B: msg". */
    static String chain(Throwable t) {
        StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            if (sb.length() > 0) sb.append(" <- ");
            sb.append(describe(c));
        }
        return sb.toString();
    }

    /** Kafka's documented fencing errors: a newer producer with the same transactional.id (or the
     *  coordinator aborting on timeout) bumped the epoch. */
    static boolean isFencing(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause()) {
            if (c instanceof ProducerFencedException || c instanceof InvalidProducerEpochException) return true;
        }
        return false;
    }

    static void createTopic(Admin admin, String topic, int partitions) {
        await(admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all(), "createTopics " + topic);
        long end = nowMs() + 15_000;
        while (nowMs() < end) {
            try {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic);
                if (d != null && d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty())) return;
            } catch (Exception e) {
                // not yet
            }
            sleep(100);
        }
        fail("%s: not described with %d partitions with leaders 15 s after creation", topic, partitions);
    }

    static List<TopicPartition> partitionsOf(String topic, int n) {
        List<TopicPartition> out = new ArrayList<>();
        for (int p = 0; p < n; p++) out.add(new TopicPartition(topic, p));
        return out;
    }

    static int partitionCount(Admin admin, String topic) {
        return await(admin.describeTopics(List.of(topic)).allTopicNames(), "describeTopics " + topic).get(topic).partitions().size();
    }

    // ------------------------------------------------------------------ reading
    /** The end offsets a consumer of the given isolation level sees (read_committed: the LSO). */
    static Map<Integer, Long> endOffsets(String topic, int partitions, String isolation) {
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, isolation))) {
            Map<TopicPartition, Long> m = c.endOffsets(partitionsOf(topic, partitions), Duration.ofSeconds(15));
            Map<Integer, Long> out = new TreeMap<>();
            m.forEach((tp, o) -> out.put(tp.partition(), o));
            return out;
        }
    }

    /** Every record of every partition from the beginning up to the end offset this isolation level
     *  sees, read with assign (no group). Fails after timeoutMs. */
    static List<ConsumerRecord<String, String>> readAll(String topic, int partitions, String isolation, long timeoutMs,
                                                        Map<Integer, Long> endsOut) {
        List<ConsumerRecord<String, String>> recs = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, isolation))) {
            List<TopicPartition> tps = partitionsOf(topic, partitions);
            c.assign(tps);
            c.seekToBeginning(tps);
            Map<TopicPartition, Long> ends = c.endOffsets(tps, Duration.ofSeconds(15));
            if (endsOut != null) ends.forEach((tp, o) -> endsOut.put(tp.partition(), o));
            long deadline = nowMs() + timeoutMs;
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (c.position(tp, Duration.ofSeconds(15)) < ends.get(tp)) { done = false; break; }
                }
                if (done) break;
                if (nowMs() > deadline) {
                    StringBuilder sb = new StringBuilder();
                    for (TopicPartition tp : tps) sb.append(String.format(" %d:%d/%d", tp.partition(), c.position(tp), ends.get(tp)));
                    fail("%s (%s): not at the end offsets after %d ms (partition:position/end%s), %d records read",
                        topic, isolation, timeoutMs, sb, recs.size());
                }
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) recs.add(r);
            }
        }
        return recs;
    }

    /** Values per partition, in offset order. */
    static Map<Integer, List<String>> valuesByPartition(List<ConsumerRecord<String, String>> recs) {
        Map<Integer, List<String>> out = new TreeMap<>();
        for (ConsumerRecord<String, String> r : recs) out.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.value());
        return out;
    }

    static List<String> seq(String prefix, int count, int partitions, int p) {
        List<String> out = new ArrayList<>();
        for (int i = p; i < count; i += partitions) out.add(prefix + i);
        return out;
    }

    static void expectValues(String what, Map<Integer, List<String>> got, int partitions, Map<Integer, List<String>> want) {
        for (int p = 0; p < partitions; p++) {
            List<String> g = got.getOrDefault(p, List.of());
            List<String> w = want.getOrDefault(p, List.of());
            if (!g.equals(w)) {
                int i = 0;
                while (i < g.size() && i < w.size() && g.get(i).equals(w.get(i))) i++;
                fail("%s partition %d: %d records, want %d; first difference at #%d: got %s, want %s", what, p, g.size(),
                    w.size(), i, i < g.size() ? g.get(i) : "(end)", i < w.size() ? w.get(i) : "(end)");
            }
        }
    }

    // ------------------------------------------------------------------ checks (scenarios)
    static final class Checks {
        int failures = 0;
        boolean check(String name, Runnable r) {
            long t0 = nowMs();
            try {
                r.run();
            } catch (CheckFailed e) {
                out("FAIL " + name + ": " + e.getMessage().replace('\n', ' '));
                failures++;
                return false;
            } catch (Exception e) {
                out("FAIL " + name + ": unexpected " + chain(e).replace('\n', ' '));
                e.printStackTrace();
                failures++;
                return false;
            }
            out("PASS " + name + " (" + (nowMs() - t0) + " ms)");
            return true;
        }
        /** Like check, but a failure stops the scenario (later checks depend on it). */
        void must(String name, Runnable r) {
            if (!check(name, r)) throw new ScenarioStopped();
        }
    }

    static final class ScenarioStopped extends RuntimeException {}

    /** Sends count records "prefix+i" to partition i % partitions inside the producer's current
     *  transaction; returns the futures. */
    static List<Future<RecordMetadata>> sendSeq(KafkaProducer<String, String> p, String topic, int partitions, String prefix,
                                                int count) {
        List<Future<RecordMetadata>> fs = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            fs.add(p.send(new ProducerRecord<>(topic, i % partitions, prefix + i, prefix + i)));
        }
        return fs;
    }

    /** (first, last) offset per partition of acknowledged sends (i % partitions). */
    static Map<Integer, long[]> offsetRanges(List<Future<RecordMetadata>> fs, String what) {
        Map<Integer, long[]> out = new TreeMap<>();
        for (Future<RecordMetadata> f : fs) {
            RecordMetadata m = awaitSend(f, what);
            long[] r = out.computeIfAbsent(m.partition(), k -> new long[] {Long.MAX_VALUE, -1});
            r[0] = Math.min(r[0], m.offset());
            r[1] = Math.max(r[1], m.offset());
        }
        return out;
    }

    // ---- 2. aborted transactions are invisible; the LSO
    static int abortScenario(Args a) {
        String topic = a.get("topic", "abort-t");
        String txnId = a.get("txn-id", "abort-txn");
        int parts = 3, n = 100;
        Checks cs = new Checks();
        try (Admin admin = admin()) {
            cs.must("abort.create-topic", () -> createTopic(admin, topic, parts));
            KafkaProducer<String, String> p = new KafkaProducer<>(txnProducerProps(txnId, 60_000));
            try {
                cs.must("abort.init-transactions", p::initTransactions);
                List<Map<Integer, long[]>> ranges = new ArrayList<>();
                cs.must("abort.commit-abort-commit", () -> {
                    String[] prefixes = {"c1-", "ab-", "c2-"};
                    for (int t = 0; t < 3; t++) {
                        p.beginTransaction();
                        List<Future<RecordMetadata>> fs = sendSeq(p, topic, parts, prefixes[t], n);
                        if (t == 1) {
                            p.flush(); // the aborted records are in the log, not only in the producer
                            ranges.add(offsetRanges(fs, "send " + prefixes[t]));
                            p.abortTransaction();
                        } else {
                            p.commitTransaction();
                            ranges.add(offsetRanges(fs, "send " + prefixes[t]));
                        }
                    }
                    // One control record (marker) per partition per transaction: each transaction
                    // starts right after the previous one's marker.
                    for (int q = 0; q < parts; q++) {
                        for (int t = 1; t < 3; t++) {
                            long prevLast = ranges.get(t - 1).get(q)[1], first = ranges.get(t).get(q)[0];
                            if (first != prevLast + 2)
                                fail("partition %d: transaction %d starts at offset %d, the previous one ended at %d "
                                    + "(want exactly one marker offset between them)", q, t + 1, first, prevLast);
                        }
                    }
                });
                Map<Integer, List<String>> wantCommitted = new TreeMap<>(), wantAll = new TreeMap<>();
                for (int q = 0; q < parts; q++) {
                    List<String> c = new ArrayList<>(seq("c1-", n, parts, q));
                    c.addAll(seq("c2-", n, parts, q));
                    wantCommitted.put(q, c);
                    List<String> all = new ArrayList<>(seq("c1-", n, parts, q));
                    all.addAll(seq("ab-", n, parts, q));
                    all.addAll(seq("c2-", n, parts, q));
                    wantAll.put(q, all);
                }
                cs.check("abort.read-committed", () -> {
                    List<ConsumerRecord<String, String>> recs = readAll(topic, parts, "read_committed", 30_000, null);
                    expectValues("read_committed", valuesByPartition(recs), parts, wantCommitted);
                    out("# read_committed: " + recs.size() + " records (c1 + c2, the aborted 100 skipped)");
                });
                cs.check("abort.read-uncommitted", () -> {
                    Map<Integer, Long> ends = new TreeMap<>();
                    List<ConsumerRecord<String, String>> recs = readAll(topic, parts, "read_uncommitted", 30_000, ends);
                    expectValues("read_uncommitted", valuesByPartition(recs), parts, wantAll);
                    for (int q = 0; q < parts; q++) {
                        long data = wantAll.get(q).size();
                        if (ends.get(q) != data + 3)
                            fail("partition %d: end offset %d, want %d (%d records + 3 markers)", q, ends.get(q), data + 3, data);
                    }
                    out("# read_uncommitted: " + recs.size() + " records, end offsets " + ends);
                });

                // The LSO while a transaction is open.
                Map<Integer, long[]> open = new TreeMap<>();
                cs.must("abort.open-transaction", () -> {
                    p.beginTransaction();
                    List<Future<RecordMetadata>> fs = sendSeq(p, topic, parts, "open-", 30);
                    p.flush();
                    open.putAll(offsetRanges(fs, "send open-"));
                    out("# open transaction: (first, last) offsets per partition "
                        + open.entrySet().stream().map(e -> e.getKey() + "=" + Arrays.toString(e.getValue())).toList());
                });
                cs.check("abort.lso-while-open", () -> {
                    Map<Integer, Long> rc = endOffsets(topic, parts, "read_committed");
                    Map<Integer, Long> ru = endOffsets(topic, parts, "read_uncommitted");
                    out("# while open: read_committed end offsets " + rc + ", read_uncommitted " + ru);
                    for (int q = 0; q < parts; q++) {
                        if (rc.get(q) != open.get(q)[0])
                            fail("partition %d: read_committed end offset %d, want the LSO = first offset of the open transaction %d",
                                q, rc.get(q), open.get(q)[0]);
                        if (ru.get(q) != open.get(q)[1] + 1)
                            fail("partition %d: read_uncommitted end offset %d, want the high watermark %d", q, ru.get(q),
                                open.get(q)[1] + 1);
                    }
                });
                cs.check("abort.seek-to-end-while-open", () -> {
                    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, "read_committed"))) {
                        List<TopicPartition> tps = partitionsOf(topic, parts);
                        c.assign(tps);
                        c.seekToEnd(tps);
                        for (TopicPartition tp : tps) {
                            long pos = c.position(tp, Duration.ofSeconds(15));
                            if (pos != open.get(tp.partition())[0])
                                fail("partition %d: read_committed seekToEnd position %d, want the LSO %d", tp.partition(), pos,
                                    open.get(tp.partition())[0]);
                        }
                    }
                });
                cs.check("abort.admin-list-offsets-while-open", () -> {
                    Map<TopicPartition, OffsetSpec> req = new HashMap<>();
                    for (TopicPartition tp : partitionsOf(topic, parts)) req.put(tp, OffsetSpec.latest());
                    Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> rc = await(
                        admin.listOffsets(req, new ListOffsetsOptions(IsolationLevel.READ_COMMITTED)).all(), "listOffsets read_committed");
                    Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ru = await(
                        admin.listOffsets(req, new ListOffsetsOptions(IsolationLevel.READ_UNCOMMITTED)).all(), "listOffsets read_uncommitted");
                    for (TopicPartition tp : req.keySet()) {
                        long[] r = open.get(tp.partition());
                        if (rc.get(tp).offset() != r[0])
                            fail("partition %d: Admin listOffsets(latest, READ_COMMITTED) = %d, want the LSO %d", tp.partition(),
                                rc.get(tp).offset(), r[0]);
                        if (ru.get(tp).offset() != r[1] + 1)
                            fail("partition %d: Admin listOffsets(latest, READ_UNCOMMITTED) = %d, want %d", tp.partition(),
                                ru.get(tp).offset(), r[1] + 1);
                    }
                });
                cs.check("abort.read-committed-while-open", () -> {
                    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, "read_committed"))) {
                        List<TopicPartition> tps = partitionsOf(topic, parts);
                        c.assign(tps);
                        c.seekToBeginning(tps);
                        int got = 0;
                        long end = nowMs() + 4000;
                        while (nowMs() < end) {
                            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                                if (r.value().startsWith("open-") || r.value().startsWith("ab-"))
                                    fail("read_committed returned %s (partition %d offset %d) while its transaction is %s",
                                        r.value(), r.partition(), r.offset(), r.value().startsWith("ab-") ? "aborted" : "open");
                                got++;
                            }
                        }
                        if (got != 2 * n) fail("read_committed returned %d records in 4 s, want the %d committed", got, 2 * n);
                    }
                });
                cs.check("abort.lso-after-commit", () -> {
                    p.commitTransaction();
                    Map<Integer, Long> rc = endOffsets(topic, parts, "read_committed");
                    Map<Integer, Long> ru = endOffsets(topic, parts, "read_uncommitted");
                    out("# after commit: read_committed end offsets " + rc + ", read_uncommitted " + ru);
                    for (int q = 0; q < parts; q++) {
                        long want = open.get(q)[1] + 2; // the records and the commit marker
                        if (rc.get(q) != want || ru.get(q) != want)
                            fail("partition %d: end offsets read_committed %d, read_uncommitted %d, want both %d", q, rc.get(q),
                                ru.get(q), want);
                    }
                });
                cs.check("abort.read-committed-after-commit", () -> {
                    Map<Integer, List<String>> want = new TreeMap<>();
                    for (int q = 0; q < parts; q++) {
                        List<String> l = new ArrayList<>(wantCommitted.get(q));
                        l.addAll(seq("open-", 30, parts, q));
                        want.put(q, l);
                    }
                    expectValues("read_committed", valuesByPartition(readAll(topic, parts, "read_committed", 30_000, null)), parts,
                        want);
                });
            } catch (ScenarioStopped e) {
                // reported
            } finally {
                p.close(Duration.ofSeconds(5));
            }
        } catch (ScenarioStopped e) {
            // reported
        }
        return cs.failures == 0 ? 0 : 1;
    }

    // ---- 3. fencing: a second producer with the same transactional.id
    static int fenceScenario(Args a) {
        String topic = a.get("topic", "fence-t");
        String txnId = a.get("txn-id", "fence-txn");
        int parts = 1;
        Checks cs = new Checks();
        try (Admin admin = admin()) {
            cs.must("fence.create-topic", () -> createTopic(admin, topic, parts));
            KafkaProducer<String, String> pa = new KafkaProducer<>(txnProducerProps(txnId, 60_000));
            KafkaProducer<String, String> pb = null;
            try {
                cs.must("fence.a-open-transaction", () -> {
                    pa.initTransactions();
                    pa.beginTransaction();
                    List<Future<RecordMetadata>> fs = sendSeq(pa, topic, parts, "A-", 10);
                    pa.flush();
                    out("# A's open transaction: offsets " + Arrays.toString(offsetRanges(fs, "A send").get(0)));
                });
                KafkaProducer<String, String> b = new KafkaProducer<>(txnProducerProps(txnId, 60_000));
                pb = b;
                cs.must("fence.b-init-transactions", () -> {
                    long t0 = nowMs();
                    b.initTransactions();
                    out("# B's initTransactions took " + (nowMs() - t0) + " ms (the coordinator aborts A's transaction first)");
                });
                cs.check("fence.a-fenced", () -> {
                    Throwable sendErr = null, commitErr = null;
                    try {
                        pa.send(new ProducerRecord<>(topic, 0, "A-late", "A-late")).get(20, TimeUnit.SECONDS);
                    } catch (ExecutionException e) {
                        sendErr = e.getCause();
                    } catch (Exception e) {
                        sendErr = e;
                    }
                    try {
                        pa.commitTransaction();
                    } catch (Exception e) {
                        commitErr = e;
                    }
                    out("# A's send after B's init: " + (sendErr == null ? "acknowledged" : chain(sendErr)));
                    out("# A's commitTransaction: " + (commitErr == null ? "succeeded" : chain(commitErr)));
                    if (sendErr == null) fail("A's send after being fenced was acknowledged (want a fencing error)");
                    if (!isFencing(sendErr))
                        fail("A's send failed with %s, want ProducerFencedException or InvalidProducerEpochException", chain(sendErr));
                    if (commitErr == null) fail("A's commitTransaction succeeded after B's initTransactions");
                    if (!isFencing(commitErr))
                        fail("A's commitTransaction failed with %s, want ProducerFencedException or InvalidProducerEpochException",
                            chain(commitErr));
                });
                cs.check("fence.b-commits", () -> {
                    b.beginTransaction();
                    List<Future<RecordMetadata>> fs = sendSeq(b, topic, parts, "B-", 10);
                    b.commitTransaction();
                    offsetRanges(fs, "B send");
                });
                cs.check("fence.read-committed", () -> {
                    Map<Integer, List<String>> got = valuesByPartition(readAll(topic, parts, "read_committed", 30_000, null));
                    expectValues("read_committed", got, parts, Map.of(0, seq("B-", 10, 1, 0)));
                });
                cs.check("fence.read-uncommitted", () -> {
                    Map<Integer, List<String>> got = valuesByPartition(readAll(topic, parts, "read_uncommitted", 30_000, null));
                    List<String> want = new ArrayList<>(seq("A-", 10, 1, 0));
                    want.addAll(seq("B-", 10, 1, 0));
                    expectValues("read_uncommitted (A's aborted records, never A-late, then B's)", got, parts, Map.of(0, want));
                });
            } catch (ScenarioStopped e) {
                // reported
            } finally {
                pa.close(Duration.ofSeconds(5));
                if (pb != null) pb.close(Duration.ofSeconds(5));
            }
        } catch (ScenarioStopped e) {
            // reported
        }
        return cs.failures == 0 ? 0 : 1;
    }

    // ---- 4. transaction timeout: the broker aborts, the LSO moves on
    static int timeoutScenario(Args a) {
        String topic = a.get("topic", "timeout-t");
        String txnId = a.get("txn-id", "timeout-txn");
        int txnTimeout = a.getInt("timeout-ms", 3000);
        long visibleWithinMs = a.getLong("visible-within-ms", 30_000);
        int parts = 1;
        Checks cs = new Checks();
        try (Admin admin = admin()) {
            cs.must("timeout.create-topic", () -> createTopic(admin, topic, parts));
            KafkaProducer<String, String> stuck = new KafkaProducer<>(txnProducerProps(txnId, txnTimeout));
            KafkaProducer<String, String> other = new KafkaProducer<>(idempotentProducerProps("timeout-other"));
            long[] t0 = {0};
            long[] stuckFirst = {-1};
            try {
                cs.must("timeout.open-transaction", () -> {
                    stuck.initTransactions();
                    stuck.beginTransaction();
                    t0[0] = nowMs();
                    List<Future<RecordMetadata>> fs = sendSeq(stuck, topic, parts, "stuck-", 5);
                    stuck.flush();
                    stuckFirst[0] = offsetRanges(fs, "stuck send").get(0)[0];
                    List<Future<RecordMetadata>> later = sendSeq(other, topic, parts, "later-", 5);
                    other.flush();
                    out("# stuck transaction from offset " + stuckFirst[0] + ", later (non-transactional) records at "
                        + Arrays.toString(offsetRanges(later, "later send").get(0)));
                });
                cs.check("timeout.lso-blocked-while-open", () -> {
                    long rc = endOffsets(topic, parts, "read_committed").get(0);
                    long elapsed = nowMs() - t0[0];
                    if (elapsed >= txnTimeout) {
                        out("# checked " + elapsed + " ms after the transaction began (after its timeout): not asserted");
                        return;
                    }
                    if (rc != stuckFirst[0])
                        fail("read_committed end offset %d while the transaction is open, want its first offset %d", rc, stuckFirst[0]);
                });
                cs.check("timeout.visible-after-abort", () -> {
                    List<String> got = new ArrayList<>();
                    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(consumerProps(null, "read_committed"))) {
                        TopicPartition tp = new TopicPartition(topic, 0);
                        c.assign(List.of(tp));
                        c.seekToBeginning(List.of(tp));
                        while (got.size() < 5) {
                            if (nowMs() - t0[0] > visibleWithinMs)
                                fail("read_committed consumer got %s %d ms after the transaction began (timeout %d ms): the LSO did "
                                    + "not move past the timed-out transaction", got, nowMs() - t0[0], txnTimeout);
                            for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                                if (r.value().startsWith("stuck-"))
                                    fail("read_committed returned %s at offset %d (its transaction was never committed)", r.value(),
                                        r.offset());
                                got.add(r.value());
                            }
                        }
                    }
                    out("# the later records became visible to read_committed " + (nowMs() - t0[0])
                        + " ms after the stuck transaction began (transaction.timeout.ms=" + txnTimeout + ")");
                    if (!got.equals(seq("later-", 5, 1, 0))) fail("read_committed got %s, want later-0..4", got);
                });
                cs.check("timeout.stuck-commit-fails", () -> {
                    long wait = 6000 - (nowMs() - t0[0]);
                    if (wait > 0) sleep(wait); // the stuck producer sleeps 6 s in all
                    Throwable err = null;
                    try {
                        stuck.commitTransaction();
                    } catch (Exception e) {
                        err = e;
                    }
                    out("# the stuck producer's commitTransaction " + (nowMs() - t0[0]) + " ms after begin: "
                        + (err == null ? "succeeded" : chain(err)));
                    if (err == null) fail("commitTransaction succeeded after the coordinator should have aborted the transaction");
                });
                cs.check("timeout.read-uncommitted", () -> {
                    List<String> want = new ArrayList<>(seq("stuck-", 5, 1, 0));
                    want.addAll(seq("later-", 5, 1, 0));
                    expectValues("read_uncommitted", valuesByPartition(readAll(topic, parts, "read_uncommitted", 30_000, null)),
                        parts, Map.of(0, want));
                });
                cs.check("timeout.same-id-again", () -> {
                    try (KafkaProducer<String, String> fresh = new KafkaProducer<>(txnProducerProps(txnId, 60_000))) {
                        fresh.initTransactions();
                        fresh.beginTransaction();
                        sendSeq(fresh, topic, parts, "fresh-", 3);
                        fresh.commitTransaction();
                    }
                    List<String> want = new ArrayList<>(seq("later-", 5, 1, 0));
                    want.addAll(seq("fresh-", 3, 1, 0));
                    expectValues("read_committed", valuesByPartition(readAll(topic, parts, "read_committed", 30_000, null)),
                        parts, Map.of(0, want));
                });
            } catch (ScenarioStopped e) {
                // reported
            } finally {
                stuck.close(Duration.ofSeconds(2));
                other.close(Duration.ofSeconds(5));
            }
        } catch (ScenarioStopped e) {
            // reported
        }
        return cs.failures == 0 ? 0 : 1;
    }

    // ---- 5. Admin: listTransactions, describeTransactions, describeProducers
    static int adminScenario(Args a) {
        // --expect "id=STATE,id=STATE": transactional ids earlier scenarios left, with their states.
        Map<String, TransactionState> expect = new LinkedHashMap<>();
        for (String kv : a.get("expect", "").split(",")) {
            if (kv.isEmpty()) continue;
            String[] p = kv.split("=");
            expect.put(p[0], TransactionState.valueOf(p[1]));
        }
        String abortTopic = a.get("abort-topic", "abort-t");
        String abortTxn = a.get("abort-txn-id", "abort-txn");
        String fenceTxn = a.get("fence-txn-id", "fence-txn");
        String fenceTopic = a.get("fence-topic", "fence-t");
        Checks cs = new Checks();
        try (Admin admin = admin()) {
            Map<String, TransactionListing> listed = new HashMap<>();
            cs.check("admin.list-transactions", () -> {
                for (TransactionListing l : await(admin.listTransactions().all(), "listTransactions")) {
                    listed.put(l.transactionalId(), l);
                    out("# listed " + l.transactionalId() + " producerId=" + l.producerId() + " state=" + l.state());
                }
                for (Map.Entry<String, TransactionState> e : expect.entrySet()) {
                    TransactionListing l = listed.get(e.getKey());
                    if (l == null) fail("listTransactions does not list %s (listed: %s)", e.getKey(), listed.keySet());
                    if (l.state() != e.getValue()) fail("%s is listed in state %s, want %s", e.getKey(), l.state(), e.getValue());
                }
            });
            cs.check("admin.describe-transactions", () -> {
                TransactionDescription d = await(admin.describeTransactions(List.of(fenceTxn)).description(fenceTxn),
                    "describeTransactions " + fenceTxn);
                out("# describeTransactions " + fenceTxn + ": " + d);
                TransactionListing l = listed.get(fenceTxn);
                if (l != null && d.producerId() != l.producerId())
                    fail("producerId %d, listTransactions said %d", d.producerId(), l.producerId());
                if (d.state() != TransactionState.COMPLETE_COMMIT) fail("state %s, want COMPLETE_COMMIT", d.state());
                if (d.producerEpoch() < 1) fail("producer epoch %d: a fenced id's epoch was bumped at least once", d.producerEpoch());
                if (d.transactionTimeoutMs() != 60_000) fail("transaction timeout %d ms, want 60000", d.transactionTimeoutMs());
                if (!d.topicPartitions().isEmpty())
                    fail("topic partitions %s after the commit completed, want none (Kafka clears them)", d.topicPartitions());
                if (d.coordinatorId() < 0) fail("coordinator id %d", d.coordinatorId());
                // describeProducers on the partition it wrote: the same id and epoch.
                TopicPartition tp = new TopicPartition(fenceTopic, 0);
                DescribeProducersResult.PartitionProducerState ps = await(admin.describeProducers(List.of(tp)).partitionResult(tp), "describeProducers " + tp);
                ProducerState match = ps.activeProducers().stream().filter(s -> s.producerId() == d.producerId()).findFirst()
                    .orElse(null);
                if (match == null) fail("describeProducers %s does not list producer %d: %s", tp, d.producerId(), ps.activeProducers());
                if (match.producerEpoch() != d.producerEpoch())
                    fail("describeProducers %s: producer %d epoch %d, describeTransactions says %d", tp, d.producerId(),
                        match.producerEpoch(), d.producerEpoch());
                if (match.currentTransactionStartOffset().isPresent())
                    fail("describeProducers %s: producer %d has a current transaction at %d after its commit", tp, d.producerId(),
                        match.currentTransactionStartOffset().getAsLong());
            });
            cs.check("admin.describe-producers", () -> {
                TransactionListing l = listed.get(abortTxn);
                if (l == null) fail("%s not listed", abortTxn);
                List<TopicPartition> tps = partitionsOf(abortTopic, partitionCount(admin, abortTopic));
                Map<TopicPartition, DescribeProducersResult.PartitionProducerState> all = await(admin.describeProducers(tps).all(), "describeProducers");
                for (TopicPartition tp : tps) {
                    List<ProducerState> st = all.get(tp).activeProducers();
                    out("# describeProducers " + tp + ": " + st);
                    ProducerState s = st.stream().filter(x -> x.producerId() == l.producerId()).findFirst().orElse(null);
                    if (s == null) fail("%s: %s's producer id %d not among %s", tp, abortTxn, l.producerId(), st);
                    if (s.lastSequence() < 0) fail("%s: producer %d last sequence %d", tp, s.producerId(), s.lastSequence());
                    if (s.currentTransactionStartOffset().isPresent())
                        fail("%s: producer %d has a current transaction at %d, all of its transactions ended", tp, s.producerId(),
                            s.currentTransactionStartOffset().getAsLong());
                }
            });
            // An ongoing transaction, as the three APIs see it.
            String txnId = "admin-txn";
            try (KafkaProducer<String, String> p = new KafkaProducer<>(txnProducerProps(txnId, 45_000))) {
                Map<Integer, long[]> open = new TreeMap<>();
                long[] pid = {-1};
                cs.must("admin.open-transaction", () -> {
                    p.initTransactions();
                    p.beginTransaction();
                    List<Future<RecordMetadata>> fs = sendSeq(p, abortTopic, 3, "admin-", 3);
                    p.flush();
                    open.putAll(offsetRanges(fs, "send admin-"));
                });
                cs.check("admin.ongoing-listed", () -> {
                    Collection<TransactionListing> ongoing = await(admin.listTransactions(
                        new ListTransactionsOptions().filterStates(List.of(TransactionState.ONGOING))).all(), "listTransactions(ONGOING)");
                    out("# listTransactions(filterStates ONGOING): " + ongoing);
                    TransactionListing l = ongoing.stream().filter(x -> x.transactionalId().equals(txnId)).findFirst().orElse(null);
                    if (l == null) fail("%s not listed as ONGOING: %s", txnId, ongoing);
                    pid[0] = l.producerId();
                    for (TransactionListing x : ongoing)
                        if (x.state() != TransactionState.ONGOING) fail("filterStates(ONGOING) returned %s", x);
                    if (ongoing.stream().anyMatch(x -> x.transactionalId().equals(fenceTxn)))
                        fail("filterStates(ONGOING) returned %s, which is complete", fenceTxn);
                    Collection<TransactionListing> byPid = await(admin.listTransactions(
                        new ListTransactionsOptions().filterProducerIds(List.of(pid[0]))).all(), "listTransactions(producerId)");
                    if (byPid.size() != 1 || !byPid.iterator().next().transactionalId().equals(txnId))
                        fail("filterProducerIds([%d]) returned %s, want only %s", pid[0], byPid, txnId);
                });
                cs.check("admin.ongoing-described", () -> {
                    TransactionDescription d = await(admin.describeTransactions(List.of(txnId)).description(txnId),
                        "describeTransactions " + txnId);
                    out("# describeTransactions " + txnId + ": " + d);
                    if (d.state() != TransactionState.ONGOING) fail("state %s, want ONGOING", d.state());
                    Set<TopicPartition> want = new HashSet<>(partitionsOf(abortTopic, 3));
                    if (!d.topicPartitions().equals(want)) fail("topic partitions %s, want %s", d.topicPartitions(), want);
                    if (d.transactionTimeoutMs() != 45_000) fail("transaction timeout %d, want 45000", d.transactionTimeoutMs());
                    if (d.transactionStartTimeMs().isEmpty()) fail("no transaction start time for an ongoing transaction");
                    long age = System.currentTimeMillis() - d.transactionStartTimeMs().getAsLong();
                    if (age < 0 || age > 60_000) fail("transaction start time %d is %d ms from now", d.transactionStartTimeMs().getAsLong(), age);
                    if (pid[0] >= 0 && d.producerId() != pid[0]) fail("producer id %d, listTransactions said %d", d.producerId(), pid[0]);
                });
                cs.check("admin.ongoing-producer-state", () -> {
                    List<TopicPartition> tps = partitionsOf(abortTopic, 3);
                    Map<TopicPartition, DescribeProducersResult.PartitionProducerState> all = await(admin.describeProducers(tps).all(), "describeProducers");
                    for (TopicPartition tp : tps) {
                        ProducerState s = all.get(tp).activeProducers().stream()
                            .filter(x -> pid[0] < 0 || x.producerId() == pid[0]).filter(x -> x.currentTransactionStartOffset().isPresent())
                            .findFirst().orElse(null);
                        if (s == null) fail("%s: no producer with an open transaction: %s", tp, all.get(tp).activeProducers());
                        long want = open.get(tp.partition())[0];
                        if (s.currentTransactionStartOffset().getAsLong() != want)
                            fail("%s: currentTransactionStartOffset %d, want %d", tp, s.currentTransactionStartOffset().getAsLong(), want);
                    }
                });
                cs.check("admin.aborted-described", () -> {
                    p.abortTransaction();
                    TransactionDescription d = await(admin.describeTransactions(List.of(txnId)).description(txnId),
                        "describeTransactions " + txnId);
                    if (d.state() != TransactionState.COMPLETE_ABORT) fail("state %s after abortTransaction, want COMPLETE_ABORT", d.state());
                    TopicPartition tp = new TopicPartition(abortTopic, 0);
                    DescribeProducersResult.PartitionProducerState ps = await(admin.describeProducers(List.of(tp)).partitionResult(tp), "describeProducers");
                    for (ProducerState s : ps.activeProducers())
                        if (s.producerId() == d.producerId() && s.currentTransactionStartOffset().isPresent())
                            fail("%s: producer %d still has a current transaction at %d after the abort", tp, s.producerId(),
                                s.currentTransactionStartOffset().getAsLong());
                });
            }
            cs.check("admin.describe-unknown-id", () -> {
                try {
                    admin.describeTransactions(List.of("no-such-txn")).description("no-such-txn").get(20, TimeUnit.SECONDS);
                    fail("describeTransactions of an unknown transactional id succeeded");
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TransactionalIdNotFoundException))
                        fail("describeTransactions(no-such-txn) failed with %s, want TransactionalIdNotFoundException",
                            chain(e.getCause()));
                } catch (Exception e) {
                    fail("describeTransactions(no-such-txn): %s", chain(e));
                }
            });
        } catch (ScenarioStopped e) {
            // reported
        }
        return cs.failures == 0 ? 0 : 1;
    }

    // ------------------------------------------------------------------ building blocks
    static int cmdCreateTopic(Args a) {
        try (Admin admin = admin()) {
            createTopic(admin, a.need("topic"), a.getInt("partitions", 1));
        }
        out("CREATED");
        return 0;
    }

    static int cmdProduceSeq(Args a) {
        String topic = a.need("topic");
        int parts = a.getInt("partitions", 1);
        int count = a.getInt("count", 1000);
        long[] ends = new long[parts];
        Arrays.fill(ends, -1);
        String[] err = {null};
        CountDownLatch left = new CountDownLatch(count);
        try (KafkaProducer<String, String> p = new KafkaProducer<>(idempotentProducerProps("produce-seq"))) {
            for (int i = 0; i < count; i++) {
                String s = Integer.toString(i);
                p.send(new ProducerRecord<>(topic, i % parts, s, s), (m, e) -> {
                    if (e != null) err[0] = describe(e);
                    else synchronized (ends) { ends[m.partition()] = Math.max(ends[m.partition()], m.offset() + 1); }
                    left.countDown();
                });
            }
            p.flush();
            try {
                if (!left.await(60, TimeUnit.SECONDS)) fail("%d sends not acknowledged after 60 s", left.getCount());
            } catch (InterruptedException e) {
                fail("interrupted");
            }
        }
        if (err[0] != null) fail("send failed: %s", err[0]);
        for (int q = 0; q < parts; q++) out("END " + q + " " + ends[q]);
        return 0;
    }

    static int cmdProduceAcks(Args a) {
        String topic = a.need("topic");
        int parts = a.getInt("partitions", 1);
        String prefix = a.get("prefix", "");
        Path stop = Paths.get(a.need("stop-file"));
        long intervalNs = a.getLong("interval-us", 2000) * 1000L;
        long maxRunMs = a.getLong("max-run-ms", 60_000);
        // Per record index: partition, offset, ms since the first send (the callback's thread writes).
        Map<Integer, long[]> acks = new ConcurrentHashMap<>();
        Map<Integer, String> errs = new ConcurrentHashMap<>();
        int n = 0;
        try (KafkaProducer<String, String> p = new KafkaProducer<>(idempotentProducerProps("produce-acks-" + prefix))) {
            long t0 = System.nanoTime(), deadline = nowMs() + maxRunMs, next = t0;
            boolean started = false;
            while (nowMs() < deadline) {
                if (!started && !acks.isEmpty()) {
                    started = true;
                    out("STARTED");
                }
                if ((n & 63) == 0 && Files.exists(stop)) break;
                long now = System.nanoTime();
                if (now < next) {
                    java.util.concurrent.locks.LockSupport.parkNanos(next - now);
                    continue;
                }
                // Paced, without a burst after a blocked send.
                next = Math.max(next + intervalNs, now - 100_000_000L);
                final int i = n++;
                String s = prefix + i;
                p.send(new ProducerRecord<>(topic, i % parts, s, s), (m, e) -> {
                    if (e != null) errs.put(i, chain(e));
                    else acks.put(i, new long[] {m.partition(), m.offset(), (System.nanoTime() - t0) / 1_000_000L});
                });
            }
            p.flush();
        }
        StringBuilder sb = new StringBuilder(n * 24);
        for (int i = 0; i < n; i++) {
            long[] r = acks.get(i);
            if (r != null) sb.append("ACK ").append(i).append(' ').append(r[0]).append(' ').append(r[1]).append(' ').append(r[2]).append('\n');
            else sb.append("ERR ").append(i).append(' ').append(errs.getOrDefault(i, "no callback")).append('\n');
        }
        sb.append("SENT ").append(n).append('\n');
        System.out.print(sb);
        System.out.flush();
        return 0;
    }

    static int cmdRead(Args a) {
        String topic = a.need("topic");
        String iso = a.get("isolation", "read_committed");
        int parts;
        try (Admin admin = admin()) {
            parts = partitionCount(admin, topic);
        }
        Map<Integer, Long> ends = new TreeMap<>();
        List<ConsumerRecord<String, String>> recs = readAll(topic, parts, iso, a.getLong("timeout-ms", 60_000), ends);
        StringBuilder sb = new StringBuilder(recs.size() * 24);
        for (ConsumerRecord<String, String> r : recs)
            sb.append("R ").append(r.partition()).append(' ').append(r.offset()).append(' ').append(r.key()).append(' ')
                .append(r.value()).append('\n');
        for (Map.Entry<Integer, Long> e : ends.entrySet()) sb.append("END ").append(e.getKey()).append(' ').append(e.getValue()).append('\n');
        System.out.print(sb);
        System.out.flush();
        return 0;
    }

    static int cmdOffsets(Args a) {
        String topic = a.need("topic");
        String group = a.get("group", null);
        try (Admin admin = admin()) {
            int parts = partitionCount(admin, topic);
            for (String iso : List.of("read_committed", "read_uncommitted"))
                endOffsets(topic, parts, iso).forEach((q, o) -> out("END " + iso + " " + q + " " + o));
            if (group != null) {
                Map<TopicPartition, OffsetAndMetadata> m = await(
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(), "listConsumerGroupOffsets " + group);
                for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet())
                    if (e.getKey().topic().equals(topic) && e.getValue() != null)
                        out("COMMITTED " + e.getKey().partition() + " " + e.getValue().offset());
            }
        }
        return 0;
    }

    static int cmdListTxns(Args a) {
        try (Admin admin = admin()) {
            for (TransactionListing l : await(admin.listTransactions().all(), "listTransactions"))
                out("TXN " + l.transactionalId() + " " + l.producerId() + " " + l.state().name());
        }
        return 0;
    }

    /** Admin.describeMetadataQuorum (DescribeQuorum, forwarded by the broker to the quorum's
     *  leader): one QUORUM line, then a VOTER or OBSERVER line per replica. */
    static int cmdDescribeQuorum(Args a) {
        try (Admin admin = admin()) {
            QuorumInfo q = await(admin.describeMetadataQuorum().quorumInfo(), "describeMetadataQuorum");
            out("QUORUM leader=" + q.leaderId() + " epoch=" + q.leaderEpoch() + " hw=" + q.highWatermark());
            for (QuorumInfo.ReplicaState r : q.voters())
                out("VOTER " + r.replicaId() + " " + r.logEndOffset() + " " + r.lastCaughtUpTimestamp().orElse(-1));
            for (QuorumInfo.ReplicaState r : q.observers())
                out("OBSERVER " + r.replicaId() + " " + r.logEndOffset() + " " + r.lastCaughtUpTimestamp().orElse(-1));
        }
        return 0;
    }

    static int cmdElectLeaders(Args a) {
        String topic = a.need("topic");
        ElectionType type = a.get("type", "preferred").equals("unclean") ? ElectionType.UNCLEAN : ElectionType.PREFERRED;
        Set<TopicPartition> tps = new HashSet<>();
        for (String p : a.need("partitions").split(","))
            tps.add(new TopicPartition(topic, Integer.parseInt(p.trim())));
        try (Admin admin = admin()) {
            Map<TopicPartition, Optional<Throwable>> result =
                await(admin.electLeaders(type, tps).partitions(), "electLeaders");
            for (Map.Entry<TopicPartition, Optional<Throwable>> e : result.entrySet())
                out("ELECT " + e.getKey().partition() + " "
                    + e.getValue().map(t -> t.getClass().getSimpleName()).orElse("NONE"));
        }
        return 0;
    }

    static String ids(List<Integer> l) {
        StringBuilder b = new StringBuilder();
        for (Integer i : l) b.append(b.length() == 0 ? "" : ",").append(i);
        return b.toString();
    }

    static int cmdReassign(Args a) {
        TopicPartition tp = new TopicPartition(a.need("topic"), a.getInt("partition", 0));
        Optional<NewPartitionReassignment> target = Optional.empty();
        if (a.get("cancel", null) == null) {
            List<Integer> replicas = new ArrayList<>();
            for (String r : a.need("replicas").split(",")) replicas.add(Integer.parseInt(r.trim()));
            target = Optional.of(new NewPartitionReassignment(replicas));
        }
        AlterPartitionReassignmentsOptions options = new AlterPartitionReassignmentsOptions()
            .allowReplicationFactorChange(a.get("no-rf-change", null) == null);
        try (Admin admin = admin()) {
            Map<TopicPartition, KafkaFuture<Void>> fs =
                admin.alterPartitionReassignments(Collections.singletonMap(tp, target), options).values();
            String outcome = "NONE";
            try {
                fs.get(tp).get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            } catch (ExecutionException e) {
                outcome = e.getCause().getClass().getSimpleName();
            } catch (Exception e) {
                outcome = e.getClass().getSimpleName();
            }
            out("REASSIGN " + tp.partition() + " " + outcome);
        }
        return 0;
    }

    static int cmdListReassignments(Args a) {
        String topic = a.need("topic");
        try (Admin admin = admin()) {
            Map<TopicPartition, PartitionReassignment> all =
                await(admin.listPartitionReassignments().reassignments(), "listPartitionReassignments");
            int n = 0;
            for (Map.Entry<TopicPartition, PartitionReassignment> e : all.entrySet()) {
                if (!e.getKey().topic().equals(topic)) continue;
                PartitionReassignment r = e.getValue();
                out("REASSIGNING " + e.getKey().partition() + " replicas=" + ids(r.replicas())
                    + " adding=" + ids(r.addingReplicas()) + " removing=" + ids(r.removingReplicas()));
                n++;
            }
            out("LISTED " + n);
        }
        return 0;
    }

    static int cmdUnregisterBroker(Args a) {
        int id = a.getInt("id", -1);
        try (Admin admin = admin()) {
            String outcome = "NONE";
            try {
                admin.unregisterBroker(id).all().get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            } catch (ExecutionException e) {
                outcome = e.getCause().getClass().getSimpleName();
            } catch (Exception e) {
                outcome = e.getClass().getSimpleName();
            }
            out("UNREGISTER " + id + " " + outcome);
        }
        return 0;
    }

    /** "NONE", or the failure's class and message (one line). */
    static String outcomeOf(KafkaFuture<Void> f) {
        try {
            f.get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            return "NONE";
        } catch (ExecutionException e) {
            return e.getCause().getClass().getSimpleName() + " " + String.valueOf(e.getCause().getMessage()).replace('\n', ' ');
        } catch (Exception e) {
            return e.getClass().getSimpleName() + " " + String.valueOf(e.getMessage()).replace('\n', ' ');
        }
    }

    static int cmdAddRaftVoter(Args a) {
        int id = a.getInt("id", -1);
        Set<RaftVoterEndpoint> endpoints = Collections.singleton(
            new RaftVoterEndpoint("CONTROLLER", a.need("host"), a.getInt("port", -1)));
        try (Admin admin = admin()) {
            out("ADD_VOTER " + id + " " + outcomeOf(admin.addRaftVoter(id, Uuid.randomUuid(), endpoints).all()));
        }
        return 0;
    }

    static int cmdRemoveRaftVoter(Args a) {
        int id = a.getInt("id", -1);
        try (Admin admin = admin()) {
            out("REMOVE_VOTER " + id + " " + outcomeOf(admin.removeRaftVoter(id, Uuid.randomUuid()).all()));
        }
        return 0;
    }

    static int cmdDescribeTopics(Args a) {
        List<String> topics = Arrays.asList(a.need("topics").split(","));
        DescribeTopicsOptions options = new DescribeTopicsOptions().partitionSizeLimitPerResponse(a.getInt("page", 2000));
        try (Admin admin = admin()) {
            Map<String, TopicDescription> all = await(admin.describeTopics(topics, options).allTopicNames(), "describeTopics");
            for (String t : topics) {
                for (TopicPartitionInfo p : all.get(t).partitions()) {
                    List<Integer> replicas = new ArrayList<>(), isr = new ArrayList<>();
                    for (Node n : p.replicas()) replicas.add(n.id());
                    for (Node n : p.isr()) isr.add(n.id());
                    out("PARTITION " + t + " " + p.partition() + " leader=" + (p.leader() == null ? -1 : p.leader().id())
                        + " replicas=" + ids(replicas) + " isr=" + ids(isr));
                }
            }
        }
        return 0;
    }

    static void waitForFile(String path, long maxMs) {
        if (path == null) {
            sleep(maxMs);
            System.exit(4);
        }
        Path f = Paths.get(path);
        long end = nowMs() + maxMs;
        while (!Files.exists(f)) {
            if (nowMs() > end) {
                out("# hold not released within " + maxMs + " ms");
                System.exit(4);
            }
            sleep(50);
        }
    }

    static int cmdOpenTxn(Args a) {
        String topic = a.need("topic");
        int count = a.getInt("count", 30);
        String prefix = a.get("prefix", "open-");
        int parts;
        try (Admin admin = admin()) {
            parts = partitionCount(admin, topic);
        }
        KafkaProducer<String, String> p = new KafkaProducer<>(txnProducerProps(a.need("txn-id"), a.getInt("timeout-ms", 60_000)));
        p.initTransactions();
        p.beginTransaction();
        List<Future<RecordMetadata>> fs = sendSeq(p, topic, parts, prefix, count);
        p.flush();
        for (Map.Entry<Integer, long[]> e : offsetRanges(fs, "send").entrySet())
            out("OPEN " + e.getKey() + " " + e.getValue()[0] + " " + e.getValue()[1]);
        out("HOLDING");
        waitForFile(a.get("release-file", null), a.getLong("max-hold-ms", 120_000));
        out("RELEASED");
        long t0 = nowMs();
        try {
            p.commitTransaction();
        } catch (Exception e) {
            out("COMMIT-FAILED " + chain(e));
            p.close(Duration.ofSeconds(2));
            return 1;
        }
        out("COMMITTED " + (nowMs() - t0) + " ms");
        p.close(Duration.ofSeconds(5));
        return 0;
    }

    static int cmdTxnProduce(Args a) {
        String topic = a.need("topic");
        int count = a.getInt("count", 30);
        String prefix = a.get("prefix", "txn-");
        int parts;
        try (Admin admin = admin()) {
            parts = partitionCount(admin, topic);
        }
        try (KafkaProducer<String, String> p = new KafkaProducer<>(txnProducerProps(a.need("txn-id"), a.getInt("timeout-ms", 60_000)))) {
            long t0 = nowMs();
            try {
                p.initTransactions();
            } catch (Exception e) {
                fail("initTransactions failed after %d ms: %s", nowMs() - t0, chain(e));
            }
            out("INIT " + (nowMs() - t0) + " ms");
            p.beginTransaction();
            List<Future<RecordMetadata>> fs = sendSeq(p, topic, parts, prefix, count);
            if (a.opts.containsKey("abort")) {
                p.flush();
                p.abortTransaction();
            } else {
                p.commitTransaction();
            }
            for (Map.Entry<Integer, long[]> e : offsetRanges(fs, "send").entrySet())
                out("SENT " + e.getKey() + " " + e.getValue()[0] + " " + e.getValue()[1]);
        }
        out("DONE");
        return 0;
    }

    // ---- 1. the consume-transform-produce loop
    static long sum(Map<TopicPartition, Long> m) {
        long s = 0;
        for (long v : m.values()) s += v;
        return s;
    }

    /** Kafka's documented handling: a retriable commit timeout is retried (the commit may have
     *  happened); anything else propagates. */
    static void commitWithRetry(KafkaProducer<String, String> p) {
        for (int i = 0; ; i++) {
            try {
                p.commitTransaction();
                return;
            } catch (org.apache.kafka.common.errors.TimeoutException e) {
                if (i >= 4) throw e;
                out("COMMIT-RETRY " + describe(e));
            }
        }
    }

    static void abortWithRetry(KafkaProducer<String, String> p) {
        for (int i = 0; ; i++) {
            try {
                p.abortTransaction();
                return;
            } catch (org.apache.kafka.common.errors.TimeoutException e) {
                if (i >= 4) throw e;
                out("ABORT-RETRY " + describe(e));
            }
        }
    }

    static int cmdEosLoop(Args a) {
        String in = a.need("in"), outTopic = a.need("out"), group = a.need("group"), txnId = a.need("txn-id");
        int timeoutMs = a.getInt("timeout-ms", 10_000);
        long expect = a.getLong("expect", -1);
        int expectParts = a.getInt("partitions", 6);
        long holdAt = a.getLong("hold-at", -1);
        String release = a.get("release-file", null);
        long pauseMs = a.getLong("pause-after-hold-ms", 0);
        long maxRunMs = a.getLong("max-run-ms", 200_000);

        KafkaProducer<String, String> producer = new KafkaProducer<>(txnProducerProps(txnId, timeoutMs));
        long t0 = nowMs();
        try {
            producer.initTransactions();
        } catch (Exception e) {
            out("FATAL initTransactions after " + (nowMs() - t0) + " ms: " + chain(e));
            return 3;
        }
        out("INIT " + (nowMs() - t0) + " ms");

        Properties cp = consumerProps(group, "read_committed");
        cp.put(ConsumerConfig.CLIENT_ID_CONFIG, "eos-loop");
        cp.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "6000");
        cp.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
        cp.put(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG, "60000");
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "500");
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp);
        // What this process knows is committed (input offsets, = input records processed).
        Map<TopicPartition, Long> committed = new HashMap<>();
        consumer.subscribe(List.of(in), new ConsumerRebalanceListener() {
            @Override public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                for (TopicPartition tp : ps) committed.remove(tp);
            }
            @Override public void onPartitionsLost(Collection<TopicPartition> ps) {
                for (TopicPartition tp : ps) committed.remove(tp);
            }
            @Override public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                Map<TopicPartition, OffsetAndMetadata> c = consumer.committed(new HashSet<>(ps));
                for (TopicPartition tp : ps) committed.put(tp, c.get(tp) == null ? 0L : c.get(tp).offset());
                out("ASSIGNED parts=" + committed.size() + " total=" + sum(committed));
            }
        });
        boolean held = false;
        long txns = 0;
        long deadline = nowMs() + maxRunMs;
        int rc = 0;
        try {
            while (true) {
                if (expect >= 0 && committed.size() == expectParts && sum(committed) >= expect) {
                    out("DONE total=" + sum(committed) + " txns=" + txns);
                    break;
                }
                if (nowMs() > deadline) {
                    out("FATAL not done after " + maxRunMs + " ms: total=" + sum(committed));
                    rc = 3;
                    break;
                }
                ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(200));
                if (recs.isEmpty()) continue;
                try {
                    producer.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
                    for (ConsumerRecord<String, String> r : recs) {
                        producer.send(new ProducerRecord<>(outTopic, r.partition(), r.key(), "out-" + r.value()));
                        offs.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    producer.sendOffsetsToTransaction(offs, consumer.groupMetadata());
                    if (!held && holdAt >= 0 && sum(committed) >= holdAt) {
                        held = true;
                        producer.flush();
                        out("HOLDING sent=" + recs.count() + " total=" + sum(committed));
                        waitForFile(release, 120_000);
                        out("RELEASED");
                    }
                    commitWithRetry(producer);
                    txns++;
                    for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet())
                        committed.put(e.getKey(), e.getValue().offset());
                    out("PROGRESS total=" + sum(committed) + " txns=" + txns + " records=" + recs.count());
                    if (held && pauseMs > 0) sleep(pauseMs);
                } catch (ProducerFencedException | OutOfOrderSequenceException | AuthorizationException
                         | UnsupportedVersionException e) {
                    // Kafka's documented fatal errors: the producer cannot continue.
                    out("FATAL " + chain(e));
                    rc = 3;
                    break;
                } catch (KafkaException e) {
                    // Everything else: abort, and reprocess from the committed offsets.
                    out("ABORTING after " + chain(e));
                    abortWithRetry(producer);
                    Map<TopicPartition, OffsetAndMetadata> c = consumer.committed(consumer.assignment());
                    for (TopicPartition tp : consumer.assignment()) {
                        long off = c.get(tp) == null ? 0L : c.get(tp).offset();
                        consumer.seek(tp, off);
                        committed.put(tp, off);
                    }
                    out("ABORTED total=" + sum(committed));
                }
            }
        } catch (Exception e) {
            out("FATAL " + chain(e));
            e.printStackTrace();
            rc = 3;
        }
        try {
            consumer.close(CloseOptions.timeout(Duration.ofSeconds(5)));
        } catch (Exception e) {
            out("# consumer close: " + chain(e));
        }
        producer.close(Duration.ofSeconds(5));
        return rc;
    }

    public static void main(String[] argv) {
        if (argv.length < 3 || !argv[0].equals("--bootstrap-server")) usage("need --bootstrap-server HOST:PORT COMMAND");
        bootstrap = argv[1];
        Args a = new Args(argv, 3);
        int rc;
        try {
            switch (argv[2]) {
                case "create-topic": rc = cmdCreateTopic(a); break;
                case "produce-seq": rc = cmdProduceSeq(a); break;
                case "produce-acks": rc = cmdProduceAcks(a); break;
                case "eos-loop": rc = cmdEosLoop(a); break;
                case "read": rc = cmdRead(a); break;
                case "offsets": rc = cmdOffsets(a); break;
                case "open-txn": rc = cmdOpenTxn(a); break;
                case "list-txns": rc = cmdListTxns(a); break;
                case "describe-quorum": rc = cmdDescribeQuorum(a); break;
                case "elect-leaders": rc = cmdElectLeaders(a); break;
                case "reassign": rc = cmdReassign(a); break;
                case "list-reassignments": rc = cmdListReassignments(a); break;
                case "describe-topics": rc = cmdDescribeTopics(a); break;
                case "unregister-broker": rc = cmdUnregisterBroker(a); break;
                case "add-raft-voter": rc = cmdAddRaftVoter(a); break;
                case "remove-raft-voter": rc = cmdRemoveRaftVoter(a); break;
                case "txn-produce": rc = cmdTxnProduce(a); break;
                case "abort-scenario": rc = abortScenario(a); break;
                case "fence-scenario": rc = fenceScenario(a); break;
                case "timeout-scenario": rc = timeoutScenario(a); break;
                case "admin-scenario": rc = adminScenario(a); break;
                default: usage("unknown command " + argv[2]); return;
            }
        } catch (CheckFailed e) {
            System.out.flush();
            System.err.println("error: " + e.getMessage());
            out("ERROR " + e.getMessage());
            rc = 1;
        } catch (Exception e) {
            e.printStackTrace();
            out("ERROR " + chain(e));
            rc = 1;
        }
        System.out.flush();
        // Client threads must not keep the JVM alive.
        System.exit(rc);
    }
}
