#!/usr/bin/python3
# t/recompress_test.py -- topic compression.type against a real stratad, driven by
# t/recompress.sh. Prints TAP lines without a plan. Modes:
#
#   run BOOTSTRAP STATE
#       Creates one topic per compression.type (producer, uncompressed, gzip, snappy, lz4, zstd)
#       and produces to each with every producer codec (librdkafka idempotent: none, zstd;
#       kafka-python: gzip, snappy (xerial), lz4, zstd), then consumes every topic back with two
#       clients (librdkafka; kafka-python, whose decoders differ) and compares keys, values
#       (null and empty too), headers and timestamps. Null header values go in hand-built
#       batches (librdkafka 2.0's Python binding and kafka-python cannot send them).
#       Speaks the wire by hand for what clients cannot show: Fetch v4 on a zstd topic is
#       UNSUPPORTED_COMPRESSION_TYPE while v10 is served (Kafka's rule), Produce v3 of an
#       uncompressed batch to a zstd topic is accepted, a corrupt batch gets CORRUPT_MESSAGE
#       before any recompression, a batch that only fits compressed is MESSAGE_TOO_LARGE on an
#       uncompressed topic, LogAppendTime with recompression. Writes what it expects to STATE.
#   disk LOGDIR STATE
#       With the broker stopped: parses every stored batch with t/kafka_segment_reader.py (an
#       independent decoder of Kafka's format, snappy-java framing included): each batch in the
#       topic's codec (the producer's for compression.type=producer), CRC valid, records as
#       produced, producer id/epoch and base sequences as the producer numbered them.
import json, os, socket, struct, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_segment_reader as ksr  # noqa: E402
import tapkit  # noqa: E402
from tapkit import ok  # noqa: E402

TARGETS = ['producer', 'uncompressed', 'gzip', 'snappy', 'lz4', 'zstd']
# The producers, in order, each writing N records to every topic: (client, codec, idempotent).
# librdkafka 2.0.x only compresses zstd here (it sends gzip/snappy/lz4 uncompressed to brokers
# without Produce v0-v2, as Kafka 4 and Strata are), so kafka-python writes those codecs.
PRODUCERS = [('librdkafka', 'none', True), ('librdkafka', 'zstd', True), ('kafka-python', 'gzip', False),
             ('kafka-python', 'snappy', False), ('kafka-python', 'lz4', False), ('kafka-python', 'zstd', False)]
CODEC_ID = {'none': 0, 'uncompressed': 0, 'gzip': 1, 'snappy': 2, 'lz4': 3, 'zstd': 4}
N = 25                                                       # records per producer codec
BASE_TS = int(time.time() * 1000) - 60000


def record(codec_idx, i):
    """(key, value, headers, timestamp) of record i of the codec_idx-th producer."""
    n = codec_idx * N + i
    key = None if i % 5 == 1 else ('key-%d' % n).encode()  # never with a null value (kafka-python)
    if i % 7 == 3:
        value = None
    elif i % 11 == 4:
        value = b''
    else:
        value = (('{"order":%d,"status":"shipped","sku":"A-%d"}' % (n, n % 13)).encode() * (1 + i % 6))
    headers = [('seq', str(n).encode())]
    if i % 3 == 0:
        headers.append(('empty', b''))  # null header values: the raw batches (client bugs)
    return key, value, headers, BASE_TS + n


def expected():
    return [record(pi, i) for pi in range(len(PRODUCERS)) for i in range(N)]


def norm_headers(h):
    return [(k if isinstance(k, str) else k.decode(), v) for (k, v) in (h or [])]


# ---- run: clients ----------------------------------------------------------------------------

def create_topics(bs):
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({'bootstrap.servers': bs})
    topics = [NewTopic('rc-' + t, 1, 1, config={'compression.type': t}) for t in TARGETS]
    topics.append(NewTopic('rc-lat-lz4', 1, 1, config={'compression.type': 'lz4',
                                                       'message.timestamp.type': 'LogAppendTime'}))
    topics.append(NewTopic('rc-small', 1, 1, config={'compression.type': 'uncompressed',
                                                     'max.message.bytes': '3000'}))
    errs = []
    for name, f in a.create_topics(topics, operation_timeout=30).items():
        try:
            f.result(30)
        except Exception as e:  # noqa: BLE001 -- reported below
            errs.append('%s: %s' % (name, e))
    ok(not errs, 'created %d topics with compression.type set %s' % (len(topics), errs[:2]))


def produce_all(bs):
    from confluent_kafka import Producer
    from kafka import KafkaProducer
    for pi, (client, codec, idem) in enumerate(PRODUCERS):
        # one producer per entry, writing every topic, flushed per topic so that batches of
        # different producers never mix
        errs = []
        if client == 'librdkafka':
            p = Producer({'bootstrap.servers': bs, 'compression.type': codec, 'linger.ms': 20,
                          'enable.idempotence': idem, 'acks': 'all'})
            for t in TARGETS:
                for i in range(N):
                    k, v, h, ts = record(pi, i)
                    p.produce('rc-' + t, key=k, value=v, headers=h, timestamp=ts, partition=0,
                              on_delivery=lambda err, m: errs.append(str(err)) if err else None)
                left = p.flush(60)
                if left:
                    errs.append('%d undelivered' % left)
        else:
            p = KafkaProducer(bootstrap_servers=bs, compression_type=codec, linger_ms=20, acks='all')
            for t in TARGETS:
                futs = []
                for i in range(N):
                    k, v, h, ts = record(pi, i)
                    futs.append(p.send('rc-' + t, key=k, value=v, headers=h, timestamp_ms=ts, partition=0))
                p.flush(60)
                for f in futs:
                    try:
                        f.get(timeout=60)
                    except Exception as e:  # noqa: BLE001 -- reported below
                        errs.append(repr(e))
            p.close()
        ok(not errs, '%s producer, compression.type=%s%s: %d records to every topic delivered %s'
           % (client, codec, ', idempotent' if idem else '', N, errs[:2]))


def consume_confluent(bs, topic, n):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({'bootstrap.servers': bs, 'group.id': 'rc-' + topic, 'enable.auto.commit': False,
                  'auto.offset.reset': 'earliest'})
    c.assign([TopicPartition(topic, 0, 0)])
    out, errs = [], []
    deadline = time.time() + 60
    while len(out) < n and time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            errs.append(str(m.error()))
            continue
        out.append((m.key(), m.value(), norm_headers(m.headers()), m.timestamp()[1], m.offset()))
    c.close()
    return out, errs


def consume_kafka_python(bs, topic, n, wait_s=60):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, consumer_timeout_ms=10000)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out = []
    deadline = time.time() + wait_s
    while len(out) < n and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            for m in recs:
                out.append((m.key, m.value, norm_headers(m.headers), m.timestamp, m.offset))
    c.close()
    return out


def compare(got, want, label):
    bad = [(i, g[:4], w) for i, (g, w) in enumerate(zip(got, want))
           if (g[0], g[1], g[2], g[3]) != (w[0], w[1], norm_headers(w[2]), w[3])]
    offs_ok = [g[4] for g in got] == list(range(len(got)))
    return ok(len(got) == len(want) and not bad and offs_ok,
              '%s: %d records back, keys/values (null, empty)/headers/timestamps exact, offsets 0..%d %s'
              % (label, len(got), len(want) - 1, (bad[:1], len(got))))


# ---- run: the wire by hand -------------------------------------------------------------------

class Wire:
    def __init__(self, bs):
        host, port = bs.split(':')
        self.s = socket.create_connection((host, int(port)), timeout=30)
        self.corr = 0

    def call(self, api, version, body):
        self.corr += 1
        cid = b'recompress-test'
        hdr = struct.pack('>hhih', api, version, self.corr, len(cid)) + cid
        frame = hdr + body
        self.s.sendall(struct.pack('>i', len(frame)) + frame)
        n = struct.unpack('>i', self._read(4))[0]
        resp = self._read(n)
        corr = struct.unpack_from('>i', resp)[0]
        if corr != self.corr:
            raise RuntimeError('correlation id %d, sent %d' % (corr, self.corr))
        return resp[4:]

    def _read(self, n):
        buf = b''
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise RuntimeError('connection closed')
            buf += chunk
        return buf

    def close(self):
        self.s.close()


def kstr(s):
    b = s.encode()
    return struct.pack('>h', len(b)) + b


def produce_v3(w, topic, batch):
    """Produce v3, acks=-1: returns (error_code, base_offset, log_append_time)."""
    body = struct.pack('>hhi', -1, -1, 30000)  # transactional_id null, acks, timeout
    body += struct.pack('>i', 1) + kstr(topic) + struct.pack('>i', 1)
    body += struct.pack('>ii', 0, len(batch)) + batch
    r = w.call(0, 3, body)
    pos = 4  # responses array length (1)
    tl = struct.unpack_from('>h', r, pos)[0]
    pos += 2 + tl + 4  # name, partitions array length
    _, err, base, lat = struct.unpack_from('>ihqq', r, pos)
    return err, base, lat


def fetch(w, version, topic):
    """Fetch v4 or v10 of partition 0 from offset 0: (error_code, high_watermark, records bytes)."""
    body = struct.pack('>iiiib', -1, 100, 1, 1 << 20, 0)
    if version >= 7:
        body += struct.pack('>ii', 0, -1)  # session id, epoch: no session
    body += struct.pack('>i', 1) + kstr(topic) + struct.pack('>i', 1)
    if version >= 9:
        body += struct.pack('>iiqqi', 0, -1, 0, -1, 1 << 20)
    else:
        body += struct.pack('>iqi', 0, 0, 1 << 20)
    if version >= 7:
        body += struct.pack('>i', 0)  # forgotten topics
    r = w.call(1, version, body)
    pos = 4 if version >= 1 else 0  # throttle
    if version >= 7:
        pos += 6  # error code, session id
    pos += 4  # topics array length
    tl = struct.unpack_from('>h', r, pos)[0]
    pos += 2 + tl + 4
    _, err, hw, _lso = struct.unpack_from('>ihqq', r, pos)
    pos += 4 + 2 + 8 + 8
    if version >= 5:
        pos += 8  # log start offset
    na = struct.unpack_from('>i', r, pos)[0]
    pos += 4 + max(na, 0) * 16
    rl = struct.unpack_from('>i', r, pos)[0]
    pos += 4
    return err, hw, r[pos:pos + max(rl, 0)]


def wire_checks(bs, state):
    w = Wire(bs)
    now = int(time.time() * 1000)
    recs = [(now - 10 + i, b'k%d' % i, b'v%d' % i * 50, [(b'h', b'x'), (b'null', None)]) for i in range(5)]

    err, hw, data = fetch(w, 4, 'rc-zstd')
    ok(err == 76 and hw == -1 and not data,
       'Fetch v4 on a compression.type=zstd topic: UNSUPPORTED_COMPRESSION_TYPE, no records (got %d)' % err)
    err, hw, data = fetch(w, 10, 'rc-zstd')
    ok(err == 0 and hw > 0 and len(data) > 61 and (data[22] & 7) == 4,
       'Fetch v10 on it: served, zstd batches (error %d, hw %d)' % (err, hw))
    err, hw, data = fetch(w, 4, 'rc-gzip')
    ok(err == 0 and hw > 0 and len(data) > 61 and (data[22] & 7) == 1,
       'Fetch v4 on a gzip topic: served, gzip batches (error %d)' % err)

    err, base, _ = produce_v3(w, 'rc-zstd', ksr.build_batch(0, recs, 0, recs[0][0]))
    ok(err == 0 and base >= 0, 'Produce v3 (pre-zstd client) of an uncompressed batch to the zstd topic '
       'accepted, as Kafka (error %d, offset %d)' % (err, base))
    state['raw_zstd_offset'] = base

    bad = bytearray(ksr.build_batch(0, recs, 1, recs[0][0]))
    bad[-3] ^= 0x55  # inside the gzip trailer, CRC-32C now wrong
    err, _, _ = produce_v3(w, 'rc-lz4', bytes(bad))
    ok(err == 2, 'batch with a bad CRC to an lz4 topic: CORRUPT_MESSAGE before any recompression (%d)' % err)
    bad = bytearray(ksr.build_batch(0, recs, 1, recs[0][0]))
    bad[61:] = b'\x1f\x8b' + b'\x00' * (len(bad) - 63)  # gzip magic, garbage after, CRC fixed
    crc = ksr.crc32c(bytes(bad[21:]))
    bad[17:21] = struct.pack('>I', crc)
    err, _, _ = produce_v3(w, 'rc-lz4', bytes(bad))
    ok(err == 2, 'undecodable gzip payload to an lz4 topic: CORRUPT_MESSAGE (%d)' % err)

    big = [(now, None, b'abcdefgh' * 1000, []) for _ in range(4)]  # 32 KB, compresses to ~100 B
    b = ksr.build_batch(0, big, 1, now)
    err, _, _ = produce_v3(w, 'rc-small', b)
    ok(len(b) < 3000 and err == 10, 'gzip batch of %d bytes (32 KB stored uncompressed) to an uncompressed '
       'topic with max.message.bytes=3000: MESSAGE_TOO_LARGE (%d)' % (len(b), err))
    err, _, _ = produce_v3(w, 'rc-small', ksr.build_batch(0, recs[:2], 1, recs[0][0]))
    ok(err == 0, 'a small gzip batch to that topic is stored (%d)' % err)

    before = int(time.time() * 1000)
    err, base, lat = produce_v3(w, 'rc-lat-lz4', ksr.build_batch(0, recs, 0, recs[0][0]))
    ok(err == 0 and lat >= before, 'uncompressed batch to an lz4 LogAppendTime topic: log append time %d' % lat)
    state['lat'] = {'offset': base, 'time': lat, 'records': [[ts, k.hex(), v.hex()] for ts, k, v, _ in recs]}
    state['raw_records'] = [[ts, k.hex(), v.hex()] for ts, k, v, _ in recs]
    w.close()


def mode_run(bs, state_file):
    create_topics(bs)
    produce_all(bs)
    n = N * len(PRODUCERS)
    for t in TARGETS:
        want = expected()
        got, errs = consume_confluent(bs, 'rc-' + t, n)
        compare(got, want, 'librdkafka consumer, compression.type=%s %s' % (t, errs[:2]))
        if t == 'zstd':
            # kafka-python 2.0 fetches with v4: refused on a zstd topic, as Kafka refuses it
            got = consume_kafka_python(bs, 'rc-' + t, n, wait_s=3)
            ok(not got, 'kafka-python consumer (Fetch v4) gets nothing from the zstd topic (%d)' % len(got))
            continue
        got = consume_kafka_python(bs, 'rc-' + t, n)
        compare(got, want, 'kafka-python consumer, compression.type=%s' % t)
    state = {'base_ts': BASE_TS}
    wire_checks(bs, state)
    with open(state_file, 'w') as f:
        json.dump(state, f)


# ---- disk --------------------------------------------------------------------------------------

def read_batches(d):
    out = []
    for name in sorted(os.listdir(d)):
        if not name.endswith('.log'):
            continue
        with open(os.path.join(d, name), 'rb') as f:
            buf = f.read()
        pos = 0
        while pos < len(buf):
            b = ksr.parse_batch(buf, pos, len(buf))  # raises on a bad CRC or undecodable records
            out.append(b)
            pos += b['size']
    return out


def raw_ok(b, raw):
    """The hand-built batch's records: keys, values, headers (a null value among them)."""
    got = [(r['timestamp'], r['key'].hex(), r['value'].hex(), r['headers']) for r in (b['records'] or [])]
    return got == [(ts, k, v, [(b'h', b'x'), (b'null', None)]) for ts, k, v in raw]


def mode_disk(logdir, state_file):
    global BASE_TS
    with open(state_file) as f:
        state = json.load(f)
    BASE_TS = state['base_ts']
    for t in TARGETS:
        d = os.path.join(logdir, 'rc-%s-0' % t)
        try:
            batches = read_batches(d)
        except Exception as e:  # noqa: BLE001 -- the reader's verdict
            ok(False, 'compression.type=%s: segments parse (%s)' % (t, e))
            continue
        ok(batches and all(b['crc_ok'] and b['records'] is not None for b in batches),
           'compression.type=%s: %d batches, CRC-32C valid, every payload decodes' % (t, len(batches)))
        # the clients' batches come first (N per producer, in PRODUCERS order), then the raw ones
        client = []
        for b in batches:
            if sum(x['count'] for x in client) >= N * len(PRODUCERS):
                break
            client.append(b)
        if t == 'producer':
            # every batch in the codec of the producer that wrote it
            want_codecs, got_codecs = [], []
            seen = 0
            for b in client:
                want_codecs.append(CODEC_ID[PRODUCERS[seen // N][1]])
                got_codecs.append(b['codec'])
                seen += b['count']
            ok(want_codecs == got_codecs, 'compression.type=producer keeps each producer\'s codec %s'
               % [ksr.CODEC_NAMES[c] for c in got_codecs])
        else:
            codecs = sorted(set(ksr.CODEC_NAMES[b['codec']] for b in batches))
            ok(codecs == [ksr.CODEC_NAMES[CODEC_ID[t]]], 'compression.type=%s: every stored batch is %s %s'
               % (t, ksr.CODEC_NAMES[CODEC_ID[t]], codecs))
            if t == 'snappy':
                # what Kafka's broker writes: snappy-java's framing (every client reads it)
                ok(all(b['raw'][61:69] == ksr.XERIAL_MAGIC for b in batches),
                   'compression.type=snappy: stored xerial-framed, as Kafka\'s broker writes it')
        recs = [(r['key'], r['value'], [(k.decode(), v) for k, v in r['headers']], r['timestamp'])
                for b in client for r in b['records']]
        want = [(k, v, h, ts) for (k, v, h, ts) in expected()]
        ok(recs == want, 'compression.type=%s: stored records decode to exactly what was produced (%d)'
           % (t, len(recs)))
        # idempotent producers: one producer id per codec's producer, base sequences numbered
        # as the producer sent them (0, then + previous count), epoch kept
        # idempotent producers: producer id and epoch set, base sequences numbered as the
        # producer sent them; the others' batches without a producer id
        seq_ok, pids, seen = True, [], 0
        for b in client:
            idem = PRODUCERS[seen // N][2]
            seen += b['count']
            if idem != (b['producer_id'] >= 0 and b['producer_epoch'] >= 0 and b['base_sequence'] >= 0):
                seq_ok = False
            if not idem and (b['producer_id'], b['base_sequence']) != (-1, -1):
                seq_ok = False
            if idem and b['producer_id'] not in pids:
                pids.append(b['producer_id'])
        for pid in pids:
            mine = [b for b in client if b['producer_id'] == pid]
            for a, c in zip(mine, mine[1:]):
                if c['base_sequence'] != a['base_sequence'] + a['count']:
                    seq_ok = False
        n_idem = sum(1 for p in PRODUCERS if p[2])
        ok(seq_ok and len(pids) == n_idem,
           'compression.type=%s: producer ids (%d), epochs and contiguous base sequences kept' % (t, len(pids)))
    # raw Produce v3 to the zstd topic: stored as zstd too
    zb = [b for b in read_batches(os.path.join(logdir, 'rc-zstd-0')) if b['base_offset'] == state['raw_zstd_offset']]
    ok(len(zb) == 1 and zb[0]['codec'] == 4 and zb[0]['producer_id'] == -1 and raw_ok(zb[0], state['raw_records']),
       'the Produce v3 uncompressed batch is stored as zstd, records intact (a null header value too)')
    # LogAppendTime + recompression
    lat = state['lat']
    lb = [b for b in read_batches(os.path.join(logdir, 'rc-lat-lz4-0')) if b['base_offset'] == lat['offset']]
    ok(len(lb) == 1 and lb[0]['codec'] == 3 and lb[0]['log_append_time'] and
       lb[0]['max_timestamp'] == lat['time'] and lb[0]['base_timestamp'] == lat['records'][0][0],
       'LogAppendTime topic: stored lz4, timestamp type LogAppendTime, max timestamp = the append '
       'time answered, base timestamp kept')
    got = [(r['key'].hex(), r['value'].hex(), r['headers']) for r in (lb[0]['records'] if lb else [])]
    ok(got == [(k, v, [(b'h', b'x'), (b'null', None)]) for _, k, v in lat['records']],
       'LogAppendTime topic: records intact')
    small = read_batches(os.path.join(logdir, 'rc-small-0'))
    ok(len(small) == 1 and small[0]['codec'] == 0 and small[0]['count'] == 2,
       'max.message.bytes topic: only the small batch stored, uncompressed')


def main():
    mode = sys.argv[1]
    if mode == 'run':
        mode_run(sys.argv[2], sys.argv[3])
    elif mode == 'disk':
        mode_disk(sys.argv[2], sys.argv[3])
    else:
        sys.exit('usage: recompress_test.py run BOOTSTRAP STATE | disk LOGDIR STATE')


if __name__ == '__main__':
    tapkit.run(main, 'recompress_test.py %s ran to the end' % sys.argv[1])
