// The security suite's Java side (kafka-clients 4.3.0, source-file mode):
//   java -cp <jars> ClientCheck.java <bootstrap> <topic> <n> key=value...
// produces n records (acks=all, idempotent) and reads them back with the client settings given
// as key=value (security.protocol=SASL_SSL, sasl.jaas.config=..., ssl.truststore.type=PEM,
// ...); with <topic> "@scram-user" it instead creates SCRAM users through the Admin client:
// each key=value after the bootstrap is <user>=<mechanism>:<password>, the rest client settings.
// With <topic> "@acl" it creates ACLs through the Admin client: each acl=<ALLOW|DENY>,<principal>,
// <operation>,<resource type>,<LITERAL|PREFIXED>,<name> argument is one binding (host *).
// With a topic name starting "@slow:" it produces one record every 100 ms for <n> records
// (re-authentication happens meanwhile). Prints "ok <n>" or exits 1 with the exception:
// "fail <exception class>: <message>".
import java.time.Duration;
import java.util.*;

import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.*;

public class ClientCheck {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int n = Integer.parseInt(args[2]);
        Properties common = new Properties();
        common.put("bootstrap.servers", bootstrap);
        List<UserScramCredentialUpsertion> users = new ArrayList<>();
        List<org.apache.kafka.common.acl.AclBinding> acls = new ArrayList<>();
        for (int i = 3; i < args.length; i++) {
            int eq = args[i].indexOf('=');
            String k = args[i].substring(0, eq), v = args[i].substring(eq + 1);
            if (topic.equals("@scram-user") && v.startsWith("SCRAM-SHA-")) {
                int colon = v.indexOf(':');
                users.add(new UserScramCredentialUpsertion(k,
                        new ScramCredentialInfo(ScramMechanism.fromMechanismName(v.substring(0, colon)), 4096),
                        v.substring(colon + 1)));
            } else if (topic.equals("@acl") && k.equals("acl")) {
                String[] f = v.split(",", 6);
                acls.add(new org.apache.kafka.common.acl.AclBinding(
                        new org.apache.kafka.common.resource.ResourcePattern(
                                org.apache.kafka.common.resource.ResourceType.valueOf(f[3]), f[5],
                                org.apache.kafka.common.resource.PatternType.valueOf(f[4])),
                        new org.apache.kafka.common.acl.AccessControlEntry(f[1], "*",
                                org.apache.kafka.common.acl.AclOperation.valueOf(f[2]),
                                org.apache.kafka.common.acl.AclPermissionType.valueOf(f[0]))));
            } else {
                common.put(k, v);
            }
        }
        boolean slow = topic.startsWith("@slow:");
        if (slow) topic = topic.substring("@slow:".length());
        try {
            if (topic.equals("@acl")) {
                try (Admin admin = Admin.create(common)) {
                    admin.createAcls(acls).all().get();
                }
                System.out.println("ok " + acls.size());
                return;
            }
            if (topic.equals("@scram-user")) {
                try (Admin admin = Admin.create(common)) {
                    admin.alterUserScramCredentials(new ArrayList<>(users)).all().get();
                }
                System.out.println("ok " + users.size());
                return;
            }
            Properties p = new Properties();
            p.putAll(common);
            p.put("acks", "all");
            p.put("enable.idempotence", "true");
            p.put("max.block.ms", "15000");
            p.put("delivery.timeout.ms", "20000");
            p.put("request.timeout.ms", "10000");
            p.put("key.serializer", StringSerializer.class.getName());
            p.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
                for (int i = 0; i < n; i++) {
                    producer.send(new ProducerRecord<>(topic, 0, "k" + i, "java-" + i)).get();
                    if (slow) Thread.sleep(100);
                }
            }
            Properties c = new Properties();
            c.putAll(common);
            c.put("key.deserializer", StringDeserializer.class.getName());
            c.put("value.deserializer", StringDeserializer.class.getName());
            c.put("default.api.timeout.ms", "15000");
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
                TopicPartition tp = new TopicPartition(topic, 0);
                consumer.assign(List.of(tp));
                consumer.seekToBeginning(List.of(tp));
                List<String> got = new ArrayList<>();
                long deadline = System.currentTimeMillis() + 30_000;
                while (got.size() < n && System.currentTimeMillis() < deadline)
                    for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500)))
                        if (r.value().startsWith("java-")) got.add(r.value());
                for (int i = 0; i < n; i++)
                    if (got.size() <= i || !got.get(i).equals("java-" + i)) {
                        System.out.println("fail read " + got.size() + " of " + n);
                        System.exit(1);
                    }
            }
            System.out.println("ok " + n);
        } catch (Exception e) {
            Throwable t = e.getCause() != null && e instanceof java.util.concurrent.ExecutionException ? e.getCause() : e;
            StringBuilder why = new StringBuilder("fail " + t.getClass().getName() + ": " + t.getMessage());
            for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause())
                why.append(" | caused by ").append(c.getClass().getName()).append(": ").append(c.getMessage());
            System.out.println(why);
            System.exit(1);
        }
    }
}
