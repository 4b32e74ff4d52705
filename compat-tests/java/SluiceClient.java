// SluiceClient: the stock Kafka Java tools' behaviour in one small program, for Sluice's compat suite.
//
// Subcommands mirror the tools with their exact default client configs:
//   produce   like kafka-console-producer (idempotence on, acks=all, linger.ms=1000, batch.size=16384,
//             retries=3, request.timeout.ms=1500, client.id=console-producer)
//   consume   like kafka-console-consumer --partition P --offset N (assign + seek, never a group)
//   topics    like kafka-topics (create / list / describe via describeTopics + describeConfigs / delete)
//   suite     the compat checks: per codec, create a 3-partition topic, produce keyed messages with
//             headers, read them back by partition, list offsets, delete the topic. Also acks=0.
//
// Every check prints "PASS <check>" or "FAIL <check>: <reason>"; the exit code is non-zero on any FAIL.
// It compiles against kafka-clients 3.9.x and 4.x alike (only APIs present in both are used).
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.*;
import org.apache.kafka.common.config.ConfigResource;
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
            + "  suite [--name NAME] [--num-messages N]");
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
