// kafkajs 2.2.4 consumer groups against Sluice (the classic group protocol: FindCoordinator,
// JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups,
// ListGroups, DeleteGroups).
//
// Each check has its own 6-partition topic and group(s). Message i goes to partition i % 6, so it
// must come back at offset floor(i / 6) with key k<i> and a value naming the topic and i: every
// delivery is checked against where it must have been written.
//
// Delivery bookkeeping (Tracker, one per group): every delivery and every acknowledged commit
// (kafkajs's COMMIT_OFFSETS event, emitted synchronously after the OffsetCommit response) gets a
// global sequence number. Two rules follow from the group protocol and are checked on every
// delivery:
//   - redelivery: a message delivered again is only allowed at an offset >= the partition's last
//     acknowledged commit (otherwise the group resumed from an older offset than committed);
//   - resume point: the first message a member gets from a partition after each GROUP_JOIN is
//     exactly the last acknowledged commit (0 when nothing was committed: fromBeginning).
// Together with "every index delivered" these are exactly-once-modulo-commits.
'use strict'

const { Kafka, AssignerProtocol, Partitioners, logLevel } = require('kafkajs')

const NUM_PARTITIONS = 6
const ALL_PARTITIONS = [0, 1, 2, 3, 4, 5]
const TIMEOUT_MS = 30000
const CHECK_TIMEOUT_MS = 90000
const CLIENT_ID = 'compat-kafkajs-groups'
// Consumer settings for every group member: the broker's floor for the session timeout is 6 s;
// a short heartbeat interval and fetch wait make members notice a rebalance within about 0.5 s.
const MEMBER_OPTS = {
  sessionTimeout: 10000,
  rebalanceTimeout: 20000,
  heartbeatInterval: 500,
  maxWaitTimeInMs: 500,
  retry: { retries: 5, initialRetryTime: 200 },
}

class CheckFailed extends Error {}
const fail = msg => { throw new CheckFailed(msg) }
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

let failures = 0
async function check (name, fn) {
  const t0 = Date.now()
  const live = [] // consumers the check started: always disconnected afterwards
  try {
    const r = await withTimeout(fn(live), CHECK_TIMEOUT_MS, name)
    console.log(`PASS ${name} (${Date.now() - t0} ms)`)
    return { ok: true, value: r }
  } catch (e) {
    failures++
    const why = e instanceof CheckFailed ? e.message : `unexpected ${e.name}: ${e.message}`
    console.log(`FAIL ${name}: ${why.replace(/\n/g, ' ')}`)
    if (!(e instanceof CheckFailed)) console.error(e.stack)
    return { ok: false }
  } finally {
    await Promise.all(live.map(m => withTimeout(m.consumer.disconnect(), 20000, `${name}: disconnect ${m.name}`)
      .catch(e => console.log(`# ${name}: disconnecting ${m.name}: ${e.message}`))))
  }
}

function withTimeout (promise, ms, what) {
  let timer
  const t = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new CheckFailed(`${what} timed out after ${ms} ms`)), ms)
  })
  return Promise.race([promise, t]).finally(() => clearTimeout(timer))
}

// Polls cond (true, or a string saying what is still missing) until true or the deadline.
async function waitFor (what, ms, cond, every = 100) {
  const deadline = Date.now() + ms
  let last = 'never checked'
  for (;;) {
    const r = await cond()
    if (r === true) return
    last = r
    if (Date.now() >= deadline) fail(`${what}: not reached within ${ms} ms (${last})`)
    await sleep(every)
  }
}

let SEQ = 0
let rebalanceHeartbeats = 0

const perPartition = n => ALL_PARTITIONS.map(p => Math.floor((n - p + NUM_PARTITIONS - 1) / NUM_PARTITIONS))

// One group's view of one topic: deliveries, commits and the two rules above.
class Tracker {
  constructor (topic, n, group) {
    this.topic = topic
    this.n = n
    this.group = group
    this.ends = perPartition(n)
    this.count = new Uint16Array(n)
    this.distinct = 0
    this.deliveries = 0
    this.redelivered = [] // {p, o, by, commit}
    this.bad = [] // rule violations and wrong records
    this.lastCommit = ALL_PARTITIONS.map(() => null) // {offset, seq, by}
    this.commits = [] // every acknowledged commit
  }

  problem (msg) { if (this.bad.length < 20) this.bad.push(msg) }

  commit (member, payload) {
    const seq = ++SEQ
    for (const t of payload.topics) {
      if (t.topic !== this.topic) continue
      for (const { partition, offset } of t.partitions) {
        const c = { p: partition, offset: Number(offset), seq, by: member.name }
        this.lastCommit[partition] = c
        this.commits.push(c)
      }
    }
  }

  committed (p) { return this.lastCommit[p] ? this.lastCommit[p].offset : 0 }

  record (member, p, message) {
    const seq = ++SEQ
    const o = Number(message.offset)
    this.deliveries++
    member.consumed++
    const v = message.value ? message.value.toString() : ''
    const k = message.key ? message.key.toString() : ''
    const mm = /^([^|]+)\|(\d+)\|/.exec(v)
    if (!mm || mm[1] !== this.topic) return this.problem(`${p}/${o}: value ${v.slice(0, 40)} is not from ${this.topic}`)
    const i = Number(mm[2])
    if (i >= this.n || i % NUM_PARTITIONS !== p || Math.floor(i / NUM_PARTITIONS) !== o || k !== `k${i}`) {
      return this.problem(`${p}/${o}: message ${i} (key ${k}) must be at ${i % NUM_PARTITIONS}/${Math.floor(i / NUM_PARTITIONS)}`)
    }
    // Resume point: first delivery of p to this member since its last GROUP_JOIN.
    const run = member.runs[p]
    if (!run || run.join !== member.joins) {
      const want = this.committed(p)
      if (o !== want) {
        this.problem(`${member.name} (join #${member.joins}) started ${p} at offset ${o}, last acknowledged commit ${want}`)
      }
      member.runs[p] = { join: member.joins, next: o + 1 }
    } else {
      if (o !== run.next) this.problem(`${member.name}: ${p}/${o} after ${p}/${run.next - 1} (not consecutive)`)
      run.next = o + 1
    }
    this.count[i]++
    if (this.count[i] === 1) {
      this.distinct++
    } else {
      const c = this.committed(p)
      this.redelivered.push({ p, o, by: member.name, commit: c, seq })
      if (o < c) this.problem(`${p}/${o} delivered again (to ${member.name}) below the acknowledged commit ${c}`)
    }
  }

  missing () {
    const out = []
    for (let i = 0; i < this.n && out.length < 5; i++) if (this.count[i] === 0) out.push(`${i % NUM_PARTITIONS}/${Math.floor(i / NUM_PARTITIONS)}`)
    return out
  }

  verifyAll () {
    if (this.bad.length) fail(`${this.group}: ${this.bad.slice(0, 5).join('; ')}`)
    if (this.distinct !== this.n) fail(`${this.group}: ${this.distinct} of ${this.n} messages delivered; missing e.g. ${this.missing()}`)
  }
}

function newMember (kafka, tracker, groupId, name, live, opts = {}) {
  const m = {
    name,
    groupId,
    joins: 0,
    assignment: null,
    memberId: null,
    isLeader: false,
    consumed: 0,
    runs: {},
    crashes: [],
    stopping: false,
  }
  const { runOpts, ...consumerOpts } = opts
  m.consumer = kafka.consumer({ groupId, ...MEMBER_OPTS, ...consumerOpts })
  const ev = m.consumer.events
  m.consumer.on(ev.GROUP_JOIN, e => {
    m.joins++
    m.memberId = e.payload.memberId
    m.isLeader = e.payload.isLeader
    m.assignment = (e.payload.memberAssignment[tracker.topic] || []).slice().sort((a, b) => a - b)
    m.joinedAt = Date.now()
  })
  m.consumer.on(ev.COMMIT_OFFSETS, e => tracker.commit(m, e.payload))
  m.consumer.on(ev.CRASH, e => {
    m.crashes.push(`${e.payload.error && e.payload.error.message} (restart: ${e.payload.restart})`)
    console.log(`# ${name}: consumer crashed: ${m.crashes[m.crashes.length - 1]}`)
  })
  live.push(m)
  return m
}

// connect + subscribe + run; run() resolves after the first JoinGroup/SyncGroup round, so several
// members must be started concurrently (Promise.all) to land in one generation.
async function startMember (m, tracker, { fromBeginning = true, batch = false, autoCommit = true, onMessage = null, runOpts = {} } = {}) {
  await m.consumer.connect()
  await m.consumer.subscribe({ topics: [tracker.topic], fromBeginning })
  if (batch) {
    await m.consumer.run({
      autoCommit,
      eachBatchAutoResolve: false,
      ...runOpts,
      eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
        for (const message of batch.messages) {
          if (!isRunning() || isStale()) break
          tracker.record(m, batch.partition, message)
          resolveOffset(message.offset)
          await heartbeat()
        }
      },
    })
  } else {
    await m.consumer.run({
      autoCommit,
      ...runOpts,
      eachMessage: async ({ partition, message }) => {
        tracker.record(m, partition, message)
        if (onMessage) await onMessage(partition, message)
      },
    })
  }
}

function noCrashes (members) {
  for (const m of members) if (m.crashes.length) fail(`${m.name} crashed: ${m.crashes[0]}`)
}

// The members' latest GROUP_JOIN assignments: every partition exactly once.
function assignmentProblem (members, sizes) {
  const owner = {}
  for (const m of members) {
    if (!m.assignment) return `${m.name} has not joined`
    for (const p of m.assignment) {
      if (owner[p] !== undefined) return `partition ${p} owned by ${owner[p]} and ${m.name}`
      owner[p] = m.name
    }
  }
  const unowned = ALL_PARTITIONS.filter(p => owner[p] === undefined)
  if (unowned.length) return `partitions ${unowned} unowned`
  if (sizes) {
    const got = members.map(m => m.assignment.length).sort()
    if (JSON.stringify(got) !== JSON.stringify(sizes.slice().sort())) return `assignment sizes ${got}, want ${sizes}`
  }
  return true
}

const fmtAssign = members => members.map(m => `${m.name}=[${m.assignment}]`).join(' ')

async function describeGroup (admin, groupId) {
  const { groups } = await admin.describeGroups([groupId])
  const g = groups.find(x => x.groupId === groupId)
  if (!g) fail(`describeGroups did not return ${groupId}: ${JSON.stringify(groups).slice(0, 200)}`)
  return g
}

// DescribeGroups says Stable with exactly these members, its member assignments are the ones the
// members got in SyncGroup (GROUP_JOIN), and they cover the topic's partitions once.
async function waitStable (admin, groupId, members, topic, sizes, ms = 30000) {
  await waitFor(`${groupId} stable with ${members.map(m => m.name)}`, ms, async () => {
    const g = await describeGroup(admin, groupId)
    if (g.errorCode) return `describeGroups error ${g.errorCode}`
    if (g.state !== 'Stable') return `state ${g.state}`
    if (g.members.length !== members.length) return `${g.members.length} members`
    for (const d of g.members) {
      const m = members.find(x => x.memberId === d.memberId)
      if (!m) return `member ${d.memberId} is none of ours`
      const a = AssignerProtocol.MemberAssignment.decode(d.memberAssignment)
      const got = ((a && a.assignment[topic]) || []).slice().sort((x, y) => x - y)
      if (JSON.stringify(got) !== JSON.stringify(m.assignment)) return `${m.name}: DescribeGroups [${got}] vs SyncGroup [${m.assignment}]`
    }
    return assignmentProblem(members, sizes)
  }, 200)
}

async function createTopic (admin, topic) {
  const ok = await admin.createTopics({
    topics: [{ topic, numPartitions: NUM_PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: TIMEOUT_MS,
  })
  if (ok !== true) fail(`createTopics ${topic} returned ${ok} (topic existed?)`)
}

// Messages [from, to) of the topic's scheme, one acks=-1 send per 5000.
async function produce (kafka, topic, from, to) {
  // Explicit partitions: the partitioner is never used (naming it silences kafkajs's v2 notice).
  const producer = kafka.producer({ allowAutoTopicCreation: false, createPartitioner: Partitioners.DefaultPartitioner })
  await producer.connect()
  try {
    const pad = 'x'.repeat(40)
    for (let start = from; start < to; start += 5000) {
      const messages = []
      for (let i = start; i < Math.min(to, start + 5000); i++) {
        messages.push({ partition: i % NUM_PARTITIONS, key: `k${i}`, value: `${topic}|${i}|${pad}` })
      }
      const res = await producer.send({ topic, acks: -1, timeout: TIMEOUT_MS, messages })
      for (const r of res) if (r.errorCode !== 0) fail(`produce ${topic}/${r.partition}: error ${r.errorCode}`)
    }
  } finally {
    await producer.disconnect()
  }
}

async function committedOffsets (admin, groupId, topic) {
  const r = await admin.fetchOffsets({ groupId, topics: [topic] })
  const t = r.find(x => x.topic === topic)
  if (!t) fail(`fetchOffsets ${groupId}: no ${topic} in ${JSON.stringify(r).slice(0, 200)}`)
  const out = []
  for (const { partition, offset } of t.partitions) out[partition] = Number(offset)
  return out
}

// --------------------------------------------------------------------------- checks

// 3 members, 30,000 messages, autoCommit (kafkajs commits after every batch and before rejoining).
async function threeConsumers (kafka, admin, live) {
  const topic = 'kjs-groups-three'
  const groupId = 'kjs-three'
  const n = 30000
  await createTopic(admin, topic)
  await produce(kafka, topic, 0, n)
  const tr = new Tracker(topic, n, groupId)
  const ms = [1, 2, 3].map(i => newMember(kafka, tr, groupId, `c${i}`, live))
  const t0 = Date.now()
  await Promise.all(ms.map(m => startMember(m, tr)))
  console.log(`# three-consumers: run() returned after ${Date.now() - t0} ms: ${fmtAssign(ms)}; leader ${ms.filter(m => m.isLeader).map(m => m.name)}; joins ${ms.map(m => m.joins)}`)
  await waitFor(`${n} distinct messages`, 60000, () => tr.distinct === n || `${tr.distinct} so far`)
  await waitStable(admin, groupId, ms, topic, [2, 2, 2])
  await sleep(300) // anything redelivered late would show now
  noCrashes(ms)
  tr.verifyAll()
  if (tr.redelivered.length) fail(`${tr.redelivered.length} duplicate deliveries, e.g. ${JSON.stringify(tr.redelivered.slice(0, 3))}`)
  console.log(`# three-consumers: ${fmtAssign(ms)}; consumed ${ms.map(m => `${m.name}:${m.consumed}`).join(' ')} in ${Date.now() - t0} ms, ${tr.commits.length} commits`)
  await Promise.all(ms.map(m => m.consumer.disconnect()))
  if (tr.redelivered.length) fail(`duplicates while disconnecting: ${JSON.stringify(tr.redelivered.slice(0, 3))}`)
  const offs = await committedOffsets(admin, groupId, topic)
  if (JSON.stringify(offs) !== JSON.stringify(tr.ends)) fail(`committed offsets after disconnect ${offs}, want the ends ${tr.ends}`)
  const g = await describeGroup(admin, groupId)
  if (g.state !== 'Empty' || g.members.length) fail(`after every member left: state ${g.state}, ${g.members.length} members`)
}

// 3 members, autoCommit off, explicit commitOffsets every 50 messages; one stops mid-stream with
// uncommitted deliveries (LeaveGroup, no final commit); the others take over its partitions.
async function failover (kafka, admin, live) {
  const topic = 'kjs-groups-failover'
  const groupId = 'kjs-failover'
  const n = 18000
  const COMMIT_EVERY = 50
  const STOP_AFTER = 300
  await createTopic(admin, topic)
  await produce(kafka, topic, 0, n)
  const tr = new Tracker(topic, n, groupId)
  const ms = [1, 2, 3].map(i => newMember(kafka, tr, groupId, `c${i}`, live))
  let stop = null
  const hook = m => async (p, message) => {
    if (m.stopping) return // no more commits: what it got from now on is uncommitted
    const o = Number(message.offset)
    if ((o + 1) % COMMIT_EVERY === 0 || o + 1 === tr.ends[p]) {
      await m.consumer.commitOffsets([{ topic, partition: p, offset: String(o + 1) }])
    }
    // The victim: the first member past STOP_AFTER deliveries in a 3-way, 2-each assignment, half
    // way between two commits (so it stops with deliveries it never committed).
    if (!stop && m.consumed - (m.consumedAtJoin || 0) >= STOP_AFTER && (o + 1) % COMMIT_EVERY === COMMIT_EVERY / 2 &&
        assignmentProblem(ms, [2, 2, 2]) === true) {
      m.stopping = true
      const last = {}
      for (const q of m.assignment) last[q] = tr.committed(q)
      stop = { m, seq: SEQ, at: Date.now(), assignment: m.assignment.slice(), last, consumed: m.consumed }
      // Called now (its runner stops fetching and delivering at once: the rest of the batch is
      // dropped), not awaited: disconnect waits for this eachMessage to return. A deferred call
      // (setImmediate) would only run after kafkajs had delivered the whole fetched batch.
      stop.done = m.consumer.disconnect().then(() => Date.now())
    }
  }
  for (const m of ms) {
    m.consumer.on(m.consumer.events.GROUP_JOIN, () => { m.consumedAtJoin = m.consumed })
  }
  await Promise.all(ms.map(m => startMember(m, tr, { autoCommit: false, onMessage: hook(m) })))
  await waitFor('a member stopped mid-stream', 30000, () => !!stop || `assignments ${fmtAssign(ms)}, delivered ${tr.distinct}/${n}`)
  const victim = stop.m
  const left = await withTimeout(stop.done, 20000, `disconnect ${victim.name}`)
  if (victim.consumed !== stop.consumed) fail(`${victim.name} got ${victim.consumed - stop.consumed} more messages after disconnect() was called`)
  const survivors = ms.filter(m => m !== victim)
  console.log(`# failover: ${victim.name} stopped after ${stop.consumed} deliveries owning [${stop.assignment}], last commits ${JSON.stringify(stop.last)}; disconnect (LeaveGroup) took ${left - stop.at} ms`)
  await waitFor(`${n} distinct messages`, 45000, () => tr.distinct === n || `${tr.distinct} so far`)
  await waitStable(admin, groupId, survivors, topic, [3, 3])
  await sleep(300)
  noCrashes(ms)
  tr.verifyAll()
  // The brief's rule, spelled out for the victim's partitions.
  const uncommitted = []
  for (const p of stop.assignment) {
    const c = stop.last[p]
    const runs = victim.runs[p]
    if (runs && runs.next > c) uncommitted.push(`${p}:[${c},${runs.next})`)
    const taken = tr.redelivered.filter(r => r.p === p && r.by !== victim.name)
    for (const r of taken) if (r.o < c) fail(`${p}/${r.o} redelivered to ${r.by} below ${victim.name}'s last commit ${c}`)
  }
  const takers = {}
  for (const p of stop.assignment) takers[p] = survivors.filter(s => s.assignment.includes(p)).map(s => s.name)
  const victimDups = tr.redelivered.filter(r => stop.assignment.includes(r.p)).length
  console.log(`# failover: ${victim.name}'s uncommitted ranges ${uncommitted.join(' ') || 'none'}; taken over by ${JSON.stringify(takers)}; ` +
    `${tr.redelivered.length} redeliveries (${victimDups} on its partitions), all at or above the acknowledged commit; final ${fmtAssign(survivors)}`)
  if (!uncommitted.length) fail(`${victim.name} stopped with nothing uncommitted: ${JSON.stringify(stop.last)}`)
}

// 3 stable members, a 4th joins and gets at least one partition; then new messages all arrive once.
async function fourthJoins (kafka, admin, live) {
  const topic = 'kjs-groups-fourth'
  const groupId = 'kjs-fourth'
  const n1 = 600
  const n = 1200
  await createTopic(admin, topic)
  await produce(kafka, topic, 0, n1)
  const tr = new Tracker(topic, n, groupId)
  const ms = [1, 2, 3].map(i => newMember(kafka, tr, groupId, `c${i}`, live))
  await Promise.all(ms.map(m => startMember(m, tr)))
  await waitFor(`${n1} distinct messages`, 30000, () => tr.distinct === n1 || `${tr.distinct} so far`)
  await waitStable(admin, groupId, ms, topic, [2, 2, 2])
  const joins = ms.map(m => m.joins)
  const m4 = newMember(kafka, tr, groupId, 'c4', live)
  const t0 = Date.now()
  await startMember(m4, tr)
  const all = [...ms, m4]
  await waitStable(admin, groupId, all, topic, [2, 2, 1, 1])
  console.log(`# fourth-joins: rebalance to 4 members took ${Date.now() - t0} ms: ${fmtAssign(all)}; rejoins ${ms.map((m, i) => m.joins - joins[i])}`)
  if (!m4.assignment.length) fail(`c4 got no partition: ${fmtAssign(all)}`)
  await produce(kafka, topic, n1, n)
  await waitFor(`${n} distinct messages`, 30000, () => tr.distinct === n || `${tr.distinct} so far`)
  await sleep(300)
  noCrashes(all)
  tr.verifyAll()
  if (tr.redelivered.length) fail(`${tr.redelivered.length} duplicate deliveries, e.g. ${JSON.stringify(tr.redelivered.slice(0, 3))}`)
  if (!m4.consumed) fail(`c4 owns [${m4.assignment}] but got none of the ${n - n1} new messages`)
}

// Two groups on one topic: each gets every message (group a: 2 members with eachBatch, b: 1).
async function twoGroups (kafka, admin, live) {
  const topic = 'kjs-groups-two'
  const n = 6000
  await createTopic(admin, topic)
  await produce(kafka, topic, 0, n)
  const ta = new Tracker(topic, n, 'kjs-two-a')
  const tb = new Tracker(topic, n, 'kjs-two-b')
  const a = [1, 2].map(i => newMember(kafka, ta, 'kjs-two-a', `a${i}`, live))
  const b = [newMember(kafka, tb, 'kjs-two-b', 'b1', live)]
  await Promise.all([...a.map(m => startMember(m, ta, { batch: true })), ...b.map(m => startMember(m, tb))])
  await waitFor(`${n} distinct messages in both groups`, 45000, () =>
    (ta.distinct === n && tb.distinct === n) || `a ${ta.distinct}, b ${tb.distinct}`)
  await waitStable(admin, 'kjs-two-a', a, topic, [3, 3])
  await waitStable(admin, 'kjs-two-b', b, topic, [6])
  await sleep(300)
  noCrashes([...a, ...b])
  ta.verifyAll()
  tb.verifyAll()
  for (const t of [ta, tb]) if (t.redelivered.length) fail(`${t.group}: ${t.redelivered.length} duplicates, e.g. ${JSON.stringify(t.redelivered[0])}`)
  await Promise.all([...a, ...b].map(m => m.consumer.disconnect()))
  for (const g of ['kjs-two-a', 'kjs-two-b']) {
    const offs = await committedOffsets(admin, g, topic)
    if (JSON.stringify(offs) !== JSON.stringify(ta.ends)) fail(`${g}: committed ${offs}, want ${ta.ends}`)
  }
}

// One member consumes, commits chosen offsets and leaves; a new member resumes exactly there.
async function committedOffsetsCheck (kafka, admin, live) {
  const topic = 'kjs-groups-commit'
  const groupId = 'kjs-commit'
  const n = 6000
  const K = ALL_PARTITIONS.map(p => 150 + 100 * p)
  await createTopic(admin, topic)
  await produce(kafka, topic, 0, n)
  const tr = new Tracker(topic, n, groupId)
  const c1 = newMember(kafka, tr, groupId, 'c1', live)
  await startMember(c1, tr, { autoCommit: false })
  await waitFor('c1 past the offsets to commit', 30000, () =>
    ALL_PARTITIONS.every(p => c1.runs[p] && c1.runs[p].next >= K[p]) || `c1 at ${ALL_PARTITIONS.map(p => c1.runs[p] ? c1.runs[p].next : 0)}`)
  await c1.consumer.commitOffsets(ALL_PARTITIONS.map(p => ({ topic, partition: p, offset: String(K[p]) })))
  let offs = await committedOffsets(admin, groupId, topic)
  if (JSON.stringify(offs) !== JSON.stringify(K)) fail(`fetchOffsets while c1 is a member: ${offs}, committed ${K}`)
  await c1.consumer.disconnect()
  offs = await committedOffsets(admin, groupId, topic)
  if (JSON.stringify(offs) !== JSON.stringify(K)) fail(`fetchOffsets after c1 left: ${offs}, committed ${K}`)
  const g = await describeGroup(admin, groupId)
  if (g.state !== 'Empty') fail(`after c1 left: state ${g.state}`)

  // A fresh tracker: c2 must start exactly at K and get everything from there once.
  const tr2 = new Tracker(topic, n, groupId)
  for (const p of ALL_PARTITIONS) tr2.lastCommit[p] = { p, offset: K[p], seq: 0, by: 'c1' }
  for (let i = 0; i < n; i++) if (Math.floor(i / NUM_PARTITIONS) < K[i % NUM_PARTITIONS]) { tr2.count[i] = 1; tr2.distinct++ }
  const before = tr2.distinct
  const c2 = newMember(kafka, tr2, groupId, 'c2', live)
  await startMember(c2, tr2, { fromBeginning: true })
  await waitFor(`c2 reaching the end of every partition`, 30000, () => tr2.distinct === n || `${tr2.distinct - before} of ${n - before}`)
  await sleep(300)
  noCrashes([c1, c2])
  tr2.verifyAll()
  if (tr2.redelivered.length) fail(`c2 got ${tr2.redelivered.length} messages below the committed offsets or twice, e.g. ${JSON.stringify(tr2.redelivered[0])}`)
  if (c2.consumed !== n - before) fail(`c2 got ${c2.consumed} messages, want ${n - before}`)
  await c2.consumer.disconnect()
  offs = await committedOffsets(admin, groupId, topic)
  if (JSON.stringify(offs) !== JSON.stringify(tr.ends)) fail(`after c2 (autoCommit): ${offs}, want ${tr.ends}`)
  console.log(`# committed-offsets: c1 committed ${K} and left; c2 (fromBeginning) resumed there and got ${c2.consumed} messages`)
}

// listGroups, describeGroups, deleteGroups (empty: ok; active: NON_EMPTY_GROUP; unknown:
// GROUP_ID_NOT_FOUND), setOffsets / resetOffsets on an empty group (kafkajs joins the group itself).
async function adminCheck (kafka, admin, live, earlierGroups) {
  const topic = 'kjs-groups-admin'
  const groupId = 'kjs-admin-active'
  const n = 600
  await createTopic(admin, topic)
  await produce(kafka, topic, 0, n)
  const tr = new Tracker(topic, n, groupId)
  const m = newMember(kafka, tr, groupId, 'active', live)
  await startMember(m, tr)
  await waitStable(admin, groupId, [m], topic, [6])

  const { groups } = await admin.listGroups()
  const listed = new Map(groups.map(g => [g.groupId, g.protocolType]))
  for (const g of [...earlierGroups, groupId]) {
    if (!listed.has(g)) fail(`listGroups lacks ${g}: ${[...listed.keys()]}`)
    if (listed.get(g) !== 'consumer') fail(`listGroups: ${g} has protocolType ${listed.get(g)}`)
  }

  const d = await admin.describeGroups([groupId, 'kjs-commit', 'kjs-no-such-group'])
  const act = d.groups.find(g => g.groupId === groupId)
  if (!act || act.errorCode !== 0 || act.state !== 'Stable' || act.protocolType !== 'consumer' || act.protocol !== 'RoundRobinAssigner') {
    fail(`describeGroups ${groupId}: ${JSON.stringify(act && { ...act, members: act.members.length })}`)
  }
  const dm = act.members[0]
  if (act.members.length !== 1 || dm.memberId !== m.memberId || dm.clientId !== CLIENT_ID || !dm.clientHost) {
    fail(`describeGroups member: ${JSON.stringify({ ...dm, memberMetadata: undefined, memberAssignment: undefined })}, want ${m.memberId} ${CLIENT_ID}`)
  }
  const meta = AssignerProtocol.MemberMetadata.decode(dm.memberMetadata)
  if (JSON.stringify(meta.topics) !== JSON.stringify([topic])) fail(`member metadata topics ${meta.topics}`)
  const empty = d.groups.find(g => g.groupId === 'kjs-commit')
  if (!empty || empty.errorCode !== 0 || empty.state !== 'Empty' || empty.members.length !== 0 || empty.protocolType !== 'consumer') {
    fail(`describeGroups kjs-commit (empty): ${JSON.stringify(empty)}`)
  }
  const none = d.groups.find(g => g.groupId === 'kjs-no-such-group')
  if (!none || none.errorCode !== 0 || none.state !== 'Dead' || none.members.length !== 0) fail(`describeGroups unknown group: ${JSON.stringify(none)}`)

  // DeleteGroups: active fails, unknown fails, empty succeeds.
  const delErr = async (g, wantType) => {
    try {
      await admin.deleteGroups([g])
    } catch (e) {
      const r = (e.groups || []).find(x => x.groupId === g)
      if (e.name !== 'KafkaJSDeleteGroupsError' || !r || r.error.type !== wantType) fail(`deleteGroups ${g}: ${e.name} ${e.message} ${JSON.stringify(r && { errorCode: r.errorCode, type: r.error && r.error.type })}, want ${wantType}`)
      return r.errorCode
    }
    fail(`deleteGroups ${g} succeeded, want ${wantType}`)
  }
  await delErr(groupId, 'NON_EMPTY_GROUP')
  await delErr('kjs-no-such-group', 'GROUP_ID_NOT_FOUND')
  const res = await admin.deleteGroups(['kjs-two-b'])
  if (res.length !== 1 || res[0].errorCode !== 0) fail(`deleteGroups kjs-two-b: ${JSON.stringify(res)}`)
  const after = (await admin.listGroups()).groups.map(g => g.groupId)
  if (after.includes('kjs-two-b')) fail('kjs-two-b still listed after deleteGroups')
  if (!after.includes(groupId)) fail(`${groupId} gone after a failed deleteGroups`)
  const gone = await committedOffsets(admin, 'kjs-two-b', 'kjs-groups-two')
  if (gone.some(o => o !== -1)) fail(`offsets of the deleted group: ${gone}, want -1`)
  const dead = await describeGroup(admin, 'kjs-two-b')
  if (dead.state !== 'Dead') fail(`deleted group described as ${dead.state}`)

  // setOffsets on the active group: kafkajs refuses after DescribeGroups (not Empty/Dead).
  try {
    await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '1' }] })
    fail('setOffsets on an active group succeeded')
  } catch (e) {
    if (e instanceof CheckFailed) throw e
    if (!/no running instances, current state: Stable/.test(e.message)) fail(`setOffsets on the active group: ${e.message}`)
  }
  // setOffsets / resetOffsets on the empty kjs-commit group (committed at the ends by now).
  const want = ALL_PARTITIONS.map(p => 10 * p + 3)
  await admin.setOffsets({ groupId: 'kjs-commit', topic: 'kjs-groups-commit', partitions: ALL_PARTITIONS.map(p => ({ partition: p, offset: String(want[p]) })) })
  let offs = await committedOffsets(admin, 'kjs-commit', 'kjs-groups-commit')
  if (JSON.stringify(offs) !== JSON.stringify(want)) fail(`after setOffsets: ${offs}, want ${want}`)
  await admin.resetOffsets({ groupId: 'kjs-commit', topic: 'kjs-groups-commit', earliest: true })
  offs = await committedOffsets(admin, 'kjs-commit', 'kjs-groups-commit')
  // kafkajs commits the logical offset -2 (EARLIEST) itself and Kafka stores it as given (kafkajs's
  // own resetOffsets.spec.js, run against Kafka, expects fetchOffsets to return '-2').
  if (offs.some(o => o !== -2)) fail(`after resetOffsets(earliest): ${offs}, want the -2 kafkajs committed`)
  const g = await describeGroup(admin, 'kjs-commit')
  if (g.state !== 'Empty') fail(`kjs-commit after setOffsets/resetOffsets: ${g.state}`)

  // Once its member leaves, the formerly active group can be deleted.
  await m.consumer.disconnect()
  const res2 = await admin.deleteGroups([groupId])
  if (res2.length !== 1 || res2[0].errorCode !== 0) fail(`deleteGroups ${groupId} after its member left: ${JSON.stringify(res2)}`)
  noCrashes([m])
}

async function main () {
  const bs = process.env.SLUICE_BOOTSTRAP
  if (!bs) { console.error('SLUICE_BOOTSTRAP is not set (run through compat-tests/run.sh)'); process.exit(2) }
  const version = require('kafkajs/package.json').version
  console.log(`# kafkajs ${version} groups on node ${process.version} against ${bs}`)
  const kafka = new Kafka({
    clientId: CLIENT_ID,
    brokers: [bs],
    logLevel: logLevel.WARN,
    // One line per kafkajs warning/error, without its timestamp noise. kafkajs logs every
    // Heartbeat answered REBALANCE_IN_PROGRESS at ERROR (and the Runner's WARN "re-joining"
    // follows); those are how a member learns of a rebalance, so they are only counted.
    logCreator: () => ({ namespace, label, log }) => {
      const { message, timestamp, logger, ...extra } = log
      if (namespace === 'Connection' && /^Response Heartbeat/.test(message) && /rebalancing/.test(extra.error)) {
        rebalanceHeartbeats++
        return
      }
      console.error(`kafkajs ${label} [${namespace}] ${message} ${JSON.stringify(extra).slice(0, 300)}`)
    },
    connectionTimeout: 5000,
    requestTimeout: TIMEOUT_MS,
    retry: { retries: 5, initialRetryTime: 200 },
  })
  const admin = kafka.admin()
  const t0 = Date.now()
  const up = await check('cluster', async () => {
    await admin.connect()
    const c = await admin.describeCluster()
    if (c.brokers.length !== 1) fail(`brokers ${JSON.stringify(c.brokers)}`)
  })
  if (!up.ok) {
    console.log('# broker unusable, stopping')
  } else {
    await check('three-consumers', live => threeConsumers(kafka, admin, live))
    await check('failover', live => failover(kafka, admin, live))
    await check('fourth-joins', live => fourthJoins(kafka, admin, live))
    await check('two-groups', live => twoGroups(kafka, admin, live))
    await check('committed-offsets', live => committedOffsetsCheck(kafka, admin, live))
    await check('admin', live => adminCheck(kafka, admin, live,
      ['kjs-three', 'kjs-failover', 'kjs-fourth', 'kjs-two-a', 'kjs-two-b', 'kjs-commit']))
  }
  await admin.disconnect().catch(() => {})
  console.log(`# kafkajs groups: ${failures} check(s) failed in ${Date.now() - t0} ms (${rebalanceHeartbeats} Heartbeats answered REBALANCE_IN_PROGRESS)`)
  process.exit(failures ? 1 : 0)
}

main().catch(e => { console.log(`FAIL main: unexpected ${e.stack}`); process.exit(1) })
