// fuzz/capture_kafkajs.js BOOTSTRAP -- kafkajs (t/node_modules) produces per codec and runs admin
// calls through the capture proxy, so fuzz/capture.py records what it sends. Errors only print.
'use strict'
const path = require('path')
const { Kafka, CompressionTypes, logLevel } = require(path.join(__dirname, '..', 't', 'node_modules', 'kafkajs'))

const bs = process.argv[2]
const kafka = new Kafka({ clientId: 'capture', brokers: [bs], logLevel: logLevel.NOTHING,
  retry: { retries: 1 }, requestTimeout: 10000 })

async function step (name, fn) {
  try { await fn(); console.log('capture: kafkajs ' + name + ' done') } catch (e) {
    console.log('capture: kafkajs ' + name + ' failed: ' + e.message)
  }
}

async function main () {
  const admin = kafka.admin()
  await step('admin connect', () => admin.connect())
  await step('createTopics', () => admin.createTopics({ topics: [{ topic: 'cap-js-admin', numPartitions: 2 }] }))
  await step('fetchTopicMetadata', () => admin.fetchTopicMetadata({ topics: ['cap-js-admin'] }))
  await step('describeCluster', () => admin.describeCluster())
  await step('describeConfigs', () => admin.describeConfigs({ resources: [{ type: 2, name: 'cap-js-admin' }] }))
  await step('alterConfigs', () => admin.alterConfigs({ resources: [{ type: 2, name: 'cap-js-admin', configEntries: [{ name: 'retention.ms', value: '7200000' }] }] }))
  await step('createPartitions', () => admin.createPartitions({ topicPartitions: [{ topic: 'cap-js-admin', count: 3 }] }))

  const producer = kafka.producer({ allowAutoTopicCreation: true })
  await step('producer connect', () => producer.connect())
  // kafkajs ships gzip only; the others need plug-in codecs it does not bundle.
  for (const [name, c] of [['none', CompressionTypes.None], ['gzip', CompressionTypes.GZIP]]) {
    await step('produce ' + name, () => producer.send({ topic: 'cap-js-' + name, compression: c, acks: -1,
      messages: Array.from({ length: 10 }, (_, i) => ({ key: 'k' + i, value: i % 4 ? ('value ' + i + ' ').repeat(10) : null, headers: { h: 'x' } })) }))
  }
  const idem = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await step('idempotent connect', () => idem.connect())
  await step('idempotent produce', () => idem.send({ topic: 'cap-js-none', acks: -1, messages: [{ key: 'a', value: 'b' }] }))
  await step('fetchTopicOffsets', () => admin.fetchTopicOffsets('cap-js-none'))
  await step('fetchTopicOffsetsByTimestamp', () => admin.fetchTopicOffsetsByTimestamp('cap-js-none', Date.now() - 60000))
  await step('deleteTopicRecords', () => admin.deleteTopicRecords({ topic: 'cap-js-none', partitions: [{ partition: 0, offset: '1' }] }))
  await step('deleteTopics', () => admin.deleteTopics({ topics: ['cap-js-admin'] }))

  const consumer = kafka.consumer({ groupId: 'cap-js', sessionTimeout: 6000, retry: { retries: 0 } })
  await step('consumer', async () => {
    await consumer.connect()
    await consumer.subscribe({ topic: 'cap-js-none', fromBeginning: true })
    await Promise.race([consumer.run({ eachMessage: async () => {} }), new Promise(resolve => setTimeout(resolve, 4000))])
  })
  await step('disconnect', async () => {
    await consumer.disconnect(); await producer.disconnect(); await idem.disconnect(); await admin.disconnect()
  })
}

main().then(() => process.exit(0), e => { console.log('capture: kafkajs: ' + e.message); process.exit(0) })
