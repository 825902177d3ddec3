#!/usr/bin/python3
# t/clients_py.py -- produce/consume round trips with Python's Kafka clients against a running
# stratad: 10,000 keyed records with headers and null values over 8 partitions, per codec;
# per-key order, exact payloads, seek to an offset, offsets for a timestamp. Prints TAP lines
# without a plan (the calling .sh numbers and plans them). Usage: clients_py.py BOOTSTRAP CLIENT
import os, sys, time

from kafka_segment_reader import stored_codec_ok

bs, client = sys.argv[1], sys.argv[2]
N = 10000
PARTS = 8
BASE_TS = int(time.time() * 1000) - 600000  # explicit CreateTime timestamps, 1 ms apart


def ok(cond, desc):
    print(('ok' if cond else 'not ok') + ' - %s: %s' % (client, desc), flush=True)
    return cond


def record(i):
    key = ('k%d' % (i % 100)).encode()
    value = None if i % 97 == 0 else ('v%d-' % i).encode() * (1 + i % 7)
    return key, value, [('seq', str(i).encode()), ('h2', b'x' * (i % 3))]


def check_stored(topic, codec, desc):
    """The batches on disk use the producer's codec (record counts by codec shown)."""
    good, seen = stored_codec_ok(os.path.join(os.environ['STRATA_DIR'], 'log'), topic, codec)
    return ok(good, '%s: stored batches are %s on disk %s' % (desc, codec, seen))


def check_records(msgs, desc):
    """msgs: list of (partition, offset, key, value, headers, timestamp)."""
    seen = {}
    bad = []
    by_part = {}
    for (p, off, k, v, h, ts) in msgs:
        hd = dict(h or [])
        i = int(hd.get('seq') or hd.get(b'seq'))
        ek, ev, eh = record(i)
        if k != ek or v != ev or ts != BASE_TS + i:
            bad.append(('payload', i, p, off))
        if seen.get(k, -1) >= i:
            bad.append(('order', i))
        seen[k] = i
        by_part.setdefault(p, []).append(off)
    idx = sorted(int((dict(h).get('seq') or dict(h).get(b'seq'))) for (_, _, _, _, h, _) in msgs)
    ok(idx == list(range(N)), '%s: every record exactly once (%d)' % (desc, len(msgs)))
    ok(not bad, '%s: keys, values, headers, timestamps and per-key order intact %s' % (desc, bad[:3]))
    contiguous = all(offs == list(range(offs[0], offs[0] + len(offs))) for offs in by_part.values())
    ok(contiguous and len(by_part) == PARTS, '%s: offsets contiguous in all %d partitions' % (desc, len(by_part)))


def run_confluent(codec):
    from confluent_kafka import Producer, Consumer, TopicPartition
    topic = 'cf-' + codec
    errs = []
    p = Producer({'bootstrap.servers': bs, 'compression.type': codec, 'linger.ms': 5,
                  'acks': 'all', 'partitioner': 'murmur2_random'})
    for i in range(N):
        k, v, h = record(i)
        p.produce(topic, key=k, value=v, headers=h, timestamp=BASE_TS + i,
                  on_delivery=lambda err, m: errs.append(err) if err else None)
        if i % 500 == 0:
            p.poll(0)
    left = p.flush(60)
    ok(left == 0 and not errs, 'produce %s: all delivered (errors %s)' % (codec, errs[:2]))
    check_stored(topic, codec, 'produce %s' % codec)
    c = Consumer({'bootstrap.servers': bs, 'group.id': 'unused', 'enable.auto.commit': False})
    tps = [TopicPartition(topic, i, 0) for i in range(PARTS)]
    c.assign(tps)
    msgs = []
    deadline = time.time() + 60
    while len(msgs) < N and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                continue
            msgs.append((m.partition(), m.offset(), m.key(), m.value(),
                         [(a, b) for a, b in (m.headers() or [])], m.timestamp()[1]))
    check_records(msgs, 'consume %s' % codec)
    # seek to an offset in the middle of a batch
    part0 = sorted(o for (p_, o, *_r) in msgs if p_ == 3)
    target = part0[len(part0) // 2]
    c.assign([TopicPartition(topic, 3, target)])
    m = None
    while m is None or m.error():
        m = c.poll(5)
    ok(m.offset() == target, 'seek to offset %d on partition 3 -> %d' % (target, m.offset()))
    # offsets for a timestamp: record i has timestamp BASE_TS + i
    want = {}
    for (p_, o, k, v, h, ts) in msgs:
        if ts >= BASE_TS + 5000 and (p_ not in want or ts < want[p_][1]):
            want[p_] = (o, ts)
    res = c.offsets_for_times([TopicPartition(topic, i, BASE_TS + 5000) for i in range(PARTS)], 10)
    got = {tp.partition: tp.offset for tp in res}
    ok(all(got[p_] == want[p_][0] for p_ in want), 'offsets_for_times exact per partition')
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), 10)
    ok(lo == 0 and hi == len([1 for x in msgs if x[0] == 0]), 'watermarks %d..%d' % (lo, hi))
    c.close()


def run_kafka_python(codec):
    from kafka import KafkaProducer, KafkaConsumer, TopicPartition
    topic = 'kp-' + codec
    p = KafkaProducer(bootstrap_servers=bs, compression_type=None if codec == 'none' else codec,
                      linger_ms=5, acks='all')
    futs = []
    for i in range(N):
        k, v, h = record(i)
        futs.append(p.send(topic, key=k, value=v, headers=h, timestamp_ms=BASE_TS + i))
    p.flush()
    failed = [f for f in futs if f.failed()]
    ok(not failed, 'produce %s: all delivered' % codec)
    p.close()
    check_stored(topic, codec, 'produce %s' % codec)
    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, consumer_timeout_ms=10000)
    tps = [TopicPartition(topic, i) for i in range(PARTS)]
    c.assign(tps)
    c.seek_to_beginning()
    msgs = []
    for m in c:
        msgs.append((m.partition, m.offset, m.key, m.value, m.headers, m.timestamp))
        if len(msgs) >= N:
            break
    check_records(msgs, 'consume %s' % codec)
    part = sorted(o for (p_, o, *_r) in msgs if p_ == 5)
    target = part[len(part) // 3]
    c.seek(TopicPartition(topic, 5), target)
    m = next(c)
    ok(m.offset == target, 'seek to offset %d -> %d' % (target, m.offset))
    want = {}
    for (p_, o, k, v, h, ts) in msgs:
        if ts >= BASE_TS + 7777 and (p_ not in want or ts < want[p_][1]):
            want[p_] = (o, ts)
    res = c.offsets_for_times({tp: BASE_TS + 7777 for tp in tps})
    ok(all(res[TopicPartition(topic, p_)].offset == want[p_][0] for p_ in want),
       'offsets_for_times exact per partition')
    c.close()


if client == 'confluent':
    for codec in ['none', 'gzip', 'snappy', 'lz4', 'zstd']:
        run_confluent(codec)
else:
    codecs = ['none', 'gzip', 'snappy', 'lz4']
    try:
        import zstandard  # noqa: F401  (kafka-python needs it for zstd)
        codecs.append('zstd')
    except ImportError:
        print('# kafka-python: zstd skipped (python3-zstandard not installed)')
    for codec in codecs:
        run_kafka_python(codec)
