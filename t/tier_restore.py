#!/usr/bin/python3
# t/tier_restore.py -- restoring a topic from the tier bucket alone (CreateTopics with
# redpanda.remote.recovery=true; man/strata-bucket.5, RESTORE), driven by t/tier_restore.sh, which
# starts the broker, stops it, throws its log.dirs away and starts a new one on the same bucket.
# Phases: produce (a 3-partition topic with tiny segments, keys, headers, timestamps; everything
# uploaded; DeleteRecords on one partition), restore-errors, restore (settings, offsets, every
# record identical, producing continues and tiers), after-restart, notier. Prints TAP lines
# without a plan. Usage: tier_restore.py PHASE BOOTSTRAP STRATA_DIR
import base64, functools, glob, os, sys, time

from tapkit import diag, ok, wait_until
import tapkit

phase, bs, sdir = sys.argv[1], sys.argv[2], sys.argv[3]
BUCKET = os.path.join(sdir, 'bucket')
STATE = os.path.join(sdir, 'restore-state.json')
TOPIC = 'rs'
PARTS = 3
N_PER_PART = 400
DELETED_BELOW = 100              # DeleteRecords on partition 1
CONFIGS = {'segment.bytes': '8192', 'segment.ms': '1500', 'retention.ms': '864000000',
           'cleanup.policy': 'delete', 'max.message.bytes': '200000', 'retention.bytes': '50000000'}
TIMEOUT = 30


load_state = functools.partial(tapkit.load_json, STATE)
save_state = functools.partial(tapkit.save_json, STATE)


def manifest(part, topic=TOPIC):
    """(start_offset, end, topic_id) of the bucket's partition manifest, or None."""
    m = glob.glob(os.path.join(BUCKET, '*', topic, '%d_*' % part, 'manifest'))
    if not m:
        return None
    start, end, tid = 0, -1, None
    with open(m[0]) as f:
        for line in f:
            if line.startswith('start_offset='):
                start = int(line.split('=', 1)[1])
            elif line.startswith('topic_id='):
                tid = line.split('=', 1)[1].strip()
            elif line.startswith('seg '):
                fields = dict(kv.split('=', 1) for kv in line.split()[1:])
                end = max(end, int(fields['last']) + 1)
    return start, end, tid


def topic_manifest_id(topic=TOPIC):
    m = glob.glob(os.path.join(BUCKET, '*', topic, 'topic_manifest'))
    if not m:
        return None
    with open(m[0]) as f:
        for line in f:
            if line.startswith('topic_id='):
                return line.split('=', 1)[1].strip()
    return None


def local_topic_id(logdir, part=0):
    """The topic id in Kafka's partition.metadata (base64url, no padding) as 32 hex digits."""
    try:
        with open(os.path.join(logdir, '%s-%d' % (TOPIC, part), 'partition.metadata')) as f:
            for line in f:
                if line.startswith('topic_id:'):
                    b = line.split(':', 1)[1].strip()
                    return base64.urlsafe_b64decode(b + '=' * (-len(b) % 4)).hex()
    except OSError:
        return None
    return None


# --- clients -----------------------------------------------------------------------------------

admin = functools.partial(tapkit.admin, bs)
create = functools.partial(tapkit.create_topic, bs)


def bucket_producer_ids(split):
    """Producer ids of the batches in the bucket's .log objects of every partition: (those of
    batches below split[part], those at or above it). Batch header: producerId at byte 43."""
    import struct
    below, above = set(), set()
    for part in range(PARTS):
        for path in glob.glob(os.path.join(BUCKET, '*', TOPIC, '%d_*' % part, '*.log')):
            with open(path, 'rb') as f:
                data = f.read()
            pos = 0
            while pos + 61 <= len(data):
                base, blen = struct.unpack_from('>qi', data, pos)
                pid = struct.unpack_from('>q', data, pos + 43)[0]
                if pid >= 0:
                    (below if base < split[str(part)] else above).add(pid)
                pos += 12 + blen
    return below, above


def topic_configs(topic):
    """The topic's own settings (source DYNAMIC_TOPIC_CONFIG) as a dict."""
    from confluent_kafka.admin import ConfigResource, ConfigSource
    r = ConfigResource('topic', topic)
    res = admin().describe_configs([r])[r].result(TIMEOUT)
    return {k: v.value for k, v in res.items() if v.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value}


def all_config_names(topic):
    from confluent_kafka.admin import ConfigResource
    r = ConfigResource('topic', topic)
    return set(admin().describe_configs([r])[r].result(TIMEOUT).keys())


def offsets(topic=TOPIC):
    """{partition: [earliest, latest]} by ListOffsets (kafka-python)."""
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs)
    tps = [TopicPartition(topic, p) for p in range(PARTS)]
    b, e = c.beginning_offsets(tps), c.end_offsets(tps)
    c.close()
    return {str(tp.partition): [b[tp], e[tp]] for tp in tps}


def record(part, i, base_ts):
    key = None if i % 13 == 0 else ('k%d-%d' % (part, i % 40)).encode()
    value = ('p%d-v%d-' % (part, i)).encode() * (1 + i % 7)
    headers = [('seq', str(i).encode()), ('part', str(part).encode())]
    if i % 5 == 0:
        headers.append(('empty', b''))
    return key, value, headers, base_ts + i * 11


def produce(topic, n, first, base_ts):
    """n records to each partition; returns ({part: [offsets]}, errors)."""
    from confluent_kafka import Producer
    errs, done = [], {p: [] for p in range(PARTS)}
    p = Producer({'bootstrap.servers': bs, 'linger.ms': 5, 'batch.num.messages': 20,
                  'compression.type': 'lz4', 'acks': 'all', 'enable.idempotence': True})
    for i in range(first, first + n):
        for part in range(PARTS):
            k, v, h, ts = record(part, i, base_ts)

            def cb(err, m):
                if err:
                    errs.append(str(err))
                else:
                    done[m.partition()].append(m.offset())
            p.produce(topic, key=k, value=v, headers=h, timestamp=ts, partition=part, on_delivery=cb)
        p.poll(0)
    left = p.flush(60)
    if left:
        errs.append('%d not delivered' % left)
    return done, errs


def consume(topic, part, start):
    """Every record of a partition from start to its end (kafka-python), as lists."""
    return tapkit.kp_read(bs, topic, part, start, timeout_s=90, fetch_bytes=32768)[0]


def raw_delete_records(topic, part, offset):
    """DeleteRecords v0 on the wire: (error, low watermark)."""
    import socket, struct
    host, port = bs.rsplit(':', 1)
    name = topic.encode()
    body = struct.pack('>i', 1) + struct.pack('>h', len(name)) + name + struct.pack('>i', 1)
    body += struct.pack('>iq', part, offset) + struct.pack('>i', 30000)
    cid = b'tier-restore'
    req = struct.pack('>hhi', 21, 0, 5) + struct.pack('>h', len(cid)) + cid + body
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(struct.pack('>i', len(req)) + req)
    buf = b''
    while len(buf) < 4:
        buf += s.recv(4 - len(buf))
    size = struct.unpack('>i', buf)[0]
    r = b''
    while len(r) < size:
        c = s.recv(size - len(r))
        if not c:
            break
        r += c
    s.close()
    # correlation id, throttle, [topics: name, [partitions: index, low watermark, error]]
    pos = 8 + 4
    tl = struct.unpack_from('>h', r, pos)[0]
    pos += 2 + tl + 4
    _, low, err = struct.unpack_from('>iqh', r, pos)
    return err, low


# --- phases ------------------------------------------------------------------------------------

def phase_produce():
    st = {'base_ts': int(time.time() * 1000) - 3600 * 1000}
    ok(create(TOPIC, PARTS, CONFIGS) is None, 'create %s: %d partitions, %s' % (TOPIC, PARTS, CONFIGS))
    done, errs = produce(TOPIC, N_PER_PART, 0, st['base_ts'])
    ok(not errs and all(len(done[p]) == N_PER_PART for p in range(PARTS)),
       'produce %d records with keys, headers and timestamps to each partition %s' % (N_PER_PART, errs[:2]))
    err, low = raw_delete_records(TOPIC, 1, DELETED_BELOW)
    ok(err == 0 and low == DELETED_BELOW, 'DeleteRecords partition 1 below %d (error %d, low %d)'
       % (DELETED_BELOW, err, low))
    # segment.ms rolls the last segment: everything ends up in the bucket.
    ends = {}

    def uploaded():
        offs = offsets()
        for p in range(PARTS):
            m = manifest(p)
            want_start = DELETED_BELOW if p == 1 else 0
            if not m or m[1] != offs[str(p)][1] or m[0] != want_start:
                return False
            ends[p] = m[1]
        return True
    good = wait_until(uploaded, 120)
    ok(good, 'every record is in the bucket (manifest ends %s, partition 1 starts at %d)' % (ends, DELETED_BELOW))
    st['offsets'] = offsets()
    st['configs'] = topic_configs(TOPIC)
    st['records'] = {str(p): consume(TOPIC, p, DELETED_BELOW if p == 1 else 0) for p in range(PARTS)}
    st['topic_id'] = topic_manifest_id()
    ok(all(len(st['records'][str(p)]) == (N_PER_PART - (DELETED_BELOW if p == 1 else 0))
           for p in range(PARTS)),
       'read back before the loss: %s records' % [len(st['records'][str(p)]) for p in range(PARTS)])
    ok(st['configs'] == CONFIGS, 'the topic reports its settings %s' % st['configs'])
    diag('offsets before the loss: %s, topic id %s' % (st['offsets'], st['topic_id']))
    save_state(st)


def phase_restore_errors():
    e = create('never-there', -1, {'redpanda.remote.recovery': 'true'})
    ok(e is not None and 'UNKNOWN_TOPIC_OR_PART' in str(e) and 'never-there/topic_manifest' in str(e),
       'a topic the bucket lacks: UNKNOWN_TOPIC_OR_PARTITION naming the key: %s' % e)
    e = create('never-there', -1, {'remote.recovery': 'maybe'})
    ok(e is not None and 'INVALID_CONFIG' in str(e), 'remote.recovery=maybe: INVALID_CONFIG: %s' % e)
    e = create(TOPIC, 5, {'redpanda.remote.recovery': 'true'})
    ok(e is not None and 'INVALID_PARTITIONS' in str(e) and '3' in str(e),
       'a partition count other than the bucket\'s: INVALID_PARTITIONS: %s' % e)
    from confluent_kafka.admin import AdminClient  # noqa: F401
    md = admin().list_topics(timeout=TIMEOUT)
    ok(TOPIC not in md.topics and 'never-there' not in md.topics, 'refused restores create nothing')


def check_offsets_and_records(st, desc):
    now = offsets()
    ok(now == st['offsets'], '%s: ListOffsets earliest/latest as before the loss %s' % (desc, now))
    for p in range(PARTS):
        start = DELETED_BELOW if p == 1 else 0
        got = consume(TOPIC, p, start)
        want = st['records'][str(p)]
        diff = [(a, b) for a, b in zip(want, got) if a != b][:1]
        ok(got == want, '%s: partition %d: all %d records identical from offset %d (offset, key, value, '
           'headers, timestamp) %s' % (desc, p, len(want), start, diff or ''))


def phase_restore():
    st = load_state()
    override = {'redpanda.remote.recovery': 'true', 'max.message.bytes': '300000'}
    t0 = time.time()
    e = create(TOPIC, -1, override)
    ok(e is None, 'CreateTopics %s with redpanda.remote.recovery=true (took %.1fs): %s'
       % (TOPIC, time.time() - t0, e))
    e = create(TOPIC, -1, {'redpanda.remote.recovery': 'true'})
    ok(e is not None and 'TOPIC_ALREADY_EXISTS' in str(e), 'again: TOPIC_ALREADY_EXISTS: %s' % e)
    md = admin().list_topics(TOPIC, timeout=TIMEOUT)
    ok(len(md.topics[TOPIC].partitions) == PARTS, 'the bucket\'s partition count (%d)'
       % len(md.topics[TOPIC].partitions))
    want = dict(CONFIGS, **{'max.message.bytes': '300000'})
    cfg = topic_configs(TOPIC)
    ok(cfg == want, 'DescribeConfigs: the original settings, the request\'s override on top %s' % cfg)
    names = all_config_names(TOPIC)
    ok('redpanda.remote.recovery' not in names and 'remote.recovery' not in names,
       'the recovery flag is not a setting of the topic')
    logdir = os.path.join(sdir, 'log2')
    ok(local_topic_id(logdir) == st['topic_id'] and topic_manifest_id() == st['topic_id'],
       'the topic keeps its id (%s)' % local_topic_id(logdir))
    check_offsets_and_records(st, 'restored')
    # Producing continues at the old ends, and the new records tier too.
    done, errs = produce(TOPIC, 50, N_PER_PART, st['base_ts'])
    firsts = {p: min(done[p]) if done[p] else -1 for p in range(PARTS)}
    ok(not errs and all(firsts[p] == st['offsets'][str(p)][1] for p in range(PARTS)),
       'new records continue at the old end offsets %s %s' % (firsts, errs[:2]))
    new_end = {p: st['offsets'][str(p)][1] + 50 for p in range(PARTS)}
    good = wait_until(lambda: all((manifest(p) or (0, -1))[1] == new_end[p] for p in range(PARTS)), 120)
    ok(good, 'the new records are uploaded too (manifest ends %s)' % {p: (manifest(p) or (0, -1))[1]
                                                                     for p in range(PARTS)})
    # The new broker's metadata directory is new too: its idempotent producers must not get
    # the ids the lost broker handed out (producers from before the loss may still hold them).
    old_pids, new_pids = bucket_producer_ids({k: v[1] for k, v in st['offsets'].items()})
    ok(old_pids and new_pids and not old_pids & new_pids and min(new_pids) > max(old_pids),
       'producer ids after the restore are new (before the loss %s, after %s)'
       % (sorted(old_pids), sorted(new_pids)))
    for p in range(PARTS):
        got = consume(TOPIC, p, DELETED_BELOW if p == 1 else 0)
        tail = [r for r in got if r[0] >= st['offsets'][str(p)][1]]
        k, v, h, ts = record(p, N_PER_PART, st['base_ts'])
        ok(len(got) == len(st['records'][str(p)]) + 50 and got[:len(st['records'][str(p)])] == st['records'][str(p)]
           and tail and tail[0][2] == v.decode() and tail[0][4] == ts,
           'partition %d reads old and new records in one log (%d)' % (p, len(got)))
    st['offsets_after'] = offsets()
    save_state(st)


def phase_after_restart():
    st = load_state()
    ok(offsets() == st['offsets_after'], 'after a restart of the restored broker: same offsets %s'
       % offsets())
    got = consume(TOPIC, 0, 0)
    ok(got[:len(st['records']['0'])] == st['records']['0'], 'and the same records')
    ok(topic_configs(TOPIC) == dict(CONFIGS, **{'max.message.bytes': '300000'}), 'and the same settings')


def phase_notier():
    e = create(TOPIC, -1, {'redpanda.remote.recovery': 'true'})
    ok(e is not None and 'INVALID_CONFIG' in str(e) and 'tier' in str(e),
       'without tiered storage: INVALID_CONFIG saying so: %s' % e)


PHASES = {'produce': phase_produce, 'restore-errors': phase_restore_errors, 'restore': phase_restore,
          'after-restart': phase_after_restart, 'notier': phase_notier}

if __name__ == '__main__':
    tapkit.run(PHASES[phase], 'phase %s ran to the end' % phase)
