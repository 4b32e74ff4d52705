// kafkajs 2.2.4 against Sluice.
//
// Per codec: admin.createTopics (3 partitions), listTopics / fetchTopicMetadata / describeConfigs,
// producer.send (Java-compatible DefaultPartitioner, explicit timestamps, headers) with the
// per-partition base offsets it reports, read back per partition, fetchTopicOffsets /
// fetchTopicOffsetsByTimestamp, deleteTopics.
//
// kafkajs has no assign(): its consumer always joins a group. Groups are not required here, so
// the read-back drives kafkajs's own Fetch path (its Cluster and Broker classes: Fetch request
// encoding, record batch decoding and decompression) without the group protocol.
//
// Codecs: kafkajs ships gzip only. snappy = kafkajs-snappy; lz4 and zstd = small adapters over
// lz4js and @mongodb-js/zstd (kafkajs-lz4 and @kafkajs/zstd need native builds, see FINDINGS.md).
'use strict'

const { Kafka, CompressionTypes, CompressionCodecs, ConfigResourceTypes, Partitioners, logLevel } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const lz4js = require('lz4js')
const zstd = require('@mongodb-js/zstd')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = () => ({
  compress: async encoder => Buffer.from(lz4js.compress(encoder.buffer)),
  decompress: async buffer => Buffer.from(lz4js.decompress(buffer)),
})
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  compress: async encoder => zstd.compress(encoder.buffer, 3),
  decompress: async buffer => zstd.decompress(buffer),
})

const CODECS = {
  none: CompressionTypes.None,
  gzip: CompressionTypes.GZIP,
  snappy: CompressionTypes.Snappy,
  lz4: CompressionTypes.LZ4,
  zstd: CompressionTypes.ZSTD,
}
// (codec, acks, idempotent): the same plan as lib/compat.py's CODEC_RUNS.
const CODEC_RUNS = [
  ['none', -1, true],
  ['gzip', 1, false],
  ['snappy', -1, true],
  ['lz4', 1, false],
  ['zstd', -1, true],
]
const NUM_PARTITIONS = 3
const TIMEOUT_MS = 30000

class CheckFailed extends Error {}
const fail = msg => { throw new CheckFailed(msg) }

let failures = 0
async function check (name, fn) {
  const t0 = Date.now()
  try {
    const r = await withTimeout(fn(), 180000, name)
    console.log(`PASS ${name} (${Date.now() - t0} ms)`)
    return { ok: true, value: r }
  } catch (e) {
    failures++
    const why = e instanceof CheckFailed ? e.message : `unexpected ${e.name}: ${e.message}`
    console.log(`FAIL ${name}: ${why.replace(/\n/g, ' ')}`)
    if (!(e instanceof CheckFailed)) console.error(e.stack)
    return { ok: false }
  }
}

function withTimeout (promise, ms, what) {
  let timer
  const t = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, t]).finally(() => clearTimeout(timer))
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

// Kafka's murmur2 (the Java client's Utils.murmur2), signed 32-bit.
function murmur2 (buf) {
  const m = 0x5bd1e995
  const len = buf.length
  let h = (0x9747b28c ^ len) | 0
  for (let i = 0; i + 4 <= len; i += 4) {
    let k = buf[i] | (buf[i + 1] << 8) | (buf[i + 2] << 16) | (buf[i + 3] << 24)
    k = Math.imul(k, m)
    k ^= k >>> 24
    k = Math.imul(k, m)
    h = Math.imul(h, m) ^ k
  }
  const tail = len & ~3
  switch (len % 4) {
    case 3: h ^= buf[tail + 2] << 16 // falls through
    case 2: h ^= buf[tail + 1] << 8 // falls through
    case 1: h ^= buf[tail]; h = Math.imul(h, m)
  }
  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15
  return h
}
const keyPartition = key => (murmur2(key) & 0x7fffffff) % NUM_PARTITIONS

function makeMessages (codec, n, baseTs) {
  const out = []
  for (let i = 0; i < n; i++) {
    let v = `value-${i}-`
    for (let j = v.length; j < 100; j++) v += String.fromCharCode(97 + (i + j) % 26)
    out.push({
      index: i,
      key: Buffer.from(`key-${i % 1000}`),
      value: Buffer.from(v),
      headers: { idx: String(i), codec },
      ts: baseTs + i,
      partition: -1,
      offset: -1,
    })
  }
  return out
}

async function produce (kafka, topic, msgs, codec, acks, idempotent) {
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent,
    maxInFlightRequests: idempotent ? 1 : 5,
    allowAutoTopicCreation: false,
  })
  await producer.connect()
  try {
    const chunk = 1000
    for (let start = 0; start < msgs.length; start += chunk) {
      const part = msgs.slice(start, start + chunk)
      const res = await producer.send({
        topic,
        acks,
        timeout: TIMEOUT_MS,
        compression: CODECS[codec],
        messages: part.map(m => ({ key: m.key, value: m.value, headers: m.headers, timestamp: String(m.ts) })),
      })
      // kafkajs reports one base offset per partition and send() call; messages of a partition
      // are appended in send order, so message k of partition p lands at baseOffset + k.
      const base = {}
      for (const r of res) {
        if (r.errorCode !== 0) fail(`partition ${r.partition}: error code ${r.errorCode}`)
        base[r.partition] = BigInt(r.baseOffset)
      }
      const seen = {}
      for (const m of part) {
        const p = keyPartition(m.key)
        if (!(p in base)) fail(`message ${m.index}: no produce result for its key's partition ${p}`)
        seen[p] = (seen[p] || 0n)
        m.partition = p
        m.offset = Number(base[p] + seen[p])
        seen[p]++
      }
    }
  } finally {
    await producer.disconnect()
  }
  const next = [0, 0, 0]
  for (const m of msgs) {
    if (m.offset !== next[m.partition]) {
      fail(`message ${m.index} at ${m.partition}/${m.offset}, expected offset ${next[m.partition]} (consecutive)`)
    }
    next[m.partition]++
  }
  return next
}

// The Kafka client's private cluster factory: Fetch without joining a group.
function createCluster (kafka) {
  const sym = Object.getOwnPropertySymbols(kafka).find(s => s.description === 'private:Kafka:createCluster')
  if (!sym) fail('kafkajs internals changed: no private createCluster')
  return kafka[sym]({ allowAutoTopicCreation: false, isolationLevel: 0 })
}

async function consumePartition (kafka, topic, p, start, count, timeoutMs = 90000) {
  const cluster = createCluster(kafka)
  await cluster.connect()
  const out = []
  try {
    await cluster.addTargetTopic(topic)
    await cluster.refreshMetadata()
    const leaders = cluster.findLeaderForPartitions(topic, [p])
    const leaderId = Object.keys(leaders)[0]
    if (leaderId === undefined) fail(`no leader for ${topic}/${p}`)
    const broker = await cluster.findBroker({ nodeId: leaderId })
    let offset = BigInt(start)
    const deadline = Date.now() + timeoutMs
    while (out.length < count && Date.now() < deadline) {
      const resp = await broker.fetch({
        replicaId: -1,
        isolationLevel: 0,
        maxWaitTime: 500,
        minBytes: 1,
        maxBytes: 4 * 1024 * 1024,
        topics: [{ topic, partitions: [{ partition: p, fetchOffset: offset.toString(), maxBytes: 1024 * 1024 }] }],
      })
      for (const t of resp.responses) {
        for (const pr of t.partitions) {
          if (pr.errorCode !== 0) fail(`fetch ${topic}/${p} at ${offset}: error code ${pr.errorCode}`)
          for (const r of pr.messages) {
            if (BigInt(r.offset) < offset) continue // a batch may start before the fetch offset
            out.push(r)
            offset = BigInt(r.offset) + 1n
          }
        }
      }
    }
  } finally {
    await cluster.disconnect()
  }
  return out
}

function verifyPartition (msgs, p, recs, expected) {
  const byOffset = new Map()
  for (const m of msgs) if (m.partition === p) byOffset.set(m.offset, m)
  if (recs.length !== expected) fail(`partition ${p}: read ${recs.length} records, produced ${expected}`)
  recs.forEach((r, i) => {
    const off = Number(r.offset)
    if (off !== i) fail(`partition ${p}: record #${i} has offset ${off}`)
    const m = byOffset.get(off)
    if (!m) fail(`partition ${p} offset ${off}: no produce result for it`)
    if (!Buffer.from(r.key || '').equals(m.key)) fail(`partition ${p} offset ${i}: key ${r.key}, want ${m.key}`)
    if (!Buffer.from(r.value || '').equals(m.value)) fail(`partition ${p} offset ${i}: value ${String(r.value).slice(0, 40)}, want ${String(m.value).slice(0, 40)}`)
    if (Number(r.timestamp) !== m.ts) fail(`partition ${p} offset ${i}: timestamp ${r.timestamp}, want ${m.ts}`)
    const got = Object.entries(r.headers || {}).map(([k, v]) => [k, String(v)])
    const want = Object.entries(m.headers)
    if (JSON.stringify(got) !== JSON.stringify(want)) fail(`partition ${p} offset ${i}: headers ${JSON.stringify(got)}, want ${JSON.stringify(want)}`)
  })
}

async function deleteTopic (admin, topic) {
  await admin.deleteTopics({ topics: [topic], timeout: TIMEOUT_MS })
  const deadline = Date.now() + 15000
  while (Date.now() < deadline) {
    if (!(await admin.listTopics()).includes(topic)) return
    await sleep(200)
  }
  fail(`${topic} still listed 15 s after deletion`)
}

async function runCodec (kafka, admin, codec, acks, idempotent, n) {
  const topic = `compat-kafkajs-${codec}`
  const pre = `${codec}.`
  console.log(`# topic ${topic}: compression=${codec} acks=${acks} idempotent=${idempotent}`)
  const created = await check(pre + 'create-topic', async () => {
    const ok = await admin.createTopics({
      topics: [{ topic, numPartitions: NUM_PARTITIONS, replicationFactor: 1 }],
      waitForLeaders: true,
      timeout: TIMEOUT_MS,
    })
    if (ok !== true) fail(`createTopics returned ${ok} (topic existed?)`)
  })
  if (!created.ok) return
  await check(pre + 'list-topics', async () => {
    const names = await admin.listTopics()
    if (!names.includes(topic)) fail(`listTopics lacks ${topic}: ${names}`)
  })
  await check(pre + 'describe-topic', async () => {
    const md = await admin.fetchTopicMetadata({ topics: [topic] })
    const t = md.topics.find(x => x.name === topic)
    if (!t) fail(`fetchTopicMetadata lacks ${topic}`)
    if (t.partitions.length !== NUM_PARTITIONS) fail(`${t.partitions.length} partitions`)
    for (const p of t.partitions) {
      if (p.leader !== 1 || p.partitionErrorCode !== 0) fail(`partition ${p.partitionId}: leader ${p.leader} error ${p.partitionErrorCode}`)
    }
  })
  await check(pre + 'describe-configs', async () => {
    const r = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }], includeSynonyms: false })
    const res = r.resources[0]
    if (!res || res.errorCode !== 0 || res.configEntries.length === 0) fail(`describeConfigs: ${JSON.stringify(res).slice(0, 300)}`)
  })
  const baseTs = Math.floor((Date.now() - 600000) / 1000) * 1000
  const msgs = makeMessages(codec, n, baseTs)
  const produced = await check(pre + 'produce', () => produce(kafka, topic, msgs, codec, acks, idempotent))
  if (produced.ok) {
    const perPartition = produced.value
    await check(pre + 'consume', async () => {
      for (let p = 0; p < NUM_PARTITIONS; p++) {
        verifyPartition(msgs, p, await consumePartition(kafka, topic, p, 0, perPartition[p]), perPartition[p])
      }
    })
    await check(pre + 'list-offsets', async () => {
      const offs = await admin.fetchTopicOffsets(topic)
      const target = baseTs + Math.floor(n / 2)
      const byTs = await admin.fetchTopicOffsetsByTimestamp(topic, target)
      const past = await admin.fetchTopicOffsetsByTimestamp(topic, baseTs + n + 60000)
      for (let p = 0; p < NUM_PARTITIONS; p++) {
        const o = offs.find(x => x.partition === p)
        if (Number(o.low) !== 0) fail(`partition ${p}: earliest (-2) = ${o.low}, want 0`)
        if (Number(o.high) !== perPartition[p]) fail(`partition ${p}: latest (-1) = ${o.high}, want ${perPartition[p]}`)
        let want = -1
        for (const m of msgs) if (m.partition === p && m.ts >= target && (want < 0 || m.offset < want)) want = m.offset
        const got = byTs.find(x => x.partition === p)
        if (Number(got.offset) !== want) fail(`partition ${p}: offset for timestamp ${target} = ${got.offset}, want ${want}`)
        // kafkajs maps "no such offset" (-1) to the high watermark itself.
        const pst = past.find(x => x.partition === p)
        if (Number(pst.offset) !== perPartition[p]) fail(`partition ${p}: timestamp after every record gave ${pst.offset}, want ${perPartition[p]} (kafkajs maps -1 to latest)`)
      }
    })
  }
  await check(pre + 'delete-topic', () => deleteTopic(admin, topic))
}

async function main () {
  const bs = process.env.SLUICE_BOOTSTRAP
  if (!bs) { console.error('SLUICE_BOOTSTRAP is not set (run through compat-tests/run.sh)'); process.exit(2) }
  const n = parseInt(process.env.SLUICE_NUM_MESSAGES || '10000', 10)
  const version = require('kafkajs/package.json').version
  console.log(`# kafkajs ${version} on node ${process.version} against ${bs}`)
  const kafka = new Kafka({
    clientId: 'compat-kafkajs',
    brokers: [bs],
    logLevel: logLevel.WARN,
    connectionTimeout: 5000,
    requestTimeout: TIMEOUT_MS,
    retry: { retries: 3, initialRetryTime: 200 },
  })
  const admin = kafka.admin()
  const up = await check('cluster', async () => {
    await admin.connect()
    const c = await admin.describeCluster()
    if (c.brokers.length !== 1 || c.brokers[0].nodeId !== 1) fail(`brokers ${JSON.stringify(c.brokers)}`)
    if (c.controller !== 1) fail(`controller ${c.controller}, want 1`)
  })
  if (!up.ok) {
    console.log('# broker unusable, stopping')
  } else {
    for (const [codec, acks, idem] of CODEC_RUNS) await runCodec(kafka, admin, codec, acks, idem, n)
  }
  await admin.disconnect().catch(() => {})
  console.log(`# kafkajs: ${failures} check(s) failed`)
  process.exit(failures ? 1 : 0)
}

main().catch(e => { console.log(`FAIL main: unexpected ${e.stack}`); process.exit(1) })
