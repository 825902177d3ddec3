// t/groups_kafkajs.js -- one kafkajs group consumer for t/groups_test.py: reads a topic from the
// start until it has N distinct values, commits, leaves, and prints {"unique", "values_hash"}
// (sha256 of the sorted distinct values joined by newlines) as JSON.
// Usage: node groups_kafkajs.js BOOTSTRAP NODE_MODULES_DIR TOPIC GROUP N
const crypto = require('crypto');
const [bs, mods, topic, groupId, nStr] = process.argv.slice(2);
const { Kafka, logLevel } = require(mods + '/kafkajs');
const n = Number(nStr);

(async () => {
  const kafka = new Kafka({ brokers: [bs], logLevel: logLevel.NOTHING, clientId: 'groups-kafkajs' });
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, rebalanceTimeout: 10000, heartbeatInterval: 1000 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString());
        if (seen.size >= n) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  const values = [...seen].sort();
  const hash = crypto.createHash('sha256').update(values.join('\n')).digest('hex');
  console.log(JSON.stringify({ unique: seen.size, values_hash: hash }));
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
