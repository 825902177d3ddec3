#!/usr/bin/python3
# t/tier_test.py -- tiered storage against a running stratad (driven by t/tier_e2e.sh on the
# file:// bucket and t/tier_s3.sh on s3rver, which start, kill and restart the broker and take
# the bucket down): records produced with confluent-kafka and kcat go to a topic with tiny
# segments; once the local copies are gone (local retention), kafka-python and kcat read every
# record back from the bucket identical to what they read while it was hot (offset, key, value,
# headers, timestamp); timestamp seeks into the bucket; an object store outage keeps producers
# working and local segments in place, then the backlog uploads; a damaged object fails only the
# fetch that needs it (KAFKA_STORAGE_ERROR); deleting a topic empties its part of the bucket.
# The bucket is read and written through a small abstraction: files under <STRATA_DIR>/bucket,
# or S3 through botocore when TIER_S3 is set (endpoint $S3_ENDPOINT, path style, credentials
# $S3_ACCESS_KEY/$S3_SECRET_KEY, region $S3_REGION; bucket and key prefix from the broker's
# strata.tier.url). Prints TAP lines without a plan. Usage: tier_test.py PHASE BOOTSTRAP STRATA_DIR
import functools, glob, os, socket, struct, subprocess, sys, time

from tapkit import crc32c, diag, ok, save_json, wait_until
import tapkit

phase, bs, sdir = sys.argv[1], sys.argv[2], sys.argv[3]
LOG = os.path.join(sdir, 'log')
STATE = os.path.join(sdir, 'tier-state.json')
TOPIC = 'tier-a'
CTOPIC = 'tier-c'
SEG = '16384'


def load_state():
    return tapkit.load_json(STATE, {'expected': [], 'base_ts': int(time.time() * 1000) - 3600000,
                                    'next': 0})


save_state = functools.partial(save_json, STATE)


def local_bases(topic, part):
    d = os.path.join(LOG, '%s-%d' % (topic, part))
    return sorted(int(os.path.basename(p)[:20]) for p in glob.glob(os.path.join(d, '*.log')))


# --- the bucket --------------------------------------------------------------------------------
# Keys are relative to the store's root (an s3:// URL's prefix is not part of them), as in
# man/strata-bucket.5: <hash8>/<topic>/<partition>_<id8>/<name> and <hash8>/<topic>/topic_manifest.

class NotFound(Exception):
    pass


class FileBucket:
    """The default file:// bucket, <STRATA_DIR>/bucket: one file per key. An outage here is
    stratad's strata.tier.test.fault.file hook: the files stay readable to the test."""
    outage_is_real = False

    def __init__(self, root):
        self.root = root

    def where(self, key):
        return os.path.join(self.root, key)

    def keys(self):
        out = []
        for d, _, files in os.walk(self.root):
            out += [os.path.relpath(os.path.join(d, f), self.root) for f in files]
        return sorted(out)

    def get(self, key):
        try:
            with open(self.where(key), 'rb') as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(key) from None

    def put(self, key, data):
        # In place (same inode): the damage must reach a reader that keeps the file open.
        path = self.where(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)

    def exists(self, key):
        return os.path.isfile(self.where(key))

    def delete(self, key):
        os.unlink(self.where(key))

    def probe(self):
        return None


class S3Bucket:
    """s3://bucket[/prefix] through botocore (its own SigV4 signer). The outage is real: s3rver
    is stopped, and nothing (this test included) can read the bucket meanwhile."""
    outage_is_real = True

    def __init__(self, url):
        from botocore.config import Config
        from botocore.session import get_session
        bucket, _, prefix = url[len('s3://'):].partition('/')
        self.bucket = bucket
        self.prefix = prefix.strip('/') + '/' if prefix.strip('/') else ''
        self.c = get_session().create_client(
            's3', endpoint_url=os.environ['S3_ENDPOINT'], region_name=os.environ['S3_REGION'],
            aws_access_key_id=os.environ['S3_ACCESS_KEY'],
            aws_secret_access_key=os.environ['S3_SECRET_KEY'],
            config=Config(s3={'addressing_style': 'path'}, connect_timeout=5, read_timeout=30,
                          retries={'max_attempts': 2, 'mode': 'standard'}))

    def where(self, key):
        return 's3://%s/%s%s' % (self.bucket, self.prefix, key)

    def keys(self):
        out = []
        for page in self.c.get_paginator('list_objects_v2').paginate(Bucket=self.bucket,
                                                                    Prefix=self.prefix):
            out += [o['Key'][len(self.prefix):] for o in page.get('Contents', [])]
        return sorted(out)

    def get(self, key):
        try:
            return self.c.get_object(Bucket=self.bucket, Key=self.prefix + key)['Body'].read()
        except self.c.exceptions.NoSuchKey:
            raise NotFound(key) from None

    def put(self, key, data):
        self.c.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def exists(self, key):
        from botocore.exceptions import ClientError
        try:
            self.c.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return True
        except ClientError as e:
            if e.response.get('Error', {}).get('Code') in ('404', 'NoSuchKey', 'NotFound'):
                return False
            raise

    def delete(self, key):
        self.c.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def probe(self):
        """None when the bucket answers a LIST, else the error."""
        try:
            self.c.list_objects_v2(Bucket=self.bucket, Prefix=self.prefix, MaxKeys=1)
            return None
        except Exception as e:  # noqa: BLE001 (the error is the answer)
            return '%s: %s' % (type(e).__name__, e)


def tier_url():
    """strata.tier.url from the broker's arguments (t/lib.sh keeps them one per line)."""
    with open(os.path.join(sdir, 'stratad.args')) as f:
        for a in f.read().splitlines():
            if a.startswith('strata.tier.url='):
                return a.split('=', 1)[1]
    return None


if os.environ.get('TIER_S3'):
    url = tier_url()
    if not url or not url.startswith('s3://'):
        sys.exit('TIER_S3 is set but strata.tier.url is %r' % url)
    BUCKET = S3Bucket(url)
else:
    BUCKET = FileBucket(os.path.join(sdir, 'bucket'))


def topic_keys(topic, part=None, name=None):
    """Keys of topic's objects (of one partition, with one name), sorted."""
    out = []
    for k in BUCKET.keys():
        f = k.split('/')
        if len(f) < 3 or f[1] != topic:
            continue
        if part is not None and (len(f) != 4 or not f[2].startswith('%d_' % part)):
            continue
        if name is not None and f[-1] != name:
            continue
        out.append(k)
    return out


_mkeys = {}


def manifest_text(topic, part):
    """The partition manifest (text), or None when the bucket has none."""
    for attempt in range(2):
        k = _mkeys.get((topic, part))
        if k is None or attempt:
            ks = topic_keys(topic, part, 'manifest')
            if not ks:
                return None
            if len(ks) > 1:
                diag('several manifests for %s-%d: %s' % (topic, part, ks))
            k = _mkeys[(topic, part)] = ks[0]
        try:
            return BUCKET.get(k).decode()
        except NotFound:
            continue
    return None


def manifest_segs(topic, part):
    """(start_offset, [(base, last, key stem)]) from the bucket's manifest (([-1, []]): none)."""
    text = manifest_text(topic, part)
    segs, start = [], -1
    for line in (text or '').splitlines():
        if line.startswith('start_offset='):
            start = int(line.split('=', 1)[1])
        if line.startswith('seg '):
            fields = dict(kv.split('=', 1) for kv in line.split()[1:])
            segs.append((int(fields['base']), int(fields['last']), fields['key']))
    return start, segs


def manifest_end(topic, part):
    """Offset after the last segment the bucket's manifest lists (-1: no manifest)."""
    start, segs = manifest_segs(topic, part)
    return max([s[1] + 1 for s in segs], default=-1)


def end_at_outage(st):
    """The manifest end when the bucket went down: saved by the phase 'mark' just before a real
    outage (nothing can read the bucket during it), read now under the fault hook."""
    if BUCKET.outage_is_real:
        return st.pop('mark_end')
    return manifest_end(TOPIC, 0)


def manifest_frozen(end0):
    """(verdict, text): nothing new in the manifest since end0 while the bucket is down. In a
    real outage the bucket must not even answer (else the outage is not one)."""
    if BUCKET.outage_is_real:
        err = BUCKET.probe()
        return err is not None, 'the bucket does not answer (%s)' % (err or 'it does')
    e = manifest_end(TOPIC, 0)
    return e == end0, 'nothing new in the manifest (end %d)' % e


# --- admin -------------------------------------------------------------------------------------

admin = functools.partial(tapkit.admin, bs)
create = functools.partial(tapkit.create_topic, bs)


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


def consume_kp(topic, part):
    """Every record from offset 0 to the end, with kafka-python: (records, end)."""
    return tapkit.kp_read(bs, topic, part)


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
    end0 = end_at_outage(st)
    good, errs = produce_confluent(st, 1500, 'none')
    ok(good, 'bucket down: producers keep working (1500 records acknowledged) %s' % errs)
    hw = end_offset(TOPIC, 0)
    time.sleep(3)  # several retention rounds (log.retention.check.interval.ms=500)
    b = local_bases(TOPIC, 0)
    frozen, how = manifest_frozen(end0)
    ok(frozen and len(b) > 3 and b[0] <= end0,
       'bucket down: %s and no local segment past the manifest end %d deleted (local %d segments '
       'from %d, log end %d)' % (how, end0, len(b), b[0], hw))
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
    end0 = end_at_outage(st)
    good, errs = produce_confluent(st, 1000, 'none')
    ok(good, 'bucket down again: 1000 more records acknowledged %s' % errs)
    time.sleep(1.5)
    b = local_bases(TOPIC, 0)
    frozen, how = manifest_frozen(end0)
    ok(frozen and len(b) > 2 and b[0] <= end0,
       'their segments are closed but not uploaded: %s (%d local from %d, manifest end %d)'
       % (how, len(b), b[0], end0))
    save_state(st)


def phase_killed_mid_upload():
    """Right after a SIGKILL in the middle of a segment upload (t/tier_s3.sh holds its .log PUT
    in the proxy): the segment's index objects are in the bucket, the manifest does not list it."""
    end = manifest_end(TOPIC, 0)
    names = set(k.rsplit('/', 1)[1] for k in topic_keys(TOPIC, 0))
    half = ['%020d.%s' % (end, e) for e in ('index', 'timeindex')]
    ok(end in local_bases(TOPIC, 0) and all(n in names for n in half),
       'killed mid-upload: segment %d is local, not in the manifest, its %s already in the bucket'
       % (end, [n for n in half if n in names]))


def phase_mark():
    """Just before a real outage (t/tier_s3.sh stops s3rver next): the manifest end, for the
    checks made while nothing can read the bucket. The broker is idle: every closed segment is
    in the manifest already (wait_cold), so nothing moves it before the outage."""
    st = load_state()
    good = wait_cold(TOPIC, 0)
    st['mark_end'] = manifest_end(TOPIC, 0)
    ok(good and st['mark_end'] > 0, 'before the outage: manifest end %d, local segments %s'
       % (st['mark_end'], local_bases(TOPIC, 0)))
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
    objs = topic_keys(CTOPIC, 1, '%020d.log' % 0)
    ok(len(objs) == 1, 'partition 1 segment 0 object found %s' % objs)
    data = bytearray(BUCKET.get(objs[0]))
    size = len(data)
    data[size // 2] ^= 0x5a
    BUCKET.put(objs[0], bytes(data))
    back = BUCKET.get(objs[0])
    ok(back == bytes(data) and size > 1000, 'flipped byte %d of %s (%d bytes)'
       % (size // 2, BUCKET.where(objs[0]), size))
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
    n = len(topic_keys(CTOPIC))
    ok(n > 0, 'the bucket holds %d %s objects' % (n, CTOPIC))
    f = admin().delete_topics([CTOPIC])
    try:
        f[CTOPIC].result(30)
        deleted = True
    except Exception as e:  # noqa: BLE001
        diag('delete: %s' % e)
        deleted = False
    ok(deleted, 'delete topic %s' % CTOPIC)

    def empty():
        return not topic_keys(CTOPIC)
    ok(wait_until(empty, 30), 'its objects and manifests are deleted from the bucket (left: %s)'
       % topic_keys(CTOPIC)[:3])


def phase_scrub_plant():
    """Objects no manifest refers to, planted for the scrub after the next start."""
    st = load_state()
    start, segs = manifest_segs(TOPIC, 0)
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
    data = BUCKET.get(stem + '.log')
    for k in inside + [stray, future]:
        BUCKET.put(k, data)
    planted = [k for k in inside + [stray, future] if BUCKET.exists(k)]
    st['scrub'] = {'gone': inside + [stray], 'kept': [future],
                   'referenced': [s[2] + '.' + e for s in segs for e in ('log', 'index', 'timeindex')]}
    save_state(st)
    ok(len(planted) == len(inside) + 2 and data, 'planted %d orphan objects next to %d referenced '
       'ones' % (len(planted), len(st['scrub']['referenced'])))


def phase_scrub_check():
    st = load_state()
    sc = st['scrub']

    def left():
        have = set(BUCKET.keys())
        return [k for k in sc['gone'] if k in have]
    ok(wait_until(lambda: not left(), 60), 'scrub at start deleted the unreferenced objects (left: %s)'
       % left())
    start, segs = manifest_segs(TOPIC, 0)
    refs = set(s[2] + '.' + e for s in segs for e in ('log', 'index', 'timeindex'))
    missing = sorted(refs - set(BUCKET.keys()))
    ok(not missing and refs, 'every object the manifest lists is still there (%d, missing %s)'
       % (len(refs), missing))
    ok(all(BUCKET.exists(k) for k in sc['kept']),
       'an unreferenced object past the manifest end stays (grace period: maybe an upload)')
    with open(os.path.join(sdir, 'stratad.log')) as f:
        logged = f.read()
    for line in logged.splitlines():
        if 'scrub' in line:
            diag(line)
    ok(all(k in logged for k in sc['gone']) and 'scrub deleted' in logged,
       'each deletion is logged with its key')
    for k in sc['kept']:
        if BUCKET.exists(k):
            BUCKET.delete(k)


PHASES = {'hot': phase_hot, 'cold': phase_cold, 'restarted': phase_restarted,
          'scrub-plant': phase_scrub_plant, 'earliest-down': phase_earliest_down,
          'scrub-check': phase_scrub_check, 'mark': phase_mark, 'outage-produce': phase_outage_produce,
          'outage-restored': phase_outage_restored, 'before-kill': phase_before_kill,
          'killed-mid-upload': phase_killed_mid_upload, 'after-kill': phase_after_kill,
          'corrupt': phase_corrupt, 'delete': phase_delete}

if __name__ == '__main__':
    tapkit.run(PHASES[phase], 'phase %s ran to the end' % phase)
