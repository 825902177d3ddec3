// t/clients_platformatic.mjs -- @platformatic/kafka (flexible protocol versions only) against a
// running stratad: admin create, 10,000 keyed records with headers and null values over 8
// partitions per codec, consumed back by a group consumer in per-key order. TAP lines, no plan.
// Usage: node clients_platformatic.mjs BOOTSTRAP NODE_MODULES_DIR
const [bs, mods] = process.argv.slice(2);
const pk = await import(mods + '/@platformatic/kafka/dist/index.js');
const { Admin, Producer, Consumer, stringSerializers, stringDeserializers } = pk;
const N = 10000, PARTS = 8;
const ok = (c, d) => console.log((c ? 'ok' : 'not ok') + ' - platformatic: ' + d);
const rec = (i) => ({ key: 'k' + (i % 100), value: i % 97 === 0 ? null : ('v' + i + '-').repeat(1 + (i % 7)) });

try {
  const admin = new Admin({ clientId: 'strata-admin', bootstrapBrokers: [bs] });
  const zlib = await import('node:zlib');
  const codecs = ['none', 'gzip', 'snappy', 'lz4'];
  // The client compresses zstd with node's own zlib, which has it only from node 22.15/23.8.
  if (typeof zlib.zstdCompressSync === 'function') codecs.push('zstd');
  else console.log('# platformatic: zstd skipped: node ' + process.version + ' has no zstd in zlib');
  for (const codec of codecs) {
    const topic = 'pk-' + codec;
    await admin.createTopics({ topics: [topic], partitions: PARTS, replicas: 1 });
    const md = await admin.metadata({ topics: [topic] });
    ok(md.topics.get(topic).partitionsCount === PARTS, `createTopics ${topic} with ${PARTS} partitions`);
    const producer = new Producer({ clientId: 'strata-producer', bootstrapBrokers: [bs],
      serializers: stringSerializers, compression: codec, acks: -1 });
    for (let b = 0; b < N; b += 500) {
      const messages = [];
      for (let i = b; i < b + 500; i++) {
        const r = rec(i);
        messages.push({ topic, key: r.key, value: r.value, headers: { seq: String(i) } });
      }
      await producer.send({ messages });
    }
    ok(true, `produce ${N} records (${codec})`);
    await producer.close();
    const consumer = new Consumer({ groupId: 'pk-' + codec + '-' + Date.now(), clientId: 'strata-consumer',
      bootstrapBrokers: [bs], deserializers: stringDeserializers, sessionTimeout: 10000, heartbeatInterval: 500 });
    const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: false });
    const got = [];
    const timer = setTimeout(() => stream.destroy(), 60000);
    for await (const m of stream) {
      got.push({ partition: m.partition, key: m.key, value: m.value, seq: Number(m.headers.get('seq')) });
      if (got.length >= N) break;
    }
    clearTimeout(timer);
    await consumer.close(true);
    ok(got.length === N, `consume ${codec}: ${got.length} records`);
    const seqs = got.map((m) => m.seq).sort((a, b) => a - b);
    ok(seqs.every((s, i) => s === i), `consume ${codec}: every record exactly once`);
    const last = {};
    let bad = 0;
    for (const m of got) {
      const e = rec(m.seq);
      if (m.key !== e.key || (m.value ?? null) !== (e.value === null ? null : e.value)) bad++;
      if ((last[m.key] ?? -1) >= m.seq) bad++;
      last[m.key] = m.seq;
    }
    ok(bad === 0, `consume ${codec}: payloads and per-key order intact (${bad} bad)`);
  }
  await admin.close();
} catch (e) {
  ok(false, 'unexpected error: ' + (e && e.stack || e) + (e && e.errors ? ' ' + JSON.stringify(e.errors.map(String)) : ''));
  process.exitCode = 1;
}
