// SluiceClient: the stock Kafka Java tools' behaviour in one small program, for Sluice's compat suite.
//
// Subcommands mirror the tools with their exact default client configs:
//   produce   like kafka-console-producer (idempotence on, acks=all, linger.ms=1000, batch.size=16384,
//             retries=3, request.timeout.ms=1500, client.id=console-producer)
//   consume   like kafka-console-consumer: with --partition P [--offset N] assign + seek, never a group;
//             without --partition it subscribe()s as the tool does: no --group = a random
//             console-consumer-NNNNN group with enable.auto.commit=false; --group G = auto commit
//             every 5 s and close() (commit + LeaveGroup) on exit
//   topics    like kafka-topics (create / list / describe via describeTopics + describeConfigs / delete)
//   suite     the compat checks: per codec, create a 3-partition topic, produce keyed messages with
//             headers, read them back by partition, list offsets, delete the topic. Also acks=0.
//   groups-suite  the classic consumer-group checks: console consumer with and without --group,
//             consumers sharing a group (threads), failover, a joining member, two groups,
//             static membership, and the Admin group APIs.
//
// Every check prints "PASS <check>" or "FAIL <check>: <reason>"; the exit code is non-zero on any FAIL.
// It compiles against kafka-clients 3.9.x and 4.x alike (only APIs present in both are used).
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.GroupSubscribedToTopicException;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.Utils;

public final class SluiceClient {
    static final long OP_TIMEOUT_MS = 30_000;
    static final long CONSUME_TIMEOUT_MS = 90_000;

    /** A failed check: carries the check name so the runner can match it against the allow-list. */
    static final class CheckFailed extends RuntimeException {
        CheckFailed(String msg) { super(msg); }
    }

    static void fail(String fmt, Object... args) { throw new CheckFailed(String.format(fmt, args)); }

    // ------------------------------------------------------------------ argument parsing
    static final class Args {
        final Map<String, String> opts = new HashMap<>();
        final List<String> positional = new ArrayList<>();
        Args(String[] argv, int from) {
            for (int i = from; i < argv.length; i++) {
                String a = argv[i];
                if (a.startsWith("--")) {
                    String k = a.substring(2);
                    if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) opts.put(k, argv[++i]);
                    else opts.put(k, "true");
                } else positional.add(a);
            }
        }
        String get(String k, String dflt) { return opts.getOrDefault(k, dflt); }
        String need(String k) {
            String v = opts.get(k);
            if (v == null) usage("missing --" + k);
            return v;
        }
        int getInt(String k, int dflt) { return Integer.parseInt(get(k, Integer.toString(dflt))); }
    }

    static void usage(String why) {
        System.err.println("error: " + why);
        System.err.println("usage: SluiceClient --bootstrap-server HOST:PORT <command> [options]\n"
            + "  topics --create --topic T [--partitions N] [--replication-factor R]\n"
            + "  topics --list | --describe --topic T | --delete --topic T\n"
            + "  produce --topic T [--num-messages N] [--size BYTES] [--compression-type C] [--acks A]\n"
            + "          [--idempotence true|false] [--no-keys] [--no-headers]\n"
            + "  consume --topic T --partition P [--offset N|earliest|latest] [--max-messages M]\n"
            + "  consume --topic T [--group G] [--auto-offset-reset earliest|latest] [--max-messages M]\n"
            + "          [--timeout-ms IDLE_MS]\n"
            + "  suite [--name NAME] [--num-messages N]\n"
            + "  groups-suite");
        System.exit(2);
    }

    // ------------------------------------------------------------------ client configs
    /** kafka-console-producer's defaults (Kafka 4.x ConsoleProducer), with overridable codec/acks. */
    static Properties producerProps(String bootstrap, String compression, String acks, boolean idempotence) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "console-producer");
        p.put(ProducerConfig.ACKS_CONFIG, acks);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "1000");
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, "16384");
        p.put(ProducerConfig.RETRIES_CONFIG, "3");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "1500");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
        // Idempotence is the Java default; it must be turned off explicitly for acks != all.
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, Boolean.toString(idempotence));
        // retries=3 with request.timeout.ms=1500 needs delivery.timeout.ms >= linger + request timeout.
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        return p;
    }

    /** kafka-console-consumer without --group: a random group id that is never joined, no auto commit. */
    static Properties consumerProps(String bootstrap) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "console-consumer");
        p.put(ConsumerConfig.GROUP_ID_CONFIG, "console-consumer-" + new Random().nextInt(100_000));
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    /** kafka-console-consumer without --partition (it subscribe()s): with no group, the random
     *  console-consumer-NNNNN group and enable.auto.commit=false above; with --group, the Java
     *  defaults the tool leaves alone (auto commit every 5 s). The tool itself defaults
     *  auto.offset.reset to latest unless --from-beginning; this command defaults to earliest. */
    static Properties consoleConsumerProps(String bootstrap, String group, String autoOffsetReset) {
        Properties p = consumerProps(bootstrap);
        if (group != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "true");
            p.put(ConsumerConfig.AUTO_COMMIT_INTERVAL_MS_CONFIG, "5000");
        }
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, autoOffsetReset);
        return p;
    }

    static Admin admin(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        return Admin.create(p);
    }

    static <T> T await(KafkaFuture<T> f, String what) {
        try {
            return f.get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            fail("%s failed: %s: %s", what, c.getClass().getSimpleName(), c.getMessage());
        } catch (TimeoutException e) {
            fail("%s timed out after %d ms", what, OP_TIMEOUT_MS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            fail("%s interrupted", what);
        }
        return null;
    }

    // ------------------------------------------------------------------ the messages
    /** One produced message, as the suite expects to read it back. */
    static final class Msg {
        final int index; final byte[] key; final byte[] value; final List<Header> headers; final long ts;
        volatile int partition = -1; volatile long offset = -1; volatile String error;
        Msg(int index, byte[] key, byte[] value, List<Header> headers, long ts) {
            this.index = index; this.key = key; this.value = value; this.headers = headers; this.ts = ts;
        }
    }

    static byte[] utf8(String s) { return s.getBytes(StandardCharsets.UTF_8); }

    /** Deterministic payload: same scheme as the Python and Node suites (lib/compat.py). */
    static List<Msg> makeMessages(String codec, int n, int size, boolean keys, boolean headers, long baseTs) {
        List<Msg> out = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            StringBuilder v = new StringBuilder("value-").append(i).append('-');
            while (v.length() < size) v.append((char) ('a' + (i + v.length()) % 26));
            List<Header> hs = new ArrayList<>();
            if (headers) {
                hs.add(new RecordHeader("idx", utf8(Integer.toString(i))));
                hs.add(new RecordHeader("codec", utf8(codec)));
            }
            out.add(new Msg(i, keys ? utf8("key-" + (i % 1000)) : null, utf8(v.toString()), hs, baseTs + i));
        }
        return out;
    }

    static int murmur2Partition(byte[] key, int partitions) {
        return Utils.toPositive(Utils.murmur2(key)) % partitions;
    }

    // ------------------------------------------------------------------ produce
    /** Sends all messages with callbacks recording partition/offset; returns after flush+close. */
    static void produce(String bootstrap, String topic, List<Msg> msgs, String codec, String acks, boolean idem) {
        AtomicInteger pending = new AtomicInteger(msgs.size());
        try (KafkaProducer<byte[], byte[]> producer =
                 new KafkaProducer<>(producerProps(bootstrap, codec, acks, idem))) {
            for (Msg m : msgs) {
                ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, null, m.ts, m.key, m.value, m.headers);
                producer.send(rec, (md, err) -> {
                    if (err != null) m.error = err.getClass().getSimpleName() + ": " + err.getMessage();
                    else { m.partition = md.partition(); m.offset = md.offset(); }
                    pending.decrementAndGet();
                });
            }
            producer.flush();
        }
        if (pending.get() != 0) fail("%d delivery callbacks never ran", pending.get());
    }

    // ------------------------------------------------------------------ consume
    static final long EARLIEST = -2, LATEST = -1;

    /** Reads partition p from offset `from` (or EARLIEST / LATEST, like the console consumer's
     *  --offset earliest|latest) until `count` records arrived or the timeout passed. */
    static List<ConsumerRecord<byte[], byte[]>> consume(String bootstrap, String topic, int p, long from, long count) {
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        TopicPartition tp = new TopicPartition(topic, p);
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(consumerProps(bootstrap))) {
            c.assign(Collections.singletonList(tp));
            if (from == EARLIEST) c.seekToBeginning(Collections.singletonList(tp));
            else if (from == LATEST) c.seekToEnd(Collections.singletonList(tp));
            else c.seek(tp, from);
            long deadline = System.currentTimeMillis() + CONSUME_TIMEOUT_MS;
            while (got.size() < count && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(500))) got.add(r);
            }
        }
        return got;
    }

    /** kafka-console-consumer without --partition: subscribe() (so the group protocol runs) and
     *  read until `max` records arrived or none came for idleMs; close() on the way out, as the
     *  tool does (with auto commit on, close commits the positions and sends LeaveGroup). */
    static List<ConsumerRecord<byte[], byte[]>> consumeSubscribed(Properties props, String topic, long max, long idleMs) {
        List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
        try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(props)) {
            c.subscribe(Collections.singletonList(topic));
            long last = System.currentTimeMillis();
            while (got.size() < max) {
                ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(200));
                if (recs.isEmpty()) {
                    if (System.currentTimeMillis() - last > idleMs) break;
                    continue;
                }
                last = System.currentTimeMillis();
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    if (got.size() >= max) break;
                    got.add(r);
                }
            }
        }
        return got;
    }

    // ------------------------------------------------------------------ the suite
    static final class Suite {
        final String bootstrap, name;
        final int numMessages;
        int failures = 0;
        Suite(String bootstrap, String name, int numMessages) {
            this.bootstrap = bootstrap; this.name = name; this.numMessages = numMessages;
        }

        /** Runs one named check; a failure is reported and counted, never thrown further. */
        boolean check(String check, Runnable body) {
            long t0 = System.nanoTime();
            try {
                body.run();
                System.out.printf("PASS %s (%d ms)%n", check, (System.nanoTime() - t0) / 1_000_000);
                return true;
            } catch (CheckFailed e) {
                System.out.printf("FAIL %s: %s%n", check, e.getMessage());
            } catch (RuntimeException e) {
                System.out.printf("FAIL %s: unexpected %s: %s%n", check, e.getClass().getName(), e.getMessage());
            }
            System.out.flush();
            failures++;
            return false;
        }

        void runCodec(Admin admin, String codec, String acks, boolean idem) {
            String topic = "compat-" + name + "-" + codec;
            String pre = codec + ".";
            System.out.printf("# %s: topic %s, compression.type=%s acks=%s enable.idempotence=%s%n",
                name, topic, codec, acks, idem);
            if (!check(pre + "create-topic", () -> createTopic(admin, topic, 3))) return;
            check(pre + "list-topics", () -> {
                Set<String> names = await(admin.listTopics().names(), "listTopics");
                if (!names.contains(topic)) fail("listTopics %s lacks %s", names, topic);
            });
            check(pre + "describe-topic", () -> describeTopic(admin, topic, 3));
            check(pre + "describe-configs", () -> describeConfigs(admin, topic));

            long baseTs = (System.currentTimeMillis() - 600_000) / 1000 * 1000;
            List<Msg> msgs = makeMessages(codec, numMessages, 100, true, true, baseTs);
            if (!check(pre + "produce", () -> {
                produce(bootstrap, topic, msgs, codec, acks, idem);
                verifyDeliveries(msgs, 3);
            })) { deleteQuietly(admin, topic); return; }

            int[] perPartition = new int[3];
            for (Msg m : msgs) perPartition[m.partition]++;
            Map<Integer, List<ConsumerRecord<byte[], byte[]>>> read = new HashMap<>();
            check(pre + "consume", () -> {
                for (int p = 0; p < 3; p++) {
                    List<ConsumerRecord<byte[], byte[]>> recs = consume(bootstrap, topic, p, 0, perPartition[p]);
                    read.put(p, recs);
                    verifyPartition(msgs, p, recs, perPartition[p]);
                }
            });
            check(pre + "list-offsets", () -> verifyListOffsets(admin, topic, msgs, perPartition, baseTs));
            check(pre + "consume-from-middle", () -> {
                // assign + seek to a non-zero offset must start exactly there.
                long from = perPartition[0] / 2;
                List<ConsumerRecord<byte[], byte[]>> recs = consume(bootstrap, topic, 0, from, 10);
                if (recs.isEmpty()) fail("nothing read from partition 0 offset %d", from);
                if (recs.get(0).offset() != from) fail("first record at offset %d, wanted %d", recs.get(0).offset(), from);
            });
            check(pre + "delete-topic", () -> deleteTopic(admin, topic));
        }

        /** kafka-topics without --partitions/--replication-factor, duplicates, and a large record. */
        void runTopicEdgeCases(Admin admin) {
            String topic = "compat-" + name + "-defaults";
            System.out.printf("# %s: topic %s, broker defaults and edge cases%n", name, topic);
            if (!check("defaults.create-topic", () -> {
                // kafka-topics --create without counts sends -1/-1: the broker's num.partitions (1).
                NewTopic nt = new NewTopic(topic, Optional.empty(), Optional.empty());
                await(admin.createTopics(Collections.singleton(nt)).all(), "createTopics (defaults)");
                describeTopic(admin, topic, 1);
            })) return;
            check("defaults.create-existing", () -> {
                try {
                    admin.createTopics(Collections.singleton(new NewTopic(topic, 1, (short) 1))).all()
                        .get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                    fail("creating %s twice succeeded", topic);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof org.apache.kafka.common.errors.TopicExistsException))
                        fail("creating %s twice: %s, want TopicExistsException", topic, e.getCause());
                } catch (InterruptedException | TimeoutException e) {
                    fail("creating %s twice: %s", topic, e);
                }
            });
            check("defaults.large-record", () -> {
                // Three ~900 KB records: near the 1 MiB default max.request.size / message.max.bytes.
                List<Msg> big = makeMessages("none", 3, 900_000, true, true, System.currentTimeMillis() - 60_000);
                produce(bootstrap, topic, big, "none", "all", true);
                for (Msg m : big) if (m.error != null) fail("large record %d: %s", m.index, m.error);
                List<ConsumerRecord<byte[], byte[]>> recs = consume(bootstrap, topic, 0, 0, 3);
                if (recs.size() != 3) fail("read %d large records of 3", recs.size());
                for (int i = 0; i < 3; i++)
                    if (!Arrays.equals(recs.get(i).value(), big.get(i).value)) fail("large record %d differs", i);
            });
            check("defaults.delete-topic", () -> deleteTopic(admin, topic));
            check("defaults.delete-missing", () -> {
                try {
                    admin.deleteTopics(Collections.singleton(topic)).all().get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                    fail("deleting the deleted topic %s succeeded", topic);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof org.apache.kafka.common.errors.UnknownTopicOrPartitionException))
                        fail("deleting a missing topic: %s, want UnknownTopicOrPartitionException", e.getCause());
                } catch (InterruptedException | TimeoutException e) {
                    fail("deleting a missing topic: %s", e);
                }
            });
        }

        void runAcks0(Admin admin) {
            String topic = "compat-" + name + "-acks0";
            int n = 1000;
            System.out.printf("# %s: topic %s, acks=0%n", name, topic);
            if (!check("acks0.create-topic", () -> createTopic(admin, topic, 3))) return;
            List<Msg> msgs = makeMessages("none", n, 100, true, true, System.currentTimeMillis() - 60_000);
            check("acks0.produce", () -> {
                produce(bootstrap, topic, msgs, "none", "0", false);
                for (Msg m : msgs) if (m.error != null) fail("message %d: %s", m.index, m.error);
            });
            check("acks0.consume", () -> {
                // acks=0 gives no offsets: read everything back and match by the idx header.
                Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> ends = listOffsets(admin, topic, 3, OffsetSpec.latest());
                long total = 0;
                for (int p = 0; p < 3; p++) {
                    long end = ends.get(p).offset();
                    total += end;
                    List<ConsumerRecord<byte[], byte[]>> recs = consume(bootstrap, topic, p, 0, end);
                    int lastIdx = -1;
                    for (int i = 0; i < recs.size(); i++) {
                        ConsumerRecord<byte[], byte[]> r = recs.get(i);
                        if (r.offset() != i) fail("partition %d: record %d has offset %d", p, i, r.offset());
                        int idx = Integer.parseInt(new String(r.headers().lastHeader("idx").value(), StandardCharsets.UTF_8));
                        Msg m = msgs.get(idx);
                        if (!Arrays.equals(m.value, r.value()) || !Arrays.equals(m.key, r.key()))
                            fail("partition %d offset %d: key/value differ from message %d", p, i, idx);
                        if (murmur2Partition(m.key, 3) != p) fail("message %d on partition %d, key hashes elsewhere", idx, p);
                        if (idx <= lastIdx) fail("partition %d: message %d after %d (order)", p, idx, lastIdx);
                        lastIdx = idx;
                    }
                    if (recs.size() != end) fail("partition %d: read %d of %d", p, recs.size(), end);
                }
                if (total != n) fail("latest offsets sum to %d, produced %d with acks=0", total, n);
            });
            check("acks0.delete-topic", () -> deleteTopic(admin, topic));
        }

        void verifyDeliveries(List<Msg> msgs, int partitions) {
            Map<Integer, Long> nextOffset = new HashMap<>();
            for (Msg m : msgs) {
                if (m.error != null) fail("message %d not acknowledged: %s", m.index, m.error);
                int want = murmur2Partition(m.key, partitions);
                if (m.partition != want) fail("message %d (key %s) went to partition %d, murmur2 says %d",
                    m.index, new String(m.key, StandardCharsets.UTF_8), m.partition, want);
                long expect = nextOffset.getOrDefault(m.partition, 0L);
                if (m.offset != expect)
                    fail("message %d acknowledged at %d/%d, expected offset %d (consecutive in send order)",
                        m.index, m.partition, m.offset, expect);
                nextOffset.put(m.partition, expect + 1);
            }
        }

        void verifyPartition(List<Msg> msgs, int p, List<ConsumerRecord<byte[], byte[]>> recs, int expected) {
            Map<Long, Msg> byOffset = new HashMap<>();
            for (Msg m : msgs) if (m.partition == p) byOffset.put(m.offset, m);
            if (recs.size() != expected) fail("partition %d: read %d records, produced %d", p, recs.size(), expected);
            for (int i = 0; i < recs.size(); i++) {
                ConsumerRecord<byte[], byte[]> r = recs.get(i);
                if (r.offset() != i) fail("partition %d: record #%d has offset %d (want consecutive from 0)", p, i, r.offset());
                Msg m = byOffset.get(r.offset());
                if (m == null) fail("partition %d offset %d: no delivery report for it", p, r.offset());
                if (!Arrays.equals(m.key, r.key())) fail("partition %d offset %d: key %s, want %s", p, i, str(r.key()), str(m.key));
                if (!Arrays.equals(m.value, r.value())) fail("partition %d offset %d: value %s, want %s", p, i, str(r.value()), str(m.value));
                if (r.timestamp() != m.ts) fail("partition %d offset %d: timestamp %d, want %d (%s)", p, i, r.timestamp(), m.ts, r.timestampType());
                Header[] hs = r.headers().toArray();
                if (hs.length != m.headers.size()) fail("partition %d offset %d: %d headers, want %d", p, i, hs.length, m.headers.size());
                for (int h = 0; h < hs.length; h++) {
                    Header want = m.headers.get(h);
                    if (!hs[h].key().equals(want.key()) || !Arrays.equals(hs[h].value(), want.value()))
                        fail("partition %d offset %d: header %d is %s=%s, want %s=%s", p, i, h,
                            hs[h].key(), str(hs[h].value()), want.key(), str(want.value()));
                }
            }
        }

        void verifyListOffsets(Admin admin, String topic, List<Msg> msgs, int[] perPartition, long baseTs) {
            Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> earliest = listOffsets(admin, topic, 3, OffsetSpec.earliest());
            Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> latest = listOffsets(admin, topic, 3, OffsetSpec.latest());
            long target = baseTs + numMessages / 2;
            Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> byTs = listOffsets(admin, topic, 3, OffsetSpec.forTimestamp(target));
            Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> past = listOffsets(admin, topic, 3, OffsetSpec.forTimestamp(baseTs + numMessages + 60_000));
            for (int p = 0; p < 3; p++) {
                if (earliest.get(p).offset() != 0) fail("partition %d: earliest (-2) = %d, want 0", p, earliest.get(p).offset());
                if (latest.get(p).offset() != perPartition[p]) fail("partition %d: latest (-1) = %d, want %d", p, latest.get(p).offset(), perPartition[p]);
                long want = -1, wantTs = -1;
                for (Msg m : msgs) if (m.partition == p && m.ts >= target && (want < 0 || m.offset < want)) { want = m.offset; wantTs = m.ts; }
                ListOffsetsResult.ListOffsetsResultInfo got = byTs.get(p);
                if (got.offset() != want) fail("partition %d: offset for timestamp %d = %d, want %d", p, target, got.offset(), want);
                if (want >= 0 && got.timestamp() != wantTs) fail("partition %d: timestamp for ts query = %d, want %d", p, got.timestamp(), wantTs);
                if (past.get(p).offset() != -1) fail("partition %d: timestamp after every record gave offset %d, want -1 (none)", p, past.get(p).offset());
            }
        }
    }

    static String ids(List<Node> nodes) {
        StringJoiner j = new StringJoiner(",");
        for (Node n : nodes) j.add(Integer.toString(n.id()));
        return j.toString();
    }

    static String str(byte[] b) {
        if (b == null) return "null";
        String s = new String(b, StandardCharsets.UTF_8);
        return s.length() > 40 ? s.substring(0, 40) + "..." : s;
    }

    // ------------------------------------------------------------------ admin helpers (kafka-topics)
    static void createTopic(Admin admin, String topic, int partitions) {
        await(admin.createTopics(Collections.singleton(new NewTopic(topic, partitions, (short) 1))).all(), "createTopics " + topic);
    }

    static void describeTopic(Admin admin, String topic, int partitions) {
        Map<String, TopicDescription> d = await(admin.describeTopics(Collections.singleton(topic)).allTopicNames(), "describeTopics");
        TopicDescription td = d.get(topic);
        if (td == null) fail("describeTopics returned %s, no %s", d.keySet(), topic);
        if (td.partitions().size() != partitions) fail("%d partitions, want %d", td.partitions().size(), partitions);
        for (TopicPartitionInfo pi : td.partitions()) {
            if (pi.leader() == null || pi.leader().id() != 1) fail("partition %d leader %s, want node 1", pi.partition(), pi.leader());
            if (pi.replicas().size() != 1 || pi.isr().size() != 1) fail("partition %d replicas %s isr %s", pi.partition(), pi.replicas(), pi.isr());
        }
        if (td.topicId() == null || td.topicId().equals(Uuid.ZERO_UUID)) fail("topic id is zero/null (Java falls back to Fetch v12)");
    }

    static void describeConfigs(Admin admin, String topic) {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        Map<ConfigResource, Config> m = await(admin.describeConfigs(Collections.singleton(r)).all(), "describeConfigs");
        Config c = m.get(r);
        if (c == null || c.entries().isEmpty()) fail("describeConfigs returned no entries for %s", topic);
    }

    static void deleteTopic(Admin admin, String topic) {
        await(admin.deleteTopics(Collections.singleton(topic)).all(), "deleteTopics " + topic);
        long deadline = System.currentTimeMillis() + 15_000;
        while (true) {
            Set<String> names = await(admin.listTopics().names(), "listTopics");
            if (!names.contains(topic)) return;
            if (System.currentTimeMillis() > deadline) fail("%s still listed 15 s after deletion", topic);
            sleep(200);
        }
    }

    static void deleteQuietly(Admin admin, String topic) {
        try { admin.deleteTopics(Collections.singleton(topic)).all().get(10, TimeUnit.SECONDS); } catch (Exception ignored) { }
    }

    static Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> listOffsets(Admin admin, String topic, int partitions, OffsetSpec spec) {
        Map<TopicPartition, OffsetSpec> q = new HashMap<>();
        for (int p = 0; p < partitions; p++) q.put(new TopicPartition(topic, p), spec);
        Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> res = await(admin.listOffsets(q).all(), "listOffsets");
        Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> out = new HashMap<>();
        res.forEach((tp, info) -> out.put(tp.partition(), info));
        return out;
    }

    static void sleep(long ms) {
        try { Thread.sleep(ms); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
    }

    // ------------------------------------------------------------------ subcommands
    static int cmdTopics(String bootstrap, Args a) {
        try (Admin admin = admin(bootstrap)) {
            if (a.opts.containsKey("create")) {
                String t = a.need("topic");
                int parts = a.getInt("partitions", -1);
                short rf = (short) a.getInt("replication-factor", -1);
                NewTopic nt = new NewTopic(t, parts < 0 ? Optional.empty() : Optional.of(parts),
                    rf < 0 ? Optional.empty() : Optional.of(rf));
                await(admin.createTopics(Collections.singleton(nt)).all(), "createTopics");
                System.out.println("Created topic " + t + ".");
            } else if (a.opts.containsKey("list")) {
                new TreeSet<>(await(admin.listTopics().names(), "listTopics")).forEach(System.out::println);
            } else if (a.opts.containsKey("describe")) {
                String t = a.need("topic");
                TopicDescription td = await(admin.describeTopics(Collections.singleton(t)).allTopicNames(), "describeTopics").get(t);
                ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, t);
                Config c = await(admin.describeConfigs(Collections.singleton(r)).all(), "describeConfigs").get(r);
                System.out.printf("Topic: %s\tTopicId: %s\tPartitionCount: %d%n", t, td.topicId(), td.partitions().size());
                for (ConfigEntry e : c.entries()) if (!e.isDefault()) System.out.printf("\tConfig %s=%s%n", e.name(), e.value());
                for (TopicPartitionInfo pi : td.partitions())
                    System.out.printf("\tPartition: %d\tLeader: %s\tReplicas: %s\tIsr: %s%n", pi.partition(),
                        pi.leader() == null ? "none" : pi.leader().id(), ids(pi.replicas()), ids(pi.isr()));
            } else if (a.opts.containsKey("delete")) {
                deleteTopic(admin, a.need("topic"));
                System.out.println("Deleted topic " + a.need("topic") + ".");
            } else usage("topics needs --create, --list, --describe or --delete");
        }
        return 0;
    }

    static int cmdProduce(String bootstrap, Args a) {
        String topic = a.need("topic");
        String codec = a.get("compression-type", "none");
        List<Msg> msgs = makeMessages(codec, a.getInt("num-messages", 10), a.getInt("size", 100),
            !a.opts.containsKey("no-keys"), !a.opts.containsKey("no-headers"), System.currentTimeMillis());
        String acks = a.get("acks", "all");
        boolean idem = Boolean.parseBoolean(a.get("idempotence", Boolean.toString(acks.equals("all") || acks.equals("-1"))));
        produce(bootstrap, topic, msgs, codec, acks, idem);
        int errors = 0;
        for (Msg m : msgs) {
            if (m.error != null) { errors++; System.out.printf("%d error %s%n", m.index, m.error); }
            else System.out.printf("%d %d %d%n", m.index, m.partition, m.offset);
        }
        return errors == 0 ? 0 : 1;
    }

    static int cmdConsume(String bootstrap, Args a) {
        if (!a.opts.containsKey("partition")) {
            // kafka-console-consumer without --partition: subscribe, a group (given or random).
            if (a.opts.containsKey("offset")) usage("--offset needs --partition (as in kafka-console-consumer)");
            Properties p = consoleConsumerProps(bootstrap, a.opts.get("group"), a.get("auto-offset-reset", "earliest"));
            List<ConsumerRecord<byte[], byte[]>> recs = consumeSubscribed(p, a.need("topic"),
                Long.parseLong(a.get("max-messages", "10")), Long.parseLong(a.get("timeout-ms", "15000")));
            for (ConsumerRecord<byte[], byte[]> r : recs)
                System.out.printf("%d\t%d\t%d\t%s\t%s%n", r.partition(), r.offset(), r.timestamp(), str(r.key()), str(r.value()));
            System.err.printf("Processed a total of %d messages (group %s)%n", recs.size(), p.getProperty(ConsumerConfig.GROUP_ID_CONFIG));
            return 0;
        }
        if (a.opts.containsKey("group")) usage("--group and --partition cannot be given together (as in kafka-console-consumer)");
        String off = a.get("offset", "earliest");
        long from = off.equals("earliest") ? EARLIEST : off.equals("latest") ? LATEST : Long.parseLong(off);
        List<ConsumerRecord<byte[], byte[]>> recs = consume(bootstrap, a.need("topic"), a.getInt("partition", 0),
            from, Long.parseLong(a.get("max-messages", "10")));
        for (ConsumerRecord<byte[], byte[]> r : recs)
            System.out.printf("%d\t%d\t%d\t%s\t%s%n", r.partition(), r.offset(), r.timestamp(), str(r.key()), str(r.value()));
        return 0;
    }

    static int cmdSuite(String bootstrap, Args a) {
        Suite s = new Suite(bootstrap, a.get("name", "java"), a.getInt("num-messages", 10_000));
        System.out.println("# kafka-clients " + AppInfoVersion.get() + " against " + bootstrap);
        try (Admin admin = admin(bootstrap)) {
            // Metadata sanity before anything else: one broker, node 1, a controller that is a real broker.
            if (!s.check("cluster", () -> {
                DescribeClusterResult dc = admin.describeCluster();
                Collection<Node> nodes = await(dc.nodes(), "describeCluster");
                Node ctl = await(dc.controller(), "describeCluster controller");
                if (nodes.size() != 1 || nodes.iterator().next().id() != 1) fail("nodes %s, want [node 1]", nodes);
                if (ctl == null || ctl.id() != 1) fail("controller %s, want node 1 (kafka-topics sends CreateTopics there)", ctl);
            })) {
                System.out.println("# broker unusable, stopping");
                return 1;
            }
            s.runTopicEdgeCases(admin);
            s.runCodec(admin, "none", "all", true);
            s.runCodec(admin, "gzip", "1", false);
            s.runCodec(admin, "snappy", "all", true);
            s.runCodec(admin, "lz4", "1", false);
            s.runCodec(admin, "zstd", "all", true);
            s.runAcks0(admin);
        }
        System.out.printf("# %s: %d check(s) failed%n", s.name, s.failures);
        return s.failures == 0 ? 0 : 1;
    }

    // ------------------------------------------------------------------ consumer groups (groups-suite)
    /** Message i of a group check: key "key-i", value "msg-i" (maps a record back to its index). */
    static byte[] groupValue(int i) { return utf8("msg-" + i); }

    static int groupIndex(byte[] value) {
        String s = value == null ? "" : new String(value, StandardCharsets.UTF_8);
        if (!s.startsWith("msg-")) fail("unexpected record value %s", str(value));
        return Integer.parseInt(s.substring(4));
    }

    /** Produces n messages, message i to partition i % partitions (idempotent, acks=all); returns
     *  the offset each one was acknowledged at. */
    static long[] produceIndexed(String bootstrap, String topic, int n, int partitions) {
        long[] offsets = new long[n];
        Arrays.fill(offsets, -1);
        String[] error = new String[1];
        Properties p = producerProps(bootstrap, "none", "all", true);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < n; i++) {
                final int idx = i;
                producer.send(new ProducerRecord<>(topic, i % partitions, utf8("key-" + i), groupValue(i)), (md, err) -> {
                    if (err != null) error[0] = err.getClass().getSimpleName() + ": " + err.getMessage();
                    else offsets[idx] = md.offset();
                });
            }
            producer.flush();
        }
        for (int i = 0; i < n; i++) if (offsets[i] < 0) fail("message %d not acknowledged: %s", i, error[0]);
        return offsets;
    }

    /** A group member's consumer config: the Java defaults, except auto.offset.reset=earliest. */
    static Properties memberProps(String bootstrap, String group, String clientId) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, clientId);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        return p;
    }

    /** One record as a group member received it. */
    static final class Got {
        final int partition; final long offset; final int index;
        Got(int partition, long offset, int index) { this.partition = partition; this.offset = offset; this.index = index; }
    }

    /** A consumer in its own thread: subscribe(topic) and poll until told to stop, then close().
     *  With manualCommit it commits (commitSync) what each poll returned, and on revocation; with
     *  stopAfter > 0 it stops by itself once it has that many records, without committing the last
     *  batch. Everything the main thread reads is volatile or thread-safe. */
    static final class Member implements Runnable, ConsumerRebalanceListener {
        final Crew crew; final String name; final Properties props; final boolean manualCommit; final int stopAfter;
        final List<Got> got = Collections.synchronizedList(new ArrayList<>());
        final List<String> events = new CopyOnWriteArrayList<>();
        final Map<TopicPartition, Long> lastCommitted = new ConcurrentHashMap<>();
        final Map<TopicPartition, Long> pending = new HashMap<>();     // consumer thread only
        final AtomicInteger commitFailures = new AtomicInteger();
        volatile Set<Integer> assignment = Collections.emptySet();
        volatile int generation = -1;
        volatile String memberId = "";
        volatile boolean stopRequested, closing, closed;
        volatile String error, lastCommitError;
        KafkaConsumer<byte[], byte[]> consumer;                        // consumer thread only
        final Thread thread;

        Member(Crew crew, String name, Properties props, boolean manualCommit, int stopAfter) {
            this.crew = crew; this.name = name; this.props = props; this.manualCommit = manualCommit; this.stopAfter = stopAfter;
            thread = new Thread(this, name);
            thread.setDaemon(true);
        }

        @Override public void run() {
            try (KafkaConsumer<byte[], byte[]> c = new KafkaConsumer<>(props)) {
                consumer = c;
                c.subscribe(Collections.singletonList(crew.topic), this);
                while (!stopRequested) {
                    ConsumerRecords<byte[], byte[]> recs = c.poll(Duration.ofMillis(100));
                    noteGroupMetadata();
                    for (ConsumerRecord<byte[], byte[]> r : recs) {
                        int idx = groupIndex(r.value());
                        got.add(new Got(r.partition(), r.offset(), idx));
                        crew.record(idx);
                        pending.put(new TopicPartition(r.topic(), r.partition()), r.offset() + 1);
                    }
                    if (stopAfter > 0 && got.size() >= stopAfter) break;   // the failover victim: no final commit
                    if (manualCommit) commitPending();
                }
                closing = true;
            } catch (RuntimeException e) {
                error = e.getClass().getSimpleName() + ": " + e.getMessage();
            } finally {
                closed = true;
            }
        }

        void noteGroupMetadata() {
            ConsumerGroupMetadata gm = consumer.groupMetadata();
            generation = gm.generationId();
            memberId = gm.memberId();
        }

        void commitPending() {
            if (pending.isEmpty()) return;
            Map<TopicPartition, OffsetAndMetadata> m = new HashMap<>();
            pending.forEach((tp, off) -> m.put(tp, new OffsetAndMetadata(off)));
            try {
                consumer.commitSync(m);
                lastCommitted.putAll(pending);
                pending.clear();
            } catch (RebalanceInProgressException | CommitFailedException e) {
                commitFailures.incrementAndGet();
                lastCommitError = e.getClass().getSimpleName() + ": " + e.getMessage();
            }
        }

        void event(String what, Collection<TopicPartition> parts) {
            events.add(String.format("%s%s%s@%d", closing ? "close:" : "", what, partitions(parts), System.currentTimeMillis() % 100_000));
        }

        @Override public void onPartitionsRevoked(Collection<TopicPartition> parts) {
            event("revoked", parts);
            // The usual pattern: commit what was processed before giving it up. Not from close(): Java
            // calls this while closing too, and the failover victim must leave its last batch uncommitted.
            if (manualCommit && !closing) commitPending();
            Set<Integer> s = new TreeSet<>(assignment);
            for (TopicPartition tp : parts) s.remove(tp.partition());
            assignment = Collections.unmodifiableSet(s);
        }

        @Override public void onPartitionsAssigned(Collection<TopicPartition> parts) {
            event("assigned", parts);
            noteGroupMetadata();   // before the assignment: whoever sees the assignment sees its generation
            Set<Integer> s = new TreeSet<>(assignment);
            for (TopicPartition tp : parts) s.add(tp.partition());
            assignment = Collections.unmodifiableSet(s);
        }

        @Override public void onPartitionsLost(Collection<TopicPartition> parts) {
            event("lost", parts);
            for (TopicPartition tp : parts) pending.remove(tp);
            Set<Integer> s = new TreeSet<>(assignment);
            for (TopicPartition tp : parts) s.remove(tp.partition());
            assignment = Collections.unmodifiableSet(s);
        }

        boolean live() { return !stopRequested && !closed; }

        /** Stops the poll loop and waits for close() to finish. */
        void stop() {
            stopRequested = true;
            join();
        }

        void join() {
            try { thread.join(45_000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
            if (!closed) fail("%s: close() did not return within 45 s", name);
        }
    }

    static String partitions(Collection<TopicPartition> parts) {
        Set<Integer> s = new TreeSet<>();
        for (TopicPartition tp : parts) s.add(tp.partition());
        return s.toString();
    }

    /** The consumers of one group on one topic, and which of the n messages they have received. */
    static final class Crew implements AutoCloseable {
        final String topic; final int n, partitions;
        final List<Member> members = new CopyOnWriteArrayList<>();
        final AtomicIntegerArray counts;
        final AtomicInteger unique = new AtomicInteger();

        Crew(String topic, int n, int partitions) {
            this.topic = topic; this.n = n; this.partitions = partitions;
            counts = new AtomicIntegerArray(Math.max(n, 1));
        }

        void record(int idx) {
            if (idx < 0 || idx >= n) fail("record index %d out of range", idx);
            if (counts.incrementAndGet(idx) == 1) unique.incrementAndGet();
        }

        Member start(String name, Properties props, boolean manualCommit, int stopAfter) {
            Member m = new Member(this, name, props, manualCommit, stopAfter);
            members.add(m);
            m.thread.start();
            return m;
        }

        List<Member> live() {
            List<Member> out = new ArrayList<>();
            for (Member m : members) if (m.live()) out.add(m);
            return out;
        }

        /** Every live member owns `each` partitions, and together all partitions exactly once. */
        boolean balanced(int each) {
            Set<Integer> union = new HashSet<>();
            int total = 0;
            for (Member m : live()) {
                Set<Integer> a = m.assignment;
                if (a.size() != each) return false;
                union.addAll(a);
                total += a.size();
            }
            return total == partitions && union.size() == partitions;
        }

        /** Live members' assignments: all partitions, each exactly once. */
        boolean coversOnce() {
            int total = 0;
            Set<Integer> union = new HashSet<>();
            for (Member m : live()) { total += m.assignment.size(); union.addAll(m.assignment); }
            return total == partitions && union.size() == partitions;
        }

        String state() {
            StringJoiner j = new StringJoiner("; ");
            for (Member m : members)
                j.add(String.format("%s%s gen %d owns %s, %d records%s%s", m.name, m.closed ? " (closed)" : "", m.generation,
                    m.assignment, m.got.size(), m.error == null ? "" : ", error " + m.error,
                    m.commitFailures.get() == 0 ? "" : ", " + m.commitFailures.get() + " failed commits (" + m.lastCommitError + ")"));
            return String.format("%d/%d messages; %s", unique.get(), n, j);
        }

        /** Waits for cond, failing at the deadline or as soon as a member's thread died. */
        void waitUntil(String what, long timeoutMs, BooleanSupplier cond) {
            long deadline = System.currentTimeMillis() + timeoutMs;
            while (!cond.getAsBoolean()) {
                for (Member m : members) if (m.error != null) fail("%s: consumer %s failed: %s", what, m.name, m.error);
                if (System.currentTimeMillis() > deadline) fail("%s: not reached within %d ms (%s)", what, timeoutMs, state());
                sleep(50);
            }
        }

        /** Stops every member at once (their close() calls overlap) and waits for them. */
        void stopAll() {
            for (Member m : members) m.stopRequested = true;
            for (Member m : members) m.join();
            for (Member m : members) if (m.error != null) fail("consumer %s failed: %s", m.name, m.error);
        }

        /** Every message received exactly once, at the partition and offset it was produced to. */
        void verifyExactlyOnce(long[] offsets) {
            verifyPlacement(offsets);
            List<Integer> missing = new ArrayList<>(), dup = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int c = counts.get(i);
                if (c == 0 && missing.size() < 5) missing.add(i);
                if (c > 1 && dup.size() < 5) dup.add(i);
            }
            if (!missing.isEmpty()) fail("%d of %d messages never received, e.g. %s", n - unique.get(), n, missing);
            if (!dup.isEmpty()) fail("messages received more than once, e.g. %s (%s)", dup, state());
        }

        void verifyPlacement(long[] offsets) {
            for (Member m : members) synchronized (m.got) {
                for (Got g : m.got)
                    if (g.partition != g.index % partitions || g.offset != offsets[g.index])
                        fail("%s got message %d at %d/%d, it was produced to %d/%d", m.name, g.index, g.partition, g.offset,
                            g.index % partitions, offsets[g.index]);
            }
        }

        @Override public void close() {
            for (Member m : members) m.stopRequested = true;
            for (Member m : members) {
                try { m.thread.join(45_000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
            }
        }
    }

    static final class GroupSuite {
        final String bootstrap; final Admin admin; final Suite s;
        GroupSuite(String bootstrap, Admin admin, Suite s) { this.bootstrap = bootstrap; this.admin = admin; this.s = s; }

        void run() {
            s.check("console-consumer-no-group", this::consoleNoGroup);
            s.check("console-consumer-group", this::consoleGroup);
            s.check("three-consumers", this::threeConsumers);
            s.check("failover", this::failover);
            s.check("fourth-joins", this::fourthJoins);
            s.check("two-groups", this::twoGroups);
            s.check("static-membership", this::staticMembership);
            runAdmin();
        }

        // ---- helpers
        Map<TopicPartition, OffsetAndMetadata> committed(String group) {
            Map<TopicPartition, OffsetAndMetadata> m = await(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(),
                "listConsumerGroupOffsets " + group);
            Map<TopicPartition, OffsetAndMetadata> out = new HashMap<>();
            m.forEach((tp, om) -> { if (om != null) out.put(tp, om); });
            return out;
        }

        ConsumerGroupDescription describe(String group) {
            return await(admin.describeConsumerGroups(Collections.singleton(group)).describedGroups().get(group),
                "describeConsumerGroups " + group);
        }

        /** The group reaches `state` (the broker applies a LeaveGroup before answering it, so this is
         *  normally immediate; the deadline only bounds a broker that lags). */
        ConsumerGroupDescription waitState(String group, ConsumerGroupState state, long timeoutMs) {
            long deadline = System.currentTimeMillis() + timeoutMs;
            while (true) {
                ConsumerGroupDescription d = describe(group);
                if (d.state() == state) return d;
                if (System.currentTimeMillis() > deadline)
                    fail("group %s is %s with %d member(s) after %d ms, want %s", group, d.state(), d.members().size(), timeoutMs, state);
                sleep(100);
            }
        }

        /** Committed offsets of `group` on every partition equal the log end offsets. */
        void verifyCommittedAtEnd(String group, String topic, int partitions) {
            Map<TopicPartition, OffsetAndMetadata> c = committed(group);
            Map<Integer, ListOffsetsResult.ListOffsetsResultInfo> ends = listOffsets(admin, topic, partitions, OffsetSpec.latest());
            for (int p = 0; p < partitions; p++) {
                OffsetAndMetadata om = c.get(new TopicPartition(topic, p));
                long end = ends.get(p).offset();
                if (om == null || om.offset() != end)
                    fail("group %s: committed offset of %s-%d is %s, log end offset %d", group, topic, p, om == null ? "none" : om.offset(), end);
            }
        }

        static Set<Integer> set(Integer... xs) { return new TreeSet<>(Arrays.asList(xs)); }

        // ---- the checks
        void consoleNoGroup() {
            String topic = "jg-console";
            int n = 300;
            createTopic(admin, topic, 3);
            long[] offsets = produceIndexed(bootstrap, topic, n, 3);
            Properties p = consoleConsumerProps(bootstrap, null, "earliest");
            String group = p.getProperty(ConsumerConfig.GROUP_ID_CONFIG);
            if (!group.matches("console-consumer-[0-9]{1,5}")) fail("group id %s", group);
            List<ConsumerRecord<byte[], byte[]>> recs = consumeSubscribed(p, topic, n, 30_000);
            verifyConsole(recs, n, offsets);
            Map<TopicPartition, OffsetAndMetadata> c = committed(group);
            if (!c.isEmpty()) fail("group %s (enable.auto.commit=false) has committed offsets %s", group, c);
        }

        void consoleGroup() {
            String topic = "jg-console-group", group = "jg-console-group";
            int n = 300;
            createTopic(admin, topic, 3);
            long[] offsets = produceIndexed(bootstrap, topic, n, 3);
            List<ConsumerRecord<byte[], byte[]>> recs = consumeSubscribed(consoleConsumerProps(bootstrap, group, "earliest"), topic, n, 30_000);
            verifyConsole(recs, n, offsets);
            // close() committed the positions (auto commit) and left the group (LeaveGroup).
            verifyCommittedAtEnd(group, topic, 3);
            ConsumerGroupDescription d = waitState(group, ConsumerGroupState.EMPTY, 5_000);
            if (!d.members().isEmpty()) fail("group %s is Empty but lists members %s", group, d.members());
        }

        void verifyConsole(List<ConsumerRecord<byte[], byte[]>> recs, int n, long[] offsets) {
            boolean[] seen = new boolean[n];
            for (ConsumerRecord<byte[], byte[]> r : recs) {
                int idx = groupIndex(r.value());
                if (seen[idx]) fail("message %d received twice", idx);
                seen[idx] = true;
                if (r.partition() != idx % 3 || r.offset() != offsets[idx])
                    fail("message %d read at %d/%d, produced to %d/%d", idx, r.partition(), r.offset(), idx % 3, offsets[idx]);
            }
            if (recs.size() != n) fail("received %d of %d messages", recs.size(), n);
        }

        void threeConsumers() {
            String topic = "jg-three", group = "jg-three";
            int n = 30_000;
            createTopic(admin, topic, 6);
            long[] offsets = produceIndexed(bootstrap, topic, n, 6);
            try (Crew crew = new Crew(topic, n, 6)) {
                for (int i = 0; i < 3; i++) crew.start("three-" + i, memberProps(bootstrap, group, "jg-three-" + i), false, 0);
                crew.waitUntil("3 consumers owning 2 partitions each, all messages read", 60_000,
                    () -> crew.unique.get() == n && crew.live().size() == 3 && crew.balanced(2));
                String atEnd = crew.state();
                crew.stopAll();
                crew.verifyExactlyOnce(offsets);
                System.out.printf("# three-consumers: %s%n", atEnd);
            }
            verifyCommittedAtEnd(group, topic, 6);   // each close() committed (auto commit) before leaving
            waitState(group, ConsumerGroupState.EMPTY, 5_000);
        }

        void failover() {
            String topic = "jg-failover", group = "jg-failover";
            int n = 12_000, stopAfter = 1_000;
            createTopic(admin, topic, 6);
            try (Crew crew = new Crew(topic, n, 6)) {
                Member[] m = new Member[3];
                for (int i = 0; i < 3; i++) {
                    Properties p = memberProps(bootstrap, group, "jg-failover-" + i);
                    p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
                    p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100");
                    m[i] = crew.start("failover-" + i, p, true, i == 1 ? stopAfter : 0);
                }
                Member victim = m[1];
                crew.waitUntil("3 consumers owning 2 partitions each", 30_000, () -> crew.live().size() == 3 && crew.balanced(2));
                Set<Integer> victimParts = victim.assignment;
                int share = n / 6 * victimParts.size();
                long[] offsets = produceIndexed(bootstrap, topic, n, 6);
                crew.waitUntil("the stopping consumer closed after " + stopAfter + " records", 30_000, () -> victim.closed);
                if (victim.error != null) fail("stopping consumer failed: %s", victim.error);
                crew.waitUntil("2 consumers owning 3 partitions each, all messages read", 60_000,
                    () -> crew.unique.get() == n && crew.live().size() == 2 && crew.balanced(3));
                String atEnd = crew.state();
                crew.stopAll();
                crew.verifyPlacement(offsets);
                for (Member x : m)
                    if (x.commitFailures.get() > 0) fail("%s: %d commitSync calls failed, last %s", x.name, x.commitFailures.get(), x.lastCommitError);
                for (int i = 0; i < n; i++) if (crew.counts.get(i) == 0) fail("message %d (%d/%d) never received", i, i % 6, offsets[i]);
                if (victim.got.size() >= share) fail("the stopping consumer read all %d of its messages: not mid-stream", victim.got.size());
                // At-least-once: only the stopped consumer's uncommitted tail is read twice, and its
                // partitions resume exactly at its last committed offsets.
                Map<Integer, Long> resume = new HashMap<>();
                for (int p : victimParts) resume.put(p, victim.lastCommitted.getOrDefault(new TopicPartition(topic, p), 0L));
                int dups = 0, tail = 0;
                synchronized (victim.got) { for (Got g : victim.got) if (g.offset >= resume.get(g.partition)) tail++; }
                for (int i = 0; i < n; i++) {
                    if (crew.counts.get(i) < 2) continue;
                    dups++;
                    int p = i % 6;
                    if (!victimParts.contains(p))
                        fail("message %d (%d/%d) read twice, but partition %d was not the stopped consumer's %s", i, p, offsets[i], p, victimParts);
                    if (offsets[i] < resume.get(p))
                        fail("message %d (%d/%d) read twice, below the stopped consumer's committed offset %d", i, p, offsets[i], resume.get(p));
                }
                if (dups != tail)
                    fail("%d messages read twice, but the stopped consumer left %d read and uncommitted", dups, tail);
                if (tail == 0) fail("the stopped consumer left nothing uncommitted: its last batch was committed on close");
                for (int p : victimParts) {
                    long first = Long.MAX_VALUE;
                    for (int i = 0; i < 2; i++) {
                        Member x = m[i == 0 ? 0 : 2];
                        synchronized (x.got) { for (Got g : x.got) if (g.partition == p) first = Math.min(first, g.offset); }
                    }
                    if (first != resume.get(p))
                        fail("partition %d: taken over from offset %d, the stopped consumer had committed %d", p, first, resume.get(p));
                }
                System.out.printf("# failover: %s stopped after %d records owning %s, committed %s; %d read twice; then %s%n",
                    victim.name, victim.got.size(), victimParts, resume, dups, atEnd);
            }
        }

        void fourthJoins() {
            String topic = "jg-fourth", group = "jg-fourth";
            int n = 600;
            createTopic(admin, topic, 6);
            long[] offsets = produceIndexed(bootstrap, topic, n, 6);
            try (Crew crew = new Crew(topic, n, 6)) {
                for (int i = 0; i < 3; i++) crew.start("fourth-" + i, memberProps(bootstrap, group, "jg-fourth-" + i), false, 0);
                crew.waitUntil("3 consumers owning 2 partitions each", 30_000, () -> crew.live().size() == 3 && crew.balanced(2));
                Member fourth = crew.start("fourth-3", memberProps(bootstrap, group, "jg-fourth-3"), false, 0);
                crew.waitUntil("the 4th consumer owns a partition, all 6 assigned once among 4", 30_000,
                    () -> crew.live().size() == 4 && !fourth.assignment.isEmpty() && crew.coversOnce());
                String atEnd = crew.state();
                crew.waitUntil("all messages read", 30_000, () -> crew.unique.get() == n);
                crew.stopAll();
                crew.verifyExactlyOnce(offsets);
                System.out.printf("# fourth-joins: %s%n", atEnd);
            }
        }

        void twoGroups() {
            String topic = "jg-two";
            int n = 1_000;
            createTopic(admin, topic, 3);
            long[] offsets = produceIndexed(bootstrap, topic, n, 3);
            try (Crew a = new Crew(topic, n, 3); Crew b = new Crew(topic, n, 3)) {
                a.start("two-a", memberProps(bootstrap, "jg-two-a", "jg-two-a"), false, 0);
                b.start("two-b", memberProps(bootstrap, "jg-two-b", "jg-two-b"), false, 0);
                a.waitUntil("group jg-two-a read every message", 30_000, () -> a.unique.get() == n);
                b.waitUntil("group jg-two-b read every message", 30_000, () -> b.unique.get() == n);
                a.stopAll();
                b.stopAll();
                a.verifyExactlyOnce(offsets);
                b.verifyExactlyOnce(offsets);
            }
            verifyCommittedAtEnd("jg-two-a", topic, 3);
            verifyCommittedAtEnd("jg-two-b", topic, 3);
        }

        void staticMembership() {
            String topic = "jg-static", group = "jg-static";
            int n = 600;
            createTopic(admin, topic, 6);
            produceIndexed(bootstrap, topic, n, 6);
            try (Crew crew = new Crew(topic, n, 6)) {
                Member[] m = new Member[3];
                m[0] = crew.start("static-0", staticProps(group, 0), false, 0);
                // Let static-0 join first (so it is the leader, the harder case to restart), then the others.
                long deadline = System.currentTimeMillis() + 3_000;
                while (describe(group).members().isEmpty() && System.currentTimeMillis() < deadline) sleep(50);
                for (int i = 1; i < 3; i++) m[i] = crew.start("static-" + i, staticProps(group, i), false, 0);
                crew.waitUntil("3 static consumers owning 2 partitions each", 30_000, () -> crew.live().size() == 3 && crew.balanced(2));
                for (int i : new int[] {0, 2}) m[i] = restartStatic(crew, group, m, i);
                crew.waitUntil("all messages read", 30_000, () -> crew.unique.get() == n);
                crew.stopAll();
            }
        }

        Properties staticProps(String group, int i) {
            Properties p = memberProps(bootstrap, group, "jg-static-" + i);
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "jg-static-" + i);
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "30000");
            return p;
        }

        /** Closes static member i (Java sends no LeaveGroup for a static member) and starts a new
         *  consumer with the same group.instance.id: it must get the same partitions back within
         *  the same generation, and the others must see no rebalance. */
        Member restartStatic(Crew crew, String group, Member[] m, int i) {
            String instance = "jg-static-" + i;
            Member old = m[i];
            Set<Integer> parts = old.assignment;
            int gen = old.generation;
            String oldId = old.memberId;
            Map<Member, Integer> mark = new HashMap<>();
            for (int j = 0; j < 3; j++) if (j != i) mark.put(m[j], m[j].events.size());
            old.stop();
            ConsumerGroupDescription d = describe(group);
            MemberDescription md = null;
            for (MemberDescription x : d.members()) if (x.groupInstanceId().orElse("").equals(instance)) md = x;
            if (d.state() != ConsumerGroupState.STABLE || d.members().size() != 3 || md == null || !md.consumerId().equals(oldId))
                fail("after closing static member %s (member id %s) the group is %s with members %s: a static member's close "
                    + "must leave it in the group until its session times out", instance, oldId, d.state(), memberIds(d));
            Member fresh = crew.start("static-" + i + "-restarted", staticProps(group, i), false, 0);
            crew.waitUntil("restarted " + instance + " gets its partitions back", 20_000, () -> !fresh.assignment.isEmpty());
            if (!fresh.assignment.equals(parts)) fail("restarted %s got partitions %s, it had %s", instance, fresh.assignment, parts);
            // A rebalance would reach the others at their next heartbeat (heartbeat.interval.ms 3 s):
            // watch for one interval and a half.
            long until = System.currentTimeMillis() + 4_500;
            while (System.currentTimeMillis() < until) {
                for (Member x : crew.members) if (x.error != null) fail("consumer %s failed: %s", x.name, x.error);
                sleep(100);
            }
            for (Map.Entry<Member, Integer> e : mark.entrySet()) {
                List<String> ev = e.getKey().events;
                if (ev.size() != e.getValue())
                    fail("while %s restarted, %s saw rebalance callbacks %s", instance, e.getKey().name, ev.subList(e.getValue(), ev.size()));
                if (e.getKey().generation != gen) fail("%s moved from generation %d to %d", e.getKey().name, gen, e.getKey().generation);
            }
            if (fresh.generation != gen) fail("restarted %s is in generation %d, the group was in %d", instance, fresh.generation, gen);
            if (fresh.events.size() != 1) fail("restarted %s saw callbacks %s, want one assignment", instance, fresh.events);
            d = describe(group);
            md = null;
            for (MemberDescription x : d.members()) if (x.groupInstanceId().orElse("").equals(instance)) md = x;
            if (d.state() != ConsumerGroupState.STABLE || d.members().size() != 3 || md == null || md.consumerId().equals(oldId)
                || !md.consumerId().equals(fresh.memberId))
                fail("after restarting %s the group is %s with members %s; the new consumer's member id is %s (old %s)",
                    instance, d.state(), memberIds(d), fresh.memberId, oldId);
            System.out.printf("# static-membership: %s restarted in generation %d with %s, member id %s -> %s%n",
                instance, gen, parts, oldId, fresh.memberId);
            return fresh;
        }

        static String memberIds(ConsumerGroupDescription d) {
            StringJoiner j = new StringJoiner(", ", "[", "]");
            for (MemberDescription x : d.members())
                j.add(x.groupInstanceId().orElse("-") + "=" + x.consumerId() + " " + partitionsOf(x));
            return j.toString();
        }

        static String partitionsOf(MemberDescription x) { return partitions(x.assignment().topicPartitions()); }

        void runAdmin() {
            String topic = "jg-admin", active = "jg-admin-active", empty = "jg-admin-empty";
            int n = 90;
            Crew[] crews = new Crew[2];
            try {
                if (!s.check("admin-list-groups", () -> {
                    createTopic(admin, topic, 3);
                    produceIndexed(bootstrap, topic, n, 3);
                    crews[0] = new Crew(topic, n, 3);
                    crews[1] = new Crew(topic, n, 3);
                    crews[0].start("admin-active", memberProps(bootstrap, active, "jg-admin-active"), false, 0);
                    crews[1].start("admin-empty", memberProps(bootstrap, empty, "jg-admin-empty"), false, 0);
                    crews[0].waitUntil(active + " read every message", 30_000, () -> crews[0].unique.get() == n && crews[0].balanced(3));
                    crews[1].waitUntil(empty + " read every message", 30_000, () -> crews[1].unique.get() == n);
                    crews[1].stopAll();   // commits (auto commit) and leaves: the group is Empty with offsets
                    waitState(empty, ConsumerGroupState.EMPTY, 5_000);
                    Map<String, ConsumerGroupListing> byId = new HashMap<>();
                    for (ConsumerGroupListing l : await(admin.listConsumerGroups().all(), "listConsumerGroups")) byId.put(l.groupId(), l);
                    for (String g : Arrays.asList(active, empty, "jg-three", "jg-failover", "jg-two-a", "jg-console-group"))
                        if (!byId.containsKey(g)) fail("listConsumerGroups %s lacks %s", new TreeSet<>(byId.keySet()), g);
                    ConsumerGroupListing la = byId.get(active), le = byId.get(empty);
                    if (la.isSimpleConsumerGroup() || le.isSimpleConsumerGroup()) fail("listed as simple groups: %s %s", la, le);
                    if (!la.state().equals(Optional.of(ConsumerGroupState.STABLE))) fail("%s listed as %s, want Stable", active, la.state());
                    if (!le.state().equals(Optional.of(ConsumerGroupState.EMPTY))) fail("%s listed as %s, want Empty", empty, le.state());
                })) return;
                s.check("admin-describe-groups", () -> {
                    Map<String, ConsumerGroupDescription> ds = await(admin.describeConsumerGroups(Arrays.asList(active, empty)).all(),
                        "describeConsumerGroups");
                    ConsumerGroupDescription da = ds.get(active), de = ds.get(empty);
                    if (da == null || de == null) fail("describeConsumerGroups returned %s", ds.keySet());
                    if (da.state() != ConsumerGroupState.STABLE || da.members().size() != 1)
                        fail("%s: %s with %d members, want Stable with 1", active, da.state(), da.members().size());
                    MemberDescription md = da.members().iterator().next();
                    if (!md.clientId().equals("jg-admin-active")) fail("member client id %s", md.clientId());
                    if (md.consumerId().isEmpty() || md.host().isEmpty()) fail("member id %s host %s", md.consumerId(), md.host());
                    if (!partitionsOf(md).equals("[0, 1, 2]") || md.assignment().topicPartitions().size() != 3)
                        fail("member assignment %s, want %s-0..2", md.assignment().topicPartitions(), topic);
                    if (!"range".equals(da.partitionAssignor())) fail("%s: partition assignor %s, want range", active, da.partitionAssignor());
                    if (da.isSimpleConsumerGroup()) fail("%s described as a simple group", active);
                    if (da.coordinator() == null || da.coordinator().id() != 1) fail("coordinator %s, want node 1", da.coordinator());
                    if (de.state() != ConsumerGroupState.EMPTY || !de.members().isEmpty())
                        fail("%s: %s with members %s, want Empty with none", empty, de.state(), de.members());
                });
                s.check("admin-delete-offsets", () -> {
                    TopicPartition p0 = new TopicPartition(topic, 0);
                    await(admin.deleteConsumerGroupOffsets(empty, Collections.singleton(p0)).all(), "deleteConsumerGroupOffsets " + empty);
                    Map<TopicPartition, OffsetAndMetadata> c = committed(empty);
                    if (c.containsKey(p0)) fail("%s still has an offset for %s after deleting it: %s", empty, p0, c);
                    for (int p = 1; p < 3; p++)
                        if (!c.containsKey(new TopicPartition(topic, p))) fail("%s lost its offset for %s-%d too: %s", empty, topic, p, c);
                    try {
                        admin.deleteConsumerGroupOffsets(active, Collections.singleton(p0)).all().get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                        fail("deleting offsets of %s, which a member of the active %s is subscribed to, succeeded", p0, active);
                    } catch (ExecutionException e) {
                        if (!(e.getCause() instanceof GroupSubscribedToTopicException))
                            fail("deleting offsets of a subscribed topic: %s, want GroupSubscribedToTopicException", e.getCause());
                    } catch (InterruptedException | TimeoutException e) {
                        fail("deleting offsets of a subscribed topic: %s", e);
                    }
                });
                s.check("admin-delete-groups", () -> {
                    try {
                        admin.deleteConsumerGroups(Collections.singleton(active)).all().get(OP_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                        fail("deleting the active group %s succeeded", active);
                    } catch (ExecutionException e) {
                        if (!(e.getCause() instanceof GroupNotEmptyException))
                            fail("deleting an active group: %s, want GroupNotEmptyException", e.getCause());
                    } catch (InterruptedException | TimeoutException e) {
                        fail("deleting an active group: %s", e);
                    }
                    await(admin.deleteConsumerGroups(Collections.singleton(empty)).all(), "deleteConsumerGroups " + empty);
                    Set<String> ids = new TreeSet<>();
                    for (ConsumerGroupListing l : await(admin.listConsumerGroups().all(), "listConsumerGroups")) ids.add(l.groupId());
                    if (ids.contains(empty)) fail("%s still listed after deletion: %s", empty, ids);
                    if (!ids.contains(active)) fail("%s no longer listed: %s", active, ids);
                    if (!committed(empty).isEmpty()) fail("deleted group %s still has offsets %s", empty, committed(empty));
                    // Once its last member has left, the other group can be deleted too.
                    crews[0].stopAll();
                    waitState(active, ConsumerGroupState.EMPTY, 5_000);
                    await(admin.deleteConsumerGroups(Collections.singleton(active)).all(), "deleteConsumerGroups " + active + " (now empty)");
                });
            } finally {
                for (Crew c : crews) if (c != null) c.close();
            }
        }
    }

    static int cmdGroupsSuite(String bootstrap, Args a) {
        Suite s = new Suite(bootstrap, a.get("name", "java-groups"), 0);
        long t0 = System.nanoTime();
        System.out.println("# kafka-clients " + AppInfoVersion.get() + " against " + bootstrap + ": classic consumer groups");
        try (Admin admin = admin(bootstrap)) {
            new GroupSuite(bootstrap, admin, s).run();
        }
        System.out.printf("# %s: %d check(s) failed, %d s%n", s.name, s.failures, (System.nanoTime() - t0) / 1_000_000_000L);
        return s.failures == 0 ? 0 : 1;
    }

    /** kafka-clients version, read the way the clients log it. */
    static final class AppInfoVersion {
        static String get() { return org.apache.kafka.common.utils.AppInfoParser.getVersion(); }
    }

    public static void main(String[] argv) {
        if (argv.length < 3 || !argv[0].equals("--bootstrap-server")) usage("need --bootstrap-server HOST:PORT COMMAND");
        String bootstrap = argv[1];
        Args a = new Args(argv, 3);
        int rc;
        try {
            switch (argv[2]) {
                case "topics": rc = cmdTopics(bootstrap, a); break;
                case "produce": rc = cmdProduce(bootstrap, a); break;
                case "consume": rc = cmdConsume(bootstrap, a); break;
                case "suite": rc = cmdSuite(bootstrap, a); break;
                case "groups-suite": rc = cmdGroupsSuite(bootstrap, a); break;
                default: usage("unknown command " + argv[2]); return;
            }
        } catch (CheckFailed e) {
            System.err.println("error: " + e.getMessage());
            rc = 1;
        }
        System.out.flush();
        // Client threads (metadata refresh, etc.) must not keep the JVM alive.
        System.exit(rc);
    }
}
