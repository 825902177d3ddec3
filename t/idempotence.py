#!/usr/bin/python3
# t/idempotence.py -- the idempotent producer against a real stratad, driven by t/idempotence.sh.
# Prints TAP lines without a plan. Modes:
#
#   cut BROKER_PORT PROXY_PORT
#       A TCP proxy on PROXY_PORT (the broker advertises it) forwards to the broker and, for the
#       first produce requests, lets the broker answer but closes both sides instead of relaying
#       the answer: the client retries batches the broker has already written. Control run
#       without idempotence (must show duplicates: the faults are real), then librdkafka with
#       enable.idempotence=true: every record exactly once.
#   crash BROKER_PORT PROXY_PORT BROKER_PID MARKER
#       The same, but after the first lost answer the broker is SIGKILLed; MARKER is created so
#       the shell restarts it (same port, same log.dirs). The client's retries reach the
#       restarted broker, which rebuilt the producer state from the log: exactly once.
#   raw BROKER_PORT PROXY_PORT STATE STEP
#       Produce v9 spoken directly, a hand-built idempotent batch (CRC-32C here) sent twice: the
#       second answer carries the first's offset and the log holds it once. STEP 1 writes, the
#       shell restarts the broker (SIGKILL, then clean) between steps 2 and 3, which retry.
import json, os, random, select, signal, socket, struct, sys, threading, time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from tapkit import crc32c, ok, uvarint, varint
import tapkit


# ---- proxy -------------------------------------------------------------------------------------

def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def recv_frame(s):
    hdr = recv_exact(s, 4)
    if hdr is None:
        return None
    (size,) = struct.unpack('>i', hdr)
    body = recv_exact(s, size)
    if body is None:
        return None
    return hdr + body


class Proxy:
    """Relays Kafka frames. The first `drops` Produce requests are forwarded, the broker's
    answer is read (so the append is done and durable) and then both connections are closed
    without relaying it. on_drop runs after each such loss."""

    def __init__(self, listen_port, broker_port, drops=0, on_drop=None):
        self.broker_port = broker_port
        self.skip = 0          # produce requests relayed normally before the drops start
        self.drops_left = drops
        self.dropped = 0
        self.produce_seen = 0
        self.on_drop = on_drop
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(('127.0.0.1', listen_port))
        self.ls.listen(64)
        self.stopping = False
        self.conns = []
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def stop(self):
        self.stopping = True
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            for s in self.conns:
                try:
                    s.close()
                except OSError:
                    pass

    def accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            b = socket.create_connection(('127.0.0.1', self.broker_port), timeout=5)
            b.settimeout(None)
        except OSError:
            c.close()  # broker down (restarting): the client reconnects later
            return
        with self.lock:
            self.conns += [c, b]
        doomed = set()   # correlation ids whose answers are to be lost
        state = {'closed': False}

        def close_both():
            if not state['closed']:
                state['closed'] = True
                for s in (c, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()

        def c2b():
            while True:
                try:
                    f = recv_frame(c)
                except OSError:
                    f = None
                if f is None:
                    break
                api_key, _ver, corr = struct.unpack('>hhi', f[4:12])
                if api_key == 0:
                    with self.lock:
                        self.produce_seen += 1
                        if self.skip > 0:
                            self.skip -= 1
                        elif self.drops_left > 0:
                            self.drops_left -= 1
                            doomed.add(corr)
                try:
                    b.sendall(f)
                except OSError:
                    break
            close_both()

        def b2c():
            while True:
                try:
                    f = recv_frame(b)
                except OSError:
                    f = None
                if f is None:
                    break
                (corr,) = struct.unpack('>i', f[4:8])
                if corr in doomed:
                    with self.lock:
                        self.dropped += 1
                    close_both()
                    if self.on_drop:
                        self.on_drop()
                    return
                try:
                    c.sendall(f)
                except OSError:
                    break
            close_both()

        threading.Thread(target=c2b, daemon=True).start()
        b2c()


# ---- librdkafka clients ------------------------------------------------------------------------

def create_topic(bs, topic, partitions):
    a = AdminClient({'bootstrap.servers': bs})
    fs = a.create_topics([NewTopic(topic, partitions, 1)], request_timeout=20)
    for _, f in fs.items():
        f.result(30)


def produce_all(bs, topic, n, idempotent, partitions, timeout_s=120):
    conf = {'bootstrap.servers': bs, 'linger.ms': 5, 'batch.num.messages': 25,
            'message.timeout.ms': timeout_s * 1000, 'request.timeout.ms': 10000,
            'retry.backoff.ms': 50, 'reconnect.backoff.ms': 50, 'reconnect.backoff.max.ms': 500,
            'socket.connection.setup.timeout.ms': 5000}
    if idempotent:
        conf['enable.idempotence'] = True
    else:
        conf.update({'enable.idempotence': False, 'acks': 'all', 'retries': 1000000,
                     'max.in.flight.requests.per.connection': 5})
    p = Producer(conf)
    errors = {}
    delivered = []

    def cb(err, m):
        if err:
            errors[err.name()] = errors.get(err.name(), 0) + 1
        else:
            delivered.append((m.partition(), m.offset()))

    for i in range(n):
        while True:
            try:
                p.produce(topic, value=b'v-%06d' % i, partition=i % partitions, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
        if i % 40 == 39:
            p.poll(0.002)  # several requests, pipelined
    left = p.flush(timeout_s + 10)
    return left, errors, delivered


def consume_all(bs, topic, partitions, timeout_s=60):
    c = Consumer({'bootstrap.servers': bs, 'group.id': 'idem-verify', 'enable.auto.commit': False})
    values = []
    for part in range(partitions):
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, part), timeout=20)
        c.assign([TopicPartition(topic, part, lo)])
        got = 0
        deadline = time.time() + timeout_s
        while got < hi - lo and time.time() < deadline:
            for m in c.consume(500, 1.0):
                if m.error():
                    continue
                values.append(m.value().decode())
                got += 1
    c.close()
    return values


def check_exactly_once(label, values, n):
    want = {'v-%06d' % i for i in range(n)}
    dups = len(values) - len(set(values))
    missing = len(want - set(values))
    ok(len(values) == n and dups == 0 and missing == 0,
       '%s: the log holds each of %d records exactly once (got %d, %d duplicates, %d missing)'
       % (label, n, len(values), dups, missing))


def mode_cut(broker_port, proxy_port):
    bs = '127.0.0.1:%d' % proxy_port
    n, parts, drops = 600, 2, 4

    # Control: the same faults without idempotence must duplicate records.
    proxy = Proxy(proxy_port, broker_port)
    create_topic(bs, 'idem-control', parts)
    create_topic(bs, 'idem-cut', parts)
    proxy.skip, proxy.drops_left = 2, drops
    left, errors, _ = produce_all(bs, 'idem-control', n, False, parts, 60)
    # Answers pipelined on a connection behind a lost one are lost with it: at least one loss.
    ok(proxy.dropped >= 1 and proxy.drops_left == 0,
       'control: the proxy lost produce answers (%d connections cut, %d produce requests)'
       % (proxy.dropped, proxy.produce_seen))
    vals = consume_all(bs, 'idem-control', parts)
    ok(left == 0 and len(vals) > n and set(vals) == {'v-%06d' % i for i in range(n)},
       'control: without idempotence the retries are written twice (%d records for %d, errors %s)'
       % (len(vals), n, errors))

    proxy.dropped = 0
    proxy.produce_seen = 0
    proxy.skip, proxy.drops_left = 2, drops
    left, errors, delivered = produce_all(bs, 'idem-cut', n, True, parts)
    ok(proxy.dropped >= 1 and proxy.drops_left == 0,
       'idempotent: the proxy lost produce answers (%d connections cut, %d produce requests)'
       % (proxy.dropped, proxy.produce_seen))
    ok(left == 0 and not errors and len(delivered) == n,
       'idempotent: every record acknowledged (%d, errors %s)' % (len(delivered), errors))
    ok(len(set(delivered)) == n, 'idempotent: acknowledged offsets are distinct')
    check_exactly_once('idempotent, lost answers', consume_all(bs, 'idem-cut', parts), n)
    proxy.stop()


def mode_crash(broker_port, proxy_port, broker_pid, marker):
    bs = '127.0.0.1:%d' % proxy_port
    n, parts = 600, 1
    killed = threading.Event()

    def kill_broker():
        if not killed.is_set():
            killed.set()
            os.kill(broker_pid, signal.SIGKILL)
            open(marker, 'w').close()

    proxy = Proxy(proxy_port, broker_port)
    create_topic(bs, 'idem-crash', parts)
    # Some records acknowledged first, so the crash falls in the middle of the producer's life.
    proxy.on_drop = kill_broker
    proxy.skip, proxy.drops_left = 3, 1
    left, errors, delivered = produce_all(bs, 'idem-crash', n, True, parts)
    ok(killed.is_set() and proxy.dropped == 1,
       'crash: an answer was lost and the broker SIGKILLed right after (%d produce requests)'
       % proxy.produce_seen)
    ok(left == 0 and not errors and len(delivered) == n,
       'crash: every record acknowledged after the restart (%d, errors %s)' % (len(delivered), errors))
    check_exactly_once('crash and restart', consume_all(bs, 'idem-crash', parts), n)
    proxy.stop()


# ---- raw protocol ------------------------------------------------------------------------------

def build_batch(pid, epoch, seq, values, ts):
    recs = b''
    for i, v in enumerate(values):
        body = b'\x00' + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    after_crc = struct.pack('>hiqqqhii', 0, len(values) - 1, ts, ts, pid, epoch, seq, len(values)) + recs
    crc = crc32c(after_crc)
    rest = struct.pack('>ibI', -1, 2, crc) + after_crc
    return struct.pack('>qi', 0, len(rest)) + rest


def compact_str(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


class Raw:
    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=30)
        self.corr = 0

    def produce(self, topic, partition, records):
        self.corr += 1
        hdr = struct.pack('>hhi', 0, 9, self.corr) + struct.pack('>h', 4) + b'idem' + b'\x00'
        body = (b'\x00' + struct.pack('>hi', -1, 30000) + uvarint(2) + compact_str(topic) +
                uvarint(2) + struct.pack('>i', partition) + uvarint(len(records) + 1) + records +
                b'\x00' + b'\x00' + b'\x00')
        req = hdr + body
        self.s.sendall(struct.pack('>i', len(req)) + req)
        f = recv_frame(self.s)
        if f is None:
            raise IOError('connection closed')
        p = 4
        (corr,) = struct.unpack_from('>i', f, p)
        assert corr == self.corr, 'correlation id'
        p += 4 + 1                       # tags
        p += 1                           # responses: one
        n = f[p] - 1
        p += 1 + n                       # topic name
        p += 1                           # partitions: one
        idx, err, base, lat, lso = struct.unpack_from('>ihqqq', f, p)
        return err, base


def mode_raw(port, proxy_port, state_file, step):
    topic = 'idem-raw'
    ts = int(time.time() * 1000)
    proxy = Proxy(proxy_port, port)  # passthrough: the broker advertises the proxy's port
    bs = '127.0.0.1:%d' % proxy_port
    if step == 1:
        st = {'pid': 424242 + random.randrange(1000), 'ts': ts}
        r = Raw(port)
        create_topic(bs, topic, 1)
        a = build_batch(st['pid'], 0, 0, [b'raw-0', b'raw-1', b'raw-2'], ts)
        b = build_batch(st['pid'], 0, 3, [b'raw-3', b'raw-4'], ts)
        e1, o1 = r.produce(topic, 0, a)
        e2, o2 = r.produce(topic, 0, a)
        ok(e1 == 0 and e2 == 0 and o2 == o1, 'raw: the same idempotent batch twice -> the second '
           'answered with the first offset (%d/%d, errors %d/%d)' % (o1, o2, e1, e2))
        e3, o3 = r.produce(topic, 0, b)
        ok(e3 == 0 and o3 == o1 + 3, 'raw: the next batch in sequence is written at %d' % o3)
        e4, _ = r.produce(topic, 0, build_batch(st['pid'], 0, 9, [b'gap'], ts))
        ok(e4 == 45, 'raw: a sequence gap -> OUT_OF_ORDER_SEQUENCE_NUMBER (%d)' % e4)
        bad = bytearray(build_batch(st['pid'], 0, 3, [b'raw-3', b'raw-4'], ts))
        bad[-1] ^= 1
        e5, _ = r.produce(topic, 0, bytes(bad))
        ok(e5 == 2, 'raw: a retry with a bad CRC -> CORRUPT_MESSAGE (%d)' % e5)
        st.update({'a': a.hex(), 'b': b.hex(), 'oa': o1, 'ob': o3})
        json.dump(st, open(state_file, 'w'))
        return
    st = json.load(open(state_file))
    r = Raw(port)
    if step == 2:
        label = 'after SIGKILL (rebuilt from the log)'
        e1, o1 = r.produce(topic, 0, bytes.fromhex(st['b']))
        ok(e1 == 0 and o1 == st['ob'], 'raw %s: retry of the last batch -> its original offset %d '
           '(%d, error %d)' % (label, st['ob'], o1, e1))
        e2, o2 = r.produce(topic, 0, bytes.fromhex(st['a']))
        ok(e2 == 0 and o2 == st['oa'], 'raw %s: retry of the first batch -> %d (%d, error %d)'
           % (label, st['oa'], o2, e2))
        e3, _ = r.produce(topic, 0, build_batch(st['pid'], 0, 6, [b'gap'], st['ts']))
        ok(e3 == 45, 'raw %s: a gap is still refused (%d)' % (label, e3))
        # epoch bump: the new epoch starts at 0, then the old epoch is fenced
        c = build_batch(st['pid'], 1, 0, [b'raw-5'], st['ts'])
        d = build_batch(st['pid'], 1, 1, [b'raw-6', b'raw-7'], st['ts'])
        e4, o4 = r.produce(topic, 0, c)
        e5, o5 = r.produce(topic, 0, d)
        e6, _ = r.produce(topic, 0, build_batch(st['pid'], 0, 5, [b'old'], st['ts']))
        ok(e4 == 0 and e5 == 0 and o5 == o4 + 1 and e6 == 47,
           'raw: epoch bump accepted from sequence 0 (%d, %d), the older epoch fenced: '
           'INVALID_PRODUCER_EPOCH (%d)' % (e4, e5, e6))
        st.update({'c': c.hex(), 'd': d.hex(), 'oc': o4, 'od': o5})
        json.dump(st, open(state_file, 'w'))
    else:
        label = 'after a clean restart (snapshot)'
        e1, o1 = r.produce(topic, 0, bytes.fromhex(st['d']))
        ok(e1 == 0 and o1 == st['od'], 'raw %s: retry of the last batch -> its original offset %d '
           '(%d, error %d)' % (label, st['od'], o1, e1))
        e2, o2 = r.produce(topic, 0, bytes.fromhex(st['c']))
        ok(e2 == 0 and o2 == st['oc'], 'raw %s: retry of the one before -> %d (%d, error %d)'
           % (label, st['oc'], o2, e2))
        e3, _ = r.produce(topic, 0, bytes.fromhex(st['b']))
        ok(e3 == 47, 'raw %s: a retry from the fenced epoch -> INVALID_PRODUCER_EPOCH (%d)' % (label, e3))
        vals = consume_all(bs, topic, 1)
        ok(vals == ['raw-%d' % i for i in range(8)], 'raw: the log holds raw-0..raw-7 once each, in '
           'order (%s)' % vals)


def main():
    mode = sys.argv[1]
    if mode == 'cut':
        mode_cut(int(sys.argv[2]), int(sys.argv[3]))
    elif mode == 'crash':
        mode_crash(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif mode == 'raw':
        mode_raw(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit('unknown mode ' + mode)


if __name__ == '__main__':
    tapkit.run(main, 'helper raised')
