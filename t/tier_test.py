#!/usr/bin/python3
# t/tier_test.py -- tiered storage against a running stratad (driven by t/tier_e2e.sh, which starts,
# kills and restarts the broker): records produced with confluent-kafka and kcat go to a topic
# with tiny segments; once the local copies are gone (local retention), kafka-python and kcat
# read every record back from the bucket identical to what they read while it was hot (offset,
# key, value, headers, timestamp); timestamp seeks into the bucket; an object store outage keeps
# producers working and local segments in place, then the backlog uploads; a damaged object
# fails only the fetch that needs it (KAFKA_STORAGE_ERROR); deleting a topic empties its part of
# the bucket. Prints TAP lines without a plan. Usage: tier_test.py PHASE BOOTSTRAP STRATA_DIR
import glob, json, os, socket, struct, subprocess, sys, time

phase, bs, sdir = sys.argv[1], sys.argv[2], sys.argv[3]
LOG = os.path.join(sdir, 'log')
BUCKET = os.path.join(sdir, 'bucket')
STATE = os.path.join(sdir, 'tier-state.json')
TOPIC = 'tier-a'
CTOPIC = 'tier-c'
SEG = '16384'


def ok(cond, desc):
    print(('ok' if cond else 'not ok') + ' - ' + desc, flush=True)
    return cond


def diag(msg):
    print('# ' + msg, flush=True)


def load_state():
    if os.path.exists(STATE):
        with open(STATE) as f:
            return json.load(f)
    return {'expected': [], 'base_ts': int(time.time() * 1000) - 3600000, 'next': 0}


def save_state(st):
    with open(STATE, 'w') as f:
        json.dump(st, f)


def wait_until(fn, timeout_s, step=0.2):
    end = time.time() + timeout_s
    while time.time() < end:
        if fn():
            return True
        time.sleep(step)
    return fn()


def local_bases(topic, part):
    d = os.path.join(LOG, '%s-%d' % (topic, part))
    return sorted(int(os.path.basename(p)[:20]) for p in glob.glob(os.path.join(d, '*.log')))


S3 = bool(os.environ.get('TIER_S3'))  # the bucket is not a directory here (t/tier_s3.sh)


def manifest_end(topic, part):
    """Offset after the last segment the bucket's manifest lists (-1: no manifest)."""
    if S3:
        return 1 << 62  # local deletion already proves the manifest is durable
    m = glob.glob(os.path.join(BUCKET, '*', topic, '%d_*' % part, 'manifest'))
    if not m:
        return -1
    end = -1
    with open(m[0]) as f:
        for line in f:
            if line.startswith('seg '):
                fields = dict(kv.split('=', 1) for kv in line.split()[1:])
                end = max(end, int(fields['last']) + 1)
    return end


# --- admin -------------------------------------------------------------------------------------

_admin = []


def admin():
    # Kept alive: futures of a destroyed client fail with _DESTROY.
    from confluent_kafka.admin import AdminClient
    if not _admin:
        _admin.append(AdminClient({'bootstrap.servers': bs}))
    return _admin[0]


def create(topic, parts, cfg):
    from confluent_kafka.admin import NewTopic
    f = admin().create_topics([NewTopic(topic, parts, 1, config=cfg)])
    try:
        f[topic].result(30)
        return None
    except Exception as e:  # noqa: BLE001 (the error is the answer)
        return e


def alter(topic, cfg):
    from confluent_kafka.admin import ConfigResource
    r = ConfigResource('topic', topic, set_config=cfg)
    f = admin().alter_configs([r])
    try:
        f[r].result(30)
        return None
    except Exception as e:  # noqa: BLE001
        return e


# --- producing ---------------------------------------------------------------------------------

def record(i, base_ts):
    key = None if i % 11 == 0 else ('k%d' % (i % 50)).encode()
    value = ('v%d-' % i).encode() * (1 + i % 5)
    return key, value, [('seq', str(i).encode()), ('h', b'x' * (i % 3))], base_ts + i * 7


def produce_confluent(st, n, codec):
    from confluent_kafka import Producer
    errs, done = [], {}
    p = Producer({'bootstrap.servers': bs, 'linger.ms': 5, 'batch.num.messages': 100,
                  'compression.type': codec, 'acks': 'all'})
    first = st['next']
    for i in range(first, first + n):
        k, v, h, ts = record(i, st['base_ts'])

        def cb(err, m, i=i):
            if err:
                errs.append(str(err))
            else:
                done[i] = m.offset()
        p.produce(TOPIC, key=k, value=v, headers=h, timestamp=ts, partition=0, on_delivery=cb)
        if i % 200 == 0:
            p.poll(0)
    left = p.flush(60)
    st['next'] = first + n
    for i in range(first, first + n):
        k, v, h, ts = record(i, st['base_ts'])
        st['expected'].append({'i': i, 'offset': done.get(i, -1), 'key': k.decode() if k else None,
                               'value': v.decode(), 'ts': ts})
    return left == 0 and not errs and len(done) == n, errs[:3]


def produce_kcat(topic, part, lines, extra=()):
    r = subprocess.run(['kcat', '-P', '-b', bs, '-t', topic, '-p', str(part), '-K:', '-H', 'src=kcat',
                        '-X', 'batch.num.messages=50'] + list(extra),
                       input=''.join(l + '\n' for l in lines).encode(), capture_output=True, timeout=60)
    return r.returncode == 0, r.stderr.decode()[-300:]


# --- consuming ---------------------------------------------------------------------------------

def end_offset(topic, part):
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs)
    tp = TopicPartition(topic, part)
    e = c.end_offsets([tp])[tp]
    c.close()
    return e


def consume_kp(topic, part, timeout_s=60):
    """Every record from offset 0 to the end, with kafka-python."""
    from kafka import KafkaConsumer, TopicPartition
    tp = TopicPartition(topic, part)
    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, fetch_max_wait_ms=200,
                      max_partition_fetch_bytes=65536)
    end = c.end_offsets([tp])[tp]
    c.assign([tp])
    c.seek(tp, 0)
    out = []
    deadline = time.time() + timeout_s
    while c.position(tp) < end and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            for m in recs:
                out.append([m.offset, m.key.decode() if m.key is not None else None, m.value.decode(),
                            [[k, v.decode()] for k, v in (m.headers or [])], m.timestamp])
    c.close()
    return out, end


def consume_kcat(topic, part):
    r = subprocess.run(['kcat', '-C', '-b', bs, '-t', topic, '-p', str(part), '-o', 'beginning', '-e',
                        '-q', '-f', '%o\t%k\t%s\t%h\t%T\n'], capture_output=True, timeout=120)
    return r.stdout.decode().splitlines()


def capture(name):
    kp, end = consume_kp(TOPIC, 0)
    kc = consume_kcat(TOPIC, 0)
    return {'kp': kp, 'kcat': kc, 'end': end}


def compare_with_expected(st, kp, desc):
    by_off = {r[0]: r for r in kp}
    bad = []
    for e in st['expected']:
        r = by_off.get(e['offset'])
        if (r is None or r[1] != e['key'] or r[2] != e['value'] or r[4] != e['ts'] or
                dict((k, v) for k, v in r[3]).get('seq') != str(e['i'])):
            bad.append((e['i'], e['offset'], r))
    ok(not bad and st['expected'], '%s: every confluent-kafka record as produced (%d checked) %s'
       % (desc, len(st['expected']), bad[:2]))


def check_same(hot, cold, desc):
    offs = [r[0] for r in cold['kp']]
    ok(offs == list(range(cold['end'])), '%s: kafka-python reads offsets 0..%d once each (%d records)'
       % (desc, cold['end'] - 1, len(offs)))
    n = min(len(hot['kp']), len(cold['kp']))
    same = hot['kp'][:n] == cold['kp'][:n] and n == len(hot['kp'])
    diff = [(a, b) for a, b in zip(hot['kp'], cold['kp']) if a != b][:1]
    ok(same, '%s: kafka-python sees the records read hot, identical (offset, key, value, headers, '
       'timestamp) %s' % (desc, diff))
    n = min(len(hot['kcat']), len(cold['kcat']))
    ok(hot['kcat'] == cold['kcat'][:len(hot['kcat'])] and len(hot['kcat']) > 0,
       '%s: kcat sees the same %d records as hot' % (desc, len(hot['kcat'])))


# --- a raw Fetch v4 (error codes per partition, as clients hide them) ---------------------------

def kstr(s):
    b = s.encode()
    return struct.pack('>h', len(b)) + b


def raw_fetch(topic, offsets, max_wait_ms=2000):
    """offsets: {partition: fetch_offset}. Returns {partition: (error, [batch base offsets])}."""
    host, port = bs.rsplit(':', 1)
    body = struct.pack('>iiiib', -1, max_wait_ms, 1, 4 << 20, 0) + struct.pack('>i', 1) + kstr(topic)
    body += struct.pack('>i', len(offsets))
    for p, off in offsets.items():
        body += struct.pack('>iqi', p, off, 1 << 20)
    req = struct.pack('>hhi', 1, 4, 7) + kstr('tier-test') + body
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(struct.pack('>i', len(req)) + req)

    def recv(n):
        b = b''
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b
    size = struct.unpack('>i', recv(4))[0]
    r = recv(size)
    s.close()
    pos = 8  # correlation id, throttle time
    out = {}
    nt = struct.unpack_from('>i', r, pos)[0]
    pos += 4
    for _ in range(nt):
        tl = struct.unpack_from('>h', r, pos)[0]
        pos += 2 + tl
        np_ = struct.unpack_from('>i', r, pos)[0]
        pos += 4
        for _ in range(np_):
            part, err, hw, lso = struct.unpack_from('>ihqq', r, pos)
            pos += 22
            na = struct.unpack_from('>i', r, pos)[0]
            pos += 4 + max(na, 0) * 16
            rl = struct.unpack_from('>i', r, pos)[0]
            pos += 4
            recs = r[pos:pos + max(rl, 0)]
            pos += max(rl, 0)
            bases, q = [], 0
            while q + 12 <= len(recs):
                base, blen = struct.unpack_from('>qi', recs, q)
                if q + 12 + blen > len(recs):
                    break
                bases.append(base)
                q += 12 + blen
            out[part] = (err, bases)
    return out


# --- phases ------------------------------------------------------------------------------------

def phase_hot():
    st = load_state()
    e = create('tier-bad', 1, {'retention.ms': '5000', 'local.retention.ms': '10000'})
    ok(e is not None and 'INVALID_CONFIG' in str(e), 'local.retention.ms above retention.ms is '
       'refused: %s' % e)
    e = create('tier-bad', 1, {'retention.bytes': '100000', 'retention.local.target.bytes': '-1'})
    ok(e is not None and 'INVALID_CONFIG' in str(e), 'Redpanda alias: infinite local under a finite '
       'total is refused: %s' % e)
    ok(create(TOPIC, 1, {'segment.bytes': SEG}) is None, 'create %s (segment.bytes=%s)' % (TOPIC, SEG))
    e = alter(TOPIC, {'segment.bytes': SEG, 'retention.ms': '60000', 'local.retention.ms': '120000'})
    ok(e is not None and 'INVALID_CONFIG' in str(e), 'AlterConfigs with local above total is refused')
    good, errs = produce_confluent(st, 1500, 'lz4')
    ok(good, 'confluent-kafka produces 1500 records (lz4) %s' % errs)
    good, err = produce_kcat(TOPIC, 0, ['kk%d:kcat-value-%d' % (i, i) for i in range(500)])
    ok(good, 'kcat produces 500 records %s' % err)
    good, errs = produce_confluent(st, 1000, 'none')
    ok(good, 'confluent-kafka produces 1000 more records (uncompressed) %s' % errs)
    hot = capture('hot')
    ok(len(hot['kp']) == 3000 and hot['end'] == 3000, 'hot read: 3000 records (%d)' % len(hot['kp']))
    compare_with_expected(st, hot['kp'], 'hot')
    st['hot'] = hot
    save_state(st)
    ok(len(local_bases(TOPIC, 0)) > 5, 'the topic spans %d local segments' % len(local_bases(TOPIC, 0)))


def wait_cold(topic, part, timeout_s=90):
    """Until only the active segment is local and the manifest covers the rest."""
    def done():
        b = local_bases(topic, part)
        return len(b) == 1 and manifest_end(topic, part) >= b[0] > 0
    return wait_until(done, timeout_s)


def phase_cold():
    st = load_state()
    hot = st['hot']
    ok(alter(TOPIC, {'segment.bytes': SEG, 'local.retention.bytes': '1'}) is None,
       'AlterConfigs local.retention.bytes=1 (live)')
    good = wait_cold(TOPIC, 0)
    b = local_bases(TOPIC, 0)
    ok(good, 'hot segments are deleted locally once in the bucket (local segments now %s, manifest '
       'end %d)' % (b, manifest_end(TOPIC, 0)))
    cold = capture('cold')
    check_same(hot, cold, 'cold')
    compare_with_expected(st, cold['kp'], 'cold')
    # Timestamp seek to a time that only the bucket holds.
    from kafka import KafkaConsumer, TopicPartition
    tp = TopicPartition(TOPIC, 0)
    target = next(r for r in hot['kp'] if r[0] == 321)[4] - 3  # between two records: the next one
    want = min(r[0] for r in hot['kp'] if r[4] >= target)
    c = KafkaConsumer(bootstrap_servers=bs)
    got = c.offsets_for_times({tp: target})[tp]
    c.close()
    ok(got is not None and got.offset == want and want < b[0],
       'offsets_for_times into the bucket: %s (want %d, local start %d)' % (got, want, b[0]))
    r = subprocess.run(['kcat', '-C', '-b', bs, '-t', TOPIC, '-p', '0', '-o', 's@%d' % target, '-c', '1',
                        '-q', '-f', '%o'], capture_output=True, timeout=60)
    ok(r.stdout.decode().strip() == str(want), 'kcat -o s@%d starts at %s (want %d)'
       % (target, r.stdout.decode().strip(), want))
    r = subprocess.run(['kcat', '-Q', '-b', bs, '-t', '%s:0:-2' % TOPIC], capture_output=True, timeout=60)
    ok('offset 0' in r.stdout.decode(), 'ListOffsets earliest is the remote start: %s'
       % r.stdout.decode().strip())
    st['cold_local_start'] = b[0]
    save_state(st)


def phase_restarted():
    st = load_state()
    cold = capture('restarted')
    check_same(st['hot'], cold, 'after restart')


def phase_outage_produce():
    st = load_state()
    end0 = manifest_end(TOPIC, 0)
    good, errs = produce_confluent(st, 1500, 'none')
    ok(good, 'bucket down: producers keep working (1500 records acknowledged) %s' % errs)
    hw = end_offset(TOPIC, 0)
    time.sleep(3)  # several retention rounds (log.retention.check.interval.ms=500)
    b = local_bases(TOPIC, 0)
    ok(manifest_end(TOPIC, 0) == end0 and len(b) > 3 and b[0] <= end0,
       'bucket down: nothing new in the manifest (end %d) and no local segment past it deleted '
       '(local %d segments from %d, log end %d)' % (end0, len(b), b[0], hw))
    save_state(st)


def phase_outage_restored():
    st = load_state()
    good = wait_cold(TOPIC, 0)
    b = local_bases(TOPIC, 0)
    ok(good, 'bucket back: the backlog is uploaded and local retention catches up (local %s, manifest '
       'end %d)' % (b, manifest_end(TOPIC, 0)))
    kp, end = consume_kp(TOPIC, 0)
    ok([r[0] for r in kp] == list(range(end)), 'all %d records readable' % end)
    compare_with_expected(st, kp, 'after the outage')


def phase_earliest_down():
    r = subprocess.run(['kcat', '-Q', '-b', bs, '-t', '%s:0:-2' % TOPIC], capture_output=True, timeout=60)
    ok('offset 0' in r.stdout.decode(), 'bucket down at start: ListOffsets earliest is the saved '
       'remote start: %s %s' % (r.stdout.decode().strip(), r.stderr.decode().strip()[-200:]))


def phase_before_kill():
    st = load_state()
    end0 = manifest_end(TOPIC, 0)
    good, errs = produce_confluent(st, 1000, 'none')
    ok(good, 'bucket down again: 1000 more records acknowledged %s' % errs)
    time.sleep(1.5)
    ok(manifest_end(TOPIC, 0) == end0 and len(local_bases(TOPIC, 0)) > 2,
       'their segments are closed but not uploaded (%d local)' % len(local_bases(TOPIC, 0)))
    save_state(st)


def phase_after_kill():
    st = load_state()
    good = wait_cold(TOPIC, 0)
    ok(good, 'after SIGKILL and restart, the segments not in the manifest are uploaded (local %s, '
       'manifest end %d)' % (local_bases(TOPIC, 0), manifest_end(TOPIC, 0)))
    kp, end = consume_kp(TOPIC, 0)
    ok([r[0] for r in kp] == list(range(end)) and end == st['next'] + 500,
       'all %d records readable from the bucket and the log' % end)
    compare_with_expected(st, kp, 'after SIGKILL')


def phase_corrupt():
    ok(create(CTOPIC, 2, {'segment.bytes': SEG, 'local.retention.bytes': '1'}) is None,
       'create %s with 2 partitions' % CTOPIC)
    for p in (0, 1):
        good, err = produce_kcat(CTOPIC, p, ['k%d:partition-%d-value-%d-%s' % (i, p, i, 'x' * 40)
                                             for i in range(2000)])
        ok(good, 'kcat produces 2000 records to partition %d %s' % (p, err))
    ok(wait_cold(CTOPIC, 0) and wait_cold(CTOPIC, 1), 'both partitions are cold (local %s / %s)'
       % (local_bases(CTOPIC, 0), local_bases(CTOPIC, 1)))
    objs = glob.glob(os.path.join(BUCKET, '*', CTOPIC, '1_*', '%020d.log' % 0))
    ok(len(objs) == 1, 'partition 1 segment 0 object found %s' % objs)
    with open(objs[0], 'r+b') as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0x5a]))
    diag('flipped byte %d of %s' % (size // 2, objs[0]))
    seen0, errs1 = [], []
    deadline = time.time() + 30
    while time.time() < deadline and (not seen0 or len(errs1) < 2):
        r = raw_fetch(CTOPIC, {0: 0, 1: 0})
        if r[0][0] == 0 and r[0][1]:
            seen0 = r[0][1]
        if r[1][0] != 0:
            errs1.append(r[1][0])
        ok_data1 = r[1][1]
        if ok_data1 and r[1][0] == 0:
            errs1.append('data:%s' % ok_data1[:2])
        time.sleep(0.2)
    ok(errs1 and all(e == 56 for e in errs1), 'the fetch needing the damaged object fails with '
       'KAFKA_STORAGE_ERROR (56) every time: %s' % errs1[:4])
    ok(seen0 and seen0[0] == 0, 'the other partition is served from the bucket (batches from %s)'
       % seen0[:1])
    r = raw_fetch(CTOPIC, {1: 1500})
    ok(r[1][0] == 0 and r[1][1] and r[1][1][0] <= 1500, 'partition 1 past the damaged segment is '
       'still served (%s)' % (r[1],))


def phase_delete():
    ok(glob.glob(os.path.join(BUCKET, '*', CTOPIC, '*')), 'the bucket holds %s objects' % CTOPIC)
    f = admin().delete_topics([CTOPIC])
    try:
        f[CTOPIC].result(30)
        deleted = True
    except Exception as e:  # noqa: BLE001
        diag('delete: %s' % e)
        deleted = False
    ok(deleted, 'delete topic %s' % CTOPIC)

    def empty():
        return not [p for p in glob.glob(os.path.join(BUCKET, '*', CTOPIC, '**'), recursive=True)
                    if os.path.isfile(p)]
    ok(wait_until(empty, 30), 'its objects and manifests are deleted from the bucket')


def crc32c(data):
    crc = 0xffffffff
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82f63b78 if crc & 1 else 0)
    return crc ^ 0xffffffff


def manifest_segs(topic, part):
    """(manifest path, start_offset, [(base, last, key stem)]) from the file:// bucket."""
    m = glob.glob(os.path.join(BUCKET, '*', topic, '%d_*' % part, 'manifest'))
    segs, start = [], -1
    with open(m[0]) as f:
        for line in f:
            if line.startswith('start_offset='):
                start = int(line.split('=', 1)[1])
            if line.startswith('seg '):
                fields = dict(kv.split('=', 1) for kv in line.split()[1:])
                segs.append((int(fields['base']), int(fields['last']), fields['key']))
    return m[0], start, segs


def phase_scrub_plant():
    """Objects no manifest refers to, planted for the scrub after the next start."""
    st = load_state()
    mpath, start, segs = manifest_segs(TOPIC, 0)
    base, last, stem = next(s for s in segs if s[1] > s[0])
    rest = stem.split('/', 1)[1]
    ok('%08x' % crc32c(rest.encode()) == stem.split('/', 1)[0], 'key hash recomputed for %s' % stem)
    pdir = rest.rsplit('/', 1)[0]  # <topic>/<partition>_<id8>

    def key(b, ext):
        r = '%s/%020d' % (pdir, b)  # the hash covers the stem, not the extension
        return '%08x/%s.%s' % (crc32c(r.encode()), r, ext)
    inside = [key(base + 1, e) for e in ('log', 'index', 'timeindex')]  # in range, not listed
    stray = '00000000/%s/junk-object' % pdir                             # not a name strata writes
    future = key(last + 10 ** 9, 'log')                                 # past the end: grace period
    with open(os.path.join(BUCKET, stem + '.log'), 'rb') as f:
        data = f.read()
    for k in inside + [stray, future]:
        os.makedirs(os.path.dirname(os.path.join(BUCKET, k)), exist_ok=True)
        with open(os.path.join(BUCKET, k), 'wb') as f:
            f.write(data)
    st['scrub'] = {'gone': inside + [stray], 'kept': [future],
                   'referenced': [s[2] + '.' + e for s in segs for e in ('log', 'index', 'timeindex')]}
    save_state(st)
    ok(True, 'planted %d orphan objects next to %d referenced ones' % (len(inside) + 2,
                                                                        len(st['scrub']['referenced'])))


def phase_scrub_check():
    st = load_state()
    sc = st['scrub']

    def gone():
        return not [k for k in sc['gone'] if os.path.exists(os.path.join(BUCKET, k))]
    ok(wait_until(gone, 60), 'scrub at start deleted the unreferenced objects (left: %s)'
       % [k for k in sc['gone'] if os.path.exists(os.path.join(BUCKET, k))])
    mpath, start, segs = manifest_segs(TOPIC, 0)
    refs = set(s[2] + '.' + e for s in segs for e in ('log', 'index', 'timeindex'))
    missing = [k for k in refs if not os.path.exists(os.path.join(BUCKET, k))]
    ok(not missing and refs, 'every object the manifest lists is still there (%d, missing %s)'
       % (len(refs), missing))
    ok(all(os.path.exists(os.path.join(BUCKET, k)) for k in sc['kept']),
       'an unreferenced object past the manifest end stays (grace period: maybe an upload)')
    with open(os.path.join(sdir, 'stratad.log')) as f:
        logged = f.read()
    for line in logged.splitlines():
        if 'scrub' in line:
            diag(line)
    ok(all(k in logged for k in sc['gone']) and 'scrub deleted' in logged,
       'each deletion is logged with its key')
    for k in sc['kept']:
        if os.path.exists(os.path.join(BUCKET, k)):
            os.unlink(os.path.join(BUCKET, k))


{'hot': phase_hot, 'cold': phase_cold, 'restarted': phase_restarted,
 'scrub-plant': phase_scrub_plant, 'earliest-down': phase_earliest_down, 'scrub-check': phase_scrub_check,
 'outage-produce': phase_outage_produce, 'outage-restored': phase_outage_restored,
 'before-kill': phase_before_kill, 'after-kill': phase_after_kill, 'corrupt': phase_corrupt,
 'delete': phase_delete}[phase]()
