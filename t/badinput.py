#!/usr/bin/python3
# t/badinput.py -- bad input against a real stratad, raw sockets (driven by t/badinput.sh).
# Usage: badinput.py PORT STRATA_DIR. Prints TAP lines without a plan.
#
# Every case sends one bad thing on its own connection and checks what Kafka would do: the
# connection is closed (malformed frames, truncated or absurd fields, unknown APIs, unsupported
# versions), or the client gets the error code Kafka answers (ApiVersions too new; per partition
# for invalid record batches, whose partition log must stay byte-identical). After each case a
# bystander connection opened at the start, a fresh connection and kcat must still work, and the
# broker's log (STRATA_DIR/stratad.log) must have a line about it.
# The broker runs with socket.request.max.bytes=1048576, message.max.bytes=100000,
# num.partitions=2 (see t/badinput.sh).
import glob, hashlib, os, re, socket, struct, subprocess, sys, time

from tapkit import crc32c, diag, ok, uvarint, varint
import tapkit

PORT = int(sys.argv[1])
SDIR = sys.argv[2]
BS = '127.0.0.1:%d' % PORT
LOGF = os.path.join(SDIR, 'stratad.log')
MAX_REQUEST = 1048576
MAX_MESSAGE = 100000
TOPIC = b'bad'

# Kafka error codes
NONE, CORRUPT_MESSAGE, UNKNOWN_TOPIC_OR_PARTITION, MESSAGE_TOO_LARGE = 0, 2, 3, 10
INVALID_REQUIRED_ACKS, UNSUPPORTED_VERSION, UNSUPPORTED_COMPRESSION_TYPE, INVALID_RECORD = 21, 35, 76, 87


# ---- encoding ------------------------------------------------------------------------------

def vbytes(b):
    return varint(-1) if b is None else varint(len(b)) + b


def record(offset_delta, key, value, ts_delta=0):
    body = b'\x00' + varint(ts_delta) + varint(offset_delta) + vbytes(key) + vbytes(value) + varint(0)
    return varint(len(body)) + body


def batch(n=3, payload=None, base_offset=0, magic=2, attrs=0, last_offset_delta=None, count=None,
          crc=None, length=None, value=b'value'):
    """A RecordBatch v2 as a producer writes it; every field can be made to lie."""
    now = int(time.time() * 1000)
    recs = payload if payload is not None else b''.join(
        record(i, b'k%d' % i, value + b'%d' % i) for i in range(n))
    lod = n - 1 if last_offset_delta is None else last_offset_delta
    cnt = n if count is None else count
    after_crc = struct.pack('>hiqqqhii', attrs, lod, now, now, -1, -1, -1, cnt) + recs
    c = crc32c(after_crc) if crc is None else crc
    after_len = struct.pack('>ibI', -1, magic, c) + after_crc
    blen = len(after_len) if length is None else length
    return struct.pack('>qi', base_offset, blen) + after_len


def kstr(s):
    return struct.pack('>h', -1) if s is None else struct.pack('>h', len(s)) + s


def kbytes(b):
    return struct.pack('>i', -1) if b is None else struct.pack('>i', len(b)) + b


def karr(items):
    return struct.pack('>i', len(items)) + b''.join(items)


def cstr(s):
    return uvarint(0) if s is None else uvarint(len(s) + 1) + s


def carr(items):
    return uvarint(len(items) + 1) + b''.join(items)


def header(api, ver, corr, flex=False, client_id=b'badinput'):
    h = struct.pack('>hhi', api, ver, corr) + kstr(client_id)
    return h + (b'\x00' if flex else b'')


def frame(payload):
    return struct.pack('>i', len(payload)) + payload


def produce_body(parts, acks=-1, topic=TOPIC, ver=7):
    """parts: [(partition, records bytes)]"""
    if ver >= 9:
        ps = [struct.pack('>i', p) + (uvarint(0) if r is None else uvarint(len(r) + 1) + r) + b'\x00'
              for p, r in parts]
        return cstr(None) + struct.pack('>hi', acks, 30000) + carr([cstr(topic) + carr(ps) + b'\x00']) + b'\x00'
    ps = [struct.pack('>i', p) + kbytes(r) for p, r in parts]
    return kstr(None) + struct.pack('>hi', acks, 30000) + karr([kstr(topic) + karr(ps)])


def fetch_v4_body(partition, offset, max_wait=0, min_bytes=0, topic=TOPIC):
    return struct.pack('>iiiib', -1, max_wait, min_bytes, 10 << 20, 0) + karr(
        [kstr(topic) + karr([struct.pack('>iqi', partition, offset, 10 << 20)])])


def fetch_v11_body(partition, offset, topic=TOPIC):
    return struct.pack('>iiiibii', -1, 0, 0, 10 << 20, 0, 0, -1) + karr(
        [kstr(topic) + karr([struct.pack('>iiqqi', partition, -1, offset, -1, 1 << 20)])]) + \
        karr([]) + kstr(b'')


def metadata_v4_body(topics, auto_create=True):
    return karr([kstr(t) for t in topics]) + bytes([1 if auto_create else 0])


def metadata_v9_body(topics):
    return carr([cstr(t) + b'\x00' for t in topics]) + b'\x01\x00\x00' + b'\x00'


# ---- decoding ------------------------------------------------------------------------------

class R:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, n):
        if n < 0 or self.p + n > len(self.b):
            raise ValueError('short response')
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def i8(self): return struct.unpack('>b', self.take(1))[0]
    def i16(self): return struct.unpack('>h', self.take(2))[0]
    def i32(self): return struct.unpack('>i', self.take(4))[0]
    def i64(self): return struct.unpack('>q', self.take(8))[0]

    def str(self):
        n = self.i16()
        return None if n < 0 else self.take(n)

    def bytes(self):
        n = self.i32()
        return None if n < 0 else self.take(n)


def uvar(r):
    v, shift = 0, 0
    while True:
        c = r.take(1)[0]
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v
        shift += 7


def skip_tags(r):
    for _ in range(uvar(r)):
        uvar(r)
        r.take(uvar(r))


def parse_produce(body, ver):
    """{(topic, partition): error} from a Produce response v3..v9."""
    r = R(body)
    flex = ver >= 9
    out = {}
    for _ in range(uvar(r) - 1 if flex else r.i32()):
        name = r.take(uvar(r) - 1) if flex else r.str()
        for _ in range(uvar(r) - 1 if flex else r.i32()):
            p, err = r.i32(), r.i16()
            r.i64(); r.i64()
            if ver >= 5:
                r.i64()
            if ver >= 8:
                for _ in range(uvar(r) - 1 if flex else r.i32()):
                    r.i32()
                    n = uvar(r) - 1 if flex else r.i16()
                    r.take(max(n, 0))
                    if flex:
                        skip_tags(r)
                n = uvar(r) - 1 if flex else r.i16()
                r.take(max(n, 0))
            if flex:
                skip_tags(r)
            out[(name, p)] = err
        if flex:
            skip_tags(r)
    return out


def parse_produce_v7(body):
    return parse_produce(body, 7)


def parse_fetch_v4(body):
    """{partition: (error, high watermark, records)}"""
    r = R(body)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        r.str()
        for _ in range(r.i32()):
            p, err, hw = r.i32(), r.i16(), r.i64()
            r.i64()
            n = r.i32()
            for _ in range(max(n, 0)):
                r.i64(); r.i64()
            out[p] = (err, hw, r.bytes())
    return out


def parse_api_versions_v0(body):
    r = R(body)
    err = r.i16()
    keys = {}
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        keys[k] = (lo, hi)
    return err, keys


# ---- connections ---------------------------------------------------------------------------

class Conn:
    def __init__(self, timeout=10):
        self.s = socket.create_connection(('127.0.0.1', PORT), timeout=timeout)
        self.corr = 100

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.s.sendall(data)
            return True
        except OSError:
            return False

    def recv_exact(self, n):
        buf = b''
        while len(buf) < n:
            c = self.s.recv(n - len(buf))
            if not c:
                return None
            buf += c
        return buf

    def recv_frame(self):
        h = self.recv_exact(4)
        if h is None:
            return None
        return self.recv_exact(struct.unpack('>i', h)[0])

    def request(self, api, ver, body, flex=False, resp_flex=False):
        """Sends one request; returns the response body (after the correlation id, and its tags
        for flexible response headers) or None if the connection closed instead."""
        self.corr += 1
        corr = self.corr
        if not self.send(frame(header(api, ver, corr, flex) + body)):
            return None
        try:
            resp = self.recv_frame()
        except OSError:
            return None
        if resp is None:
            return None
        if struct.unpack('>i', resp[:4])[0] != corr:
            raise ValueError('correlation id %d, expected %d' % (struct.unpack('>i', resp[:4])[0], corr))
        return resp[5:] if resp_flex else resp[4:]

    def closed_by_peer(self, wait_s=5, expect_open=False):
        """True when the broker closes the connection (EOF or reset) without answering."""
        self.s.settimeout(wait_s)
        try:
            data = self.s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            if not expect_open:
                diag('connection still open after %ds' % wait_s)
            return False
        if data:
            diag('got %d bytes instead of a close' % len(data))
            return False
        return True


# ---- the broker's log and stored data --------------------------------------------------------

def log_size():
    try:
        return os.path.getsize(LOGF)
    except OSError:
        return 0


def log_since(mark):
    with open(LOGF, 'rb') as f:
        f.seek(mark)
        return f.read().decode(errors='replace')


def log_has(mark, pattern, wait_s=3):
    deadline = time.time() + wait_s
    while True:
        text = log_since(mark)
        if re.search(pattern, text):
            return True
        if time.time() > deadline:
            diag('no log line matching /%s/; new log lines:' % pattern)
            for line in text.splitlines()[-8:]:
                diag('  ' + line)
            return False
        time.sleep(0.05)


def stored(partition):
    """What the broker holds for TOPIC/partition: high watermark, fetched bytes, segment files."""
    c = Conn()
    try:
        f = parse_fetch_v4(c.request(1, 4, fetch_v4_body(partition, 0)))
    finally:
        c.close()
    err, hw, recs = f[partition]
    files = {}
    for path in sorted(glob.glob(os.path.join(SDIR, 'log', '%s-%d' % (TOPIC.decode(), partition), '*.log'))):
        with open(path, 'rb') as fh:
            files[os.path.basename(path)] = hashlib.sha256(fh.read()).hexdigest()
    return (err, hw, hashlib.sha256(recs or b'').hexdigest(), tuple(sorted(files.items())))


# ---- health ----------------------------------------------------------------------------------

bystander = None


def healthy(what):
    good = True
    try:
        body = bystander.request(18, 0, b'')
        err, keys = parse_api_versions_v0(body) if body is not None else (None, {})
        good &= ok(err == NONE and 0 in keys, '%s: the bystander connection still answers' % what)
    except (OSError, ValueError) as e:
        good &= ok(False, '%s: the bystander connection still answers (%s)' % (what, e))
    try:
        c = Conn()
        body = c.request(3, 1, karr([kstr(TOPIC)]))
        c.close()
        good &= ok(body is not None, '%s: a new connection gets Metadata' % what)
    except (OSError, ValueError) as e:
        good &= ok(False, '%s: a new connection gets Metadata (%s)' % (what, e))
    r = subprocess.run(['kcat', '-b', BS, '-L', '-t', TOPIC.decode(), '-m', '10'], capture_output=True,
                       timeout=60)
    good &= ok(r.returncode == 0 and b'1 brokers' in r.stdout, '%s: kcat -L still works' % what)
    return good


# ---- the cases -------------------------------------------------------------------------------

def expect_closed(what, data, log_pattern, partial_ok=False):
    """Sends data on a new connection: the broker must close it and log why."""
    mark = log_size()
    c = Conn()
    c.send(data)
    ok(c.closed_by_peer(), '%s: connection closed' % what)
    c.close()
    ok(log_has(mark, log_pattern), '%s: the broker logs it' % what)
    healthy(what)


def framing_cases():
    expect_closed('size prefix max+1', struct.pack('>i', MAX_REQUEST + 1) + b'\x00' * 64,
                  r'frame size=%d outside' % (MAX_REQUEST + 1))
    expect_closed('size prefix 2^31-1', struct.pack('>i', 2**31 - 1), r'frame size=2147483647 outside')
    expect_closed('size prefix -1', struct.pack('>i', -1) + b'\x00' * 16, r'frame size=-1 outside')
    expect_closed('size prefix -2^31', struct.pack('>i', -2**31), r'frame size=-2147483648 outside')
    expect_closed('empty frame', frame(b''), r'malformed .*frame shorter than a request header')
    expect_closed('frame of 3 bytes', frame(b'\x00\x03\x00'), r'frame shorter than a request header')
    expect_closed('header cut in the correlation id', frame(struct.pack('>hh', 3, 1) + b'\x00\x00'),
                  r'undecodable request header')
    expect_closed('client id longer than the frame',
                  frame(struct.pack('>hhih', 3, 1, 7, 1000) + b'abcde'), r'undecodable request header')
    expect_closed('client id length -2', frame(struct.pack('>hhih', 3, 1, 7, -2)), r'undecodable request header')
    expect_closed('flexible header with 5 tagged fields and no bytes',
                  frame(struct.pack('>hhih', 3, 9, 7, 0) + b'\x05'), r'undecodable request header')
    expect_closed('flexible header with an overlong varint',
                  frame(struct.pack('>hhih', 3, 9, 7, 0) + b'\xff' * 6), r'undecodable request header')

    # A frame cut short by the client: the broker waits for the rest, then sees the close.
    mark = log_size()
    c = Conn()
    c.send(struct.pack('>i', 100) + header(3, 1, 1)[:10])
    time.sleep(0.2)
    c.close()
    healthy('frame cut short, then the client closes')
    del mark


def api_cases():
    expect_closed('unknown api key 999', frame(header(999, 0, 1) + b'\x00' * 8), r'unsupported api key 999')
    expect_closed('api key -1', frame(header(-1, 0, 1)), r'unsupported api key -1')
    expect_closed('api key 4 (LeaderAndIsr, inter-broker)', frame(header(4, 0, 1) + b'\x00' * 16),
                  r'unsupported api key 4 ')
    expect_closed('Metadata v13 (newer than served)', frame(header(3, 13, 1, flex=True) + metadata_v9_body([TOPIC])),
                  r'Metadata v13 is not supported|unsupported api key 3')
    expect_closed('Produce v2 (older than served)', frame(header(0, 2, 1) + produce_body([(0, batch())], ver=2)[2:]),
                  r'Produce v2 is not supported')
    expect_closed('Fetch v3 (older than served)',
                  frame(header(1, 3, 1) + struct.pack('>iiii', -1, 0, 0, 1000) +
                        karr([kstr(TOPIC) + karr([struct.pack('>iqi', 0, 0, 1000)])])),
                  r'Fetch v3 is not supported')
    expect_closed('Metadata v-1', frame(header(3, -1, 1)), r'unsupported api key 3 \(v-1\)|Metadata v-1')

    # ApiVersions newer than served: UNSUPPORTED_VERSION with the supported range, v0 body,
    # and the connection stays usable (the client retries with a version we speak).
    for ver, body in [(4, cstr(b'badinput') + cstr(b'1.0') + b'\x00'), (127, b'\xde\xad\xbe\xef')]:
        c = Conn()
        try:
            resp = c.request(18, ver, body, flex=True)
            err, keys = parse_api_versions_v0(resp) if resp is not None else (None, {})
            ok(err == UNSUPPORTED_VERSION, 'ApiVersions v%d: UNSUPPORTED_VERSION (%s)' % (ver, err))
            ok(keys.get(18, (None, None))[0] == 0 and (keys.get(18) or (0, 0))[1] >= 3,
               'ApiVersions v%d: the answer carries the ApiVersions range (%s)' % (ver, keys.get(18)))
            resp = c.request(18, 0, b'')
            err, keys = parse_api_versions_v0(resp) if resp is not None else (None, {})
            ok(err == NONE and 0 in keys, 'ApiVersions v%d: v0 then works on the same connection' % ver)
        except (OSError, ValueError) as e:
            ok(False, 'ApiVersions v%d: answered (%s)' % (ver, e))
        c.close()
    healthy('ApiVersions too new')


def cuts(payload, hdr_len, n=6):
    """Cut points inside a body: right after the header, then spread to one byte short."""
    body = len(payload) - hdr_len
    pts = sorted(set([hdr_len] + [hdr_len + body * i // n for i in range(1, n)] + [len(payload) - 1]))
    return [p for p in pts if hdr_len <= p < len(payload)]


def truncation_cases():
    reqs = [
        ('Produce v7', header(0, 7, 1), produce_body([(0, batch())])),
        ('Produce v9', header(0, 9, 1, flex=True), produce_body([(0, batch())], ver=9)),
        ('Fetch v4', header(1, 4, 1), fetch_v4_body(0, 0)),
        ('Fetch v11', header(1, 11, 1), fetch_v11_body(0, 0)),
        ('Metadata v1', header(3, 1, 1), karr([kstr(TOPIC), kstr(b'other')])),
        ('Metadata v9', header(3, 9, 1, flex=True), metadata_v9_body([TOPIC, b'other'])),
    ]
    for name, h, body in reqs:
        full = h + body
        for cut in cuts(full, len(h)):
            api = name.split()[0]
            expect_closed('%s cut at %d of %d bytes' % (name, cut, len(full)), frame(full[:cut]),
                          r'malformed %s request' % api)


def absurd_cases():
    big = 2**31 - 1
    expect_closed('Metadata v1 with 2^31-1 topics', frame(header(3, 1, 1) + struct.pack('>i', big) + kstr(TOPIC)),
                  r'malformed Metadata request')
    expect_closed('Metadata v9 with a 2^32-1 compact array',
                  frame(header(3, 9, 1, flex=True) + b'\xff\xff\xff\xff\x0f' + b'\x00' * 8),
                  r'malformed Metadata request')
    expect_closed('Produce with 2^31-1 topics',
                  frame(header(0, 7, 1) + kstr(None) + struct.pack('>hii', -1, 1000, big)),
                  r'malformed Produce request')
    expect_closed('Produce with 2^31-1 partitions',
                  frame(header(0, 7, 1) + kstr(None) + struct.pack('>hii', -1, 1000, 1) + kstr(TOPIC) +
                        struct.pack('>ii', big, 0)), r'malformed Produce request')
    expect_closed('Produce with records of 2^31-1 bytes',
                  frame(header(0, 7, 1) + kstr(None) + struct.pack('>hii', -1, 1000, 1) + kstr(TOPIC) +
                        struct.pack('>iii', 1, 0, big) + batch()), r'malformed Produce request')
    expect_closed('Produce with a topic name of 32767 bytes announced',
                  frame(header(0, 7, 1) + kstr(None) + struct.pack('>hiih', -1, 1000, 1, 32767) + b'bad'),
                  r'malformed Produce request')
    expect_closed('Fetch with 2^31-1 partitions',
                  frame(header(1, 4, 1) + struct.pack('>iiiibi', -1, 0, 0, 1000, 0, 1) + kstr(TOPIC) +
                        struct.pack('>i', big)), r'malformed Fetch request')
    expect_closed('ListOffsets with -5 topics', frame(header(2, 1, 1) + struct.pack('>ii', -1, -5)),
                  r'malformed ListOffsets request')


def produce_case(what, records, want, partition=0, ver=7, acks=-1):
    """A Produce carrying records to TOPIC/partition: the partition answers want, the log is
    unchanged, the broker logs the rejection, other connections work."""
    before = stored(partition)
    other = stored(1 - partition)
    mark = log_size()
    c = Conn()
    try:
        resp = c.request(0, ver, produce_body([(partition, records)], acks=acks, ver=ver),
                         flex=ver >= 9, resp_flex=ver >= 9)
        got = parse_produce(resp, ver).get((TOPIC, partition)) if resp is not None else 'no answer'
    except (OSError, ValueError) as e:
        got = 'error: %s' % e
    c.close()
    ok(got == want, '%s: partition error %s (want %s)' % (what, got, want))
    ok(stored(partition) == before and stored(1 - partition) == other,
       '%s: stored data unchanged (high watermark, contents, segment files)' % what)
    ok(log_has(mark, r'partition=%d: produce rejected' % partition), '%s: the broker logs it' % what)
    healthy(what)


def batch_cases():
    good = batch()
    # Seed both partitions so "unchanged" compares real contents.
    c = Conn()
    resp = c.request(0, 7, produce_body([(0, good), (1, batch(n=2))]))
    c.close()
    errs = parse_produce_v7(resp) if resp else {}
    ok(errs.get((TOPIC, 0)) == NONE and errs.get((TOPIC, 1)) == NONE,
       'a valid batch to each partition is accepted (%s)' % errs)

    b = bytearray(good)
    b[-1] ^= 0xFF
    produce_case('bad CRC (flipped value byte)', bytes(b), CORRUPT_MESSAGE)
    produce_case('bad CRC (wrong stored CRC)', batch(crc=12345), CORRUPT_MESSAGE)
    produce_case('magic 3', batch(magic=3), CORRUPT_MESSAGE)
    produce_case('magic -1', batch(magic=-1), CORRUPT_MESSAGE)
    produce_case('magic 1 (legacy format)', batch(magic=1), INVALID_RECORD)
    produce_case('magic 0 (legacy format)', batch(magic=0), INVALID_RECORD)
    produce_case('batch length past the bytes sent', batch(length=len(good) - 12 + 40), INVALID_RECORD)
    produce_case('batch length 2^31-1', batch(length=2**31 - 1), INVALID_RECORD)
    produce_case('batch length below the minimum (13)', batch(length=13), CORRUPT_MESSAGE)
    produce_case('batch length 20, batch cut to it', batch(length=20)[:32], CORRUPT_MESSAGE)
    produce_case('batch length negative', batch(length=-7), CORRUPT_MESSAGE)
    produce_case('batch cut in the middle', good[:len(good) // 2], INVALID_RECORD)
    produce_case('records of 5 bytes', good[:5], INVALID_RECORD)
    produce_case('empty records', b'', INVALID_RECORD)
    produce_case('record count above the records present', batch(n=3, count=5, last_offset_delta=4,
                 payload=b''.join(record(i, b'k', b'v') for i in range(3))), INVALID_RECORD)
    produce_case('record count below the records present', batch(n=3, count=2, last_offset_delta=1,
                 payload=b''.join(record(i, b'k', b'v') for i in range(3))), INVALID_RECORD)
    produce_case('record count vs last offset delta', batch(n=3, last_offset_delta=5), INVALID_RECORD)
    produce_case('record count 0', batch(n=0, count=0, last_offset_delta=-1), INVALID_RECORD)
    produce_case('record length lying inside the batch', batch(payload=varint(200) + b'\x00' * 10, n=1),
                 INVALID_RECORD)
    produce_case('base offset 5', batch(base_offset=5), INVALID_RECORD)
    produce_case('control batch from a client', batch(attrs=0x20), INVALID_RECORD)
    produce_case('gzip codec over garbage', batch(attrs=1, payload=b'\x1f\x8b not gzip at all', n=1),
                 CORRUPT_MESSAGE)
    produce_case('codec 6', batch(attrs=6), CORRUPT_MESSAGE)
    produce_case('zstd on Produce v3', batch(attrs=4, payload=b'garbage', n=1), UNSUPPORTED_COMPRESSION_TYPE,
                 ver=3)
    produce_case('batch of %d bytes > message.max.bytes' % (MAX_MESSAGE + 20000),
                 batch(n=1, value=b'x' * (MAX_MESSAGE + 20000)), MESSAGE_TOO_LARGE)
    produce_case('bad CRC on flexible Produce v9', batch(crc=1), CORRUPT_MESSAGE, ver=9)

    # Per partition: a bad batch for partition 0 next to a good one for partition 1.
    before0, before1 = stored(0), stored(1)
    c = Conn()
    resp = c.request(0, 7, produce_body([(0, batch(crc=7)), (1, batch(n=4))]))
    c.close()
    errs = parse_produce_v7(resp) if resp else {}
    ok(errs.get((TOPIC, 0)) == CORRUPT_MESSAGE and errs.get((TOPIC, 1)) == NONE,
       'bad batch next to a good one: only the bad partition fails (%s)' % errs)
    ok(stored(0) == before0, 'bad batch next to a good one: the bad partition is unchanged')
    ok(stored(1)[1] == before1[1] + 4, 'bad batch next to a good one: the good one is appended')

    # Other partition-level answers.
    c = Conn()
    resp = c.request(0, 7, produce_body([(0, batch())], acks=5))
    errs = parse_produce_v7(resp) if resp else {}
    ok(errs.get((TOPIC, 0)) == INVALID_REQUIRED_ACKS, 'acks=5: INVALID_REQUIRED_ACKS (%s)' % errs)
    resp = c.request(0, 7, produce_body([(7, batch())]))
    errs = parse_produce_v7(resp) if resp else {}
    ok(errs.get((TOPIC, 7)) == UNKNOWN_TOPIC_OR_PARTITION, 'partition 7: UNKNOWN_TOPIC_OR_PARTITION (%s)' % errs)
    resp = c.request(0, 7, produce_body([(0, batch())], topic=b'no-such-topic'))
    errs = parse_produce_v7(resp) if resp else {}
    ok(errs.get((b'no-such-topic', 0)) == UNKNOWN_TOPIC_OR_PARTITION, 'unknown topic: UNKNOWN_TOPIC_OR_PARTITION')
    c.close()

    # acks=0: no answer, so an error closes the connection (Kafka does so, the producer then
    # refreshes its metadata); a good acks=0 produce leaves it open.
    before = stored(0)
    mark = log_size()
    c = Conn()
    c.send(frame(header(0, 7, 1) + produce_body([(0, batch(crc=9))], acks=0)))
    ok(c.closed_by_peer(), 'acks=0 with a bad batch: connection closed')
    c.close()
    ok(log_has(mark, r'acks=0'), 'acks=0 with a bad batch: the broker logs it')
    ok(stored(0) == before, 'acks=0 with a bad batch: stored data unchanged')
    c = Conn()
    c.send(frame(header(0, 7, 1) + produce_body([(0, batch())], acks=0)))
    ok(not c.closed_by_peer(wait_s=1, expect_open=True), 'acks=0 with a good batch: connection stays open, no answer')
    c.close()
    healthy('acks=0')


def absurd_value_cases():
    """Decodable requests with absurd values: an error answer, nothing allocated for them."""
    big = 2**31 - 1

    def create_topics(name, parts, rf):
        c = Conn()
        body = c.request(19, 4, karr([kstr(name) + struct.pack('>ih', parts, rf) + karr([]) + karr([])]) +
                         struct.pack('>ib', 10000, 0))
        c.close()
        r = R(body)
        r.i32()
        r.i32()
        r.str()
        return r.i16()
    for parts, rf, want in [(big, 1, 37), (-5, 1, 37), (1, 1000, 38)]:
        mark = log_size()
        err = create_topics(b'absurd', parts, rf)
        ok(err == want, 'CreateTopics with %d partitions, replication %d: error %s (want %d)' % (parts, rf, err, want))
        ok(log_has(mark, r"create topic 'absurd' refused"), 'CreateTopics %d/%d: the broker logs it' % (parts, rf))
    c = Conn()
    body = c.request(3, 4, metadata_v4_body([b'absurd'], auto_create=False))
    c.close()
    ok(body is not None and b'absurd' in body and R(body[body.index(b'absurd') - 4:]).i16() != NONE,
       'no topic was created by the refused CreateTopics')
    c = Conn()
    body = c.request(37, 1, karr([kstr(TOPIC) + struct.pack('>ii', big, -1)]) + struct.pack('>ib', 10000, 0))
    c.close()
    r = R(body)
    r.i32()
    r.i32()
    r.str()
    err = r.i16()
    ok(err == 37, 'CreatePartitions to 2^31-1: INVALID_PARTITIONS (%s)' % err)
    c = Conn()
    body = c.request(1, 4, struct.pack('>iiiib', -1, -5, -5, -5, 0) + karr(
        [kstr(TOPIC) + karr([struct.pack('>iqi', 0, -2**63, -1), struct.pack('>iqi', -1, 0, big)])]))
    c.close()
    f = parse_fetch_v4(body) if body is not None else {}
    ok(f.get(0, (None,))[0] == 1 and f.get(-1, (None,))[0] == UNKNOWN_TOPIC_OR_PARTITION,
       'Fetch at offset -2^63 / partition -1 with negative sizes: OFFSET_OUT_OF_RANGE / UNKNOWN_TOPIC_OR_PARTITION (%s)'
       % {k: v[0] for k, v in f.items()})
    healthy('absurd values in decodable requests')


def long_poll_case():
    # A long poll that can never be satisfied, then the client goes away: the broker must not
    # care (the request is parked until its timeout or new data).
    hw = stored(0)[1]
    c = Conn()
    c.send(frame(header(1, 4, 1) + fetch_v4_body(0, hw, max_wait=2**31 - 1, min_bytes=2**31 - 1)))
    time.sleep(0.3)
    c.close()
    healthy('fetch long poll abandoned by its client')


def main():
    global bystander
    # The topic (auto-created with 2 partitions).
    c = Conn()
    c.request(3, 4, metadata_v4_body([TOPIC]))
    c.close()
    time.sleep(0.2)
    bystander = Conn()
    framing_cases()
    api_cases()
    truncation_cases()
    absurd_cases()
    batch_cases()
    absurd_value_cases()
    long_poll_case()
    bystander.close()


if __name__ == '__main__':
    tapkit.run(main, 'badinput.py ran to the end')
