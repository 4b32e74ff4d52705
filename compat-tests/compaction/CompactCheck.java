// The compaction suite's Java side (kafka-clients 4.3.0, run in source-file mode: `java -cp
// <jars> CompactCheck.java <cmd> ...`). Commands, each on one topic's partition 0:
//   produce <bootstrap> <topic> <spec>   spec: key=value,key=,... (an empty value: a tombstone);
//                                        idempotent acks=all; prints "acked <key> <offset>" lines
//   keyless <bootstrap> <topic>          a record without a key: prints "refused <exception>" if
//                                        the send fails with InvalidRecordException, else exits 1
//   read <bootstrap> <topic>             every record from the beginning up to the end offset:
//                                        "rec <offset> <key> <value or <null>>", then
//                                        "range <beginning offset> <end offset>"
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;

import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.InvalidRecordException;
import org.apache.kafka.common.serialization.*;

public class CompactCheck {
    static Properties producerProps(String bootstrap) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        p.put("linger.ms", "0");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        return p;
    }

    public static void main(String[] args) throws Exception {
        String cmd = args[0], bootstrap = args[1], topic = args[2];
        switch (cmd) {
            case "produce": {
                try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps(bootstrap))) {
                    for (String kv : args[3].split(",")) {
                        String[] parts = kv.split("=", -1);
                        String value = parts[1].isEmpty() ? null : parts[1];
                        RecordMetadata m = p.send(new ProducerRecord<>(topic, 0, parts[0], value)).get();
                        System.out.println("acked " + parts[0] + " " + m.offset());
                    }
                }
                break;
            }
            case "keyless": {
                try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps(bootstrap))) {
                    p.send(new ProducerRecord<>(topic, 0, null, "no-key")).get();
                    System.out.println("accepted");
                    System.exit(1);
                } catch (ExecutionException e) {
                    if (e.getCause() instanceof InvalidRecordException) {
                        System.out.println("refused " + e.getCause());
                    } else {
                        System.out.println("unexpected " + e.getCause());
                        System.exit(1);
                    }
                }
                break;
            }
            case "read": {
                Properties c = new Properties();
                c.put("bootstrap.servers", bootstrap);
                c.put("key.deserializer", StringDeserializer.class.getName());
                c.put("value.deserializer", StringDeserializer.class.getName());
                c.put("enable.auto.commit", "false");
                try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                    TopicPartition tp = new TopicPartition(topic, 0);
                    consumer.assign(List.of(tp));
                    consumer.seekToBeginning(List.of(tp));
                    long begin = consumer.beginningOffsets(List.of(tp)).get(tp);
                    long end = consumer.endOffsets(List.of(tp)).get(tp);
                    long deadline = System.currentTimeMillis() + 30_000;
                    while (consumer.position(tp) < end && System.currentTimeMillis() < deadline) {
                        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                            System.out.println("rec " + r.offset() + " " + r.key() + " "
                                    + (r.value() == null ? "<null>" : r.value()));
                        }
                    }
                    System.out.println("range " + begin + " " + end);
                }
                break;
            }
            default:
                System.err.println("unknown command " + cmd);
                System.exit(2);
        }
    }
}
