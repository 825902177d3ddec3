#!/usr/bin/python3
# t/tier_bench.py -- tiered storage benchmark (not a test; prints figures, asserts nothing):
# upload throughput (a backlog draining to the file:// bucket), replay throughput of the same
# bytes hot (local log) and cold (bucket through the read cache, empty then warm), and the
# latency of a cold first fetch after a restart. Fetches are raw Fetch v4 requests of 4 MiB
# (no record parsing in Python) so the broker, not the client, is measured.
# Usage: tier_bench.py [--mb 256] [--stratad build/stratad] [--dir /tmp] [--chunk-bytes N]
import argparse, glob, os, shutil, socket, struct, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument('--mb', type=int, default=256)
ap.add_argument('--stratad', default=os.path.join(os.path.dirname(__file__), '..', 'build-tier', 'stratad'))
ap.add_argument('--dir', default=tempfile.gettempdir())
ap.add_argument('--chunk-bytes', type=int, default=4 << 20)
ap.add_argument('--segment-bytes', type=int, default=16 << 20)
ap.add_argument('--keep', action='store_true')
a = ap.parse_args()

D = tempfile.mkdtemp(prefix='strata-tier-bench.', dir=a.dir)
FAULT = os.path.join(D, 'bucket-down')
TOPIC = 'bench'
s = socket.socket()
s.bind(('127.0.0.1', 0))
PORT = s.getsockname()[1]
s.close()
BS = '127.0.0.1:%d' % PORT
proc = None


def start():
    global proc
    log = open(os.path.join(D, 'stratad.log'), 'a')
    proc = subprocess.Popen([a.stratad, '--set', 'listeners=PLAINTEXT://' + BS, '--set',
                             'log.dirs=' + os.path.join(D, 'log'), '--set', 'log.retention.check.interval.ms=500',
                             '--set', 'strata.tier.chunk.bytes=%d' % a.chunk_bytes, '--set',
                             'strata.tier.test.fault.file=' + FAULT, '--set',
                             'strata.tier.retry.backoff.max.ms=200'], stdout=log, stderr=log)
    for _ in range(300):
        try:
            socket.create_connection(('127.0.0.1', PORT), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit('stratad did not start')


def stop():
    proc.terminate()
    proc.wait(60)


def kstr(x):
    b = x.encode()
    return struct.pack('>h', len(b)) + b


class Conn:
    def __init__(self):
        self.s = socket.create_connection(('127.0.0.1', PORT))
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)

    def recv(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.s.recv_into(view[got:], n - got)
            if not k:
                raise EOFError
            got += k
        return buf

    def fetch(self, offset, max_wait_ms=500, max_bytes=4 << 20):
        """Returns (error, records bytes length, next offset after the last whole batch)."""
        body = struct.pack('>iiiib', -1, max_wait_ms, 1, max_bytes, 0) + struct.pack('>i', 1) + kstr(TOPIC)
        body += struct.pack('>i', 1) + struct.pack('>iqi', 0, offset, max_bytes)
        req = struct.pack('>hhi', 1, 4, 1) + kstr('bench') + body
        self.s.sendall(struct.pack('>i', len(req)) + req)
        size = struct.unpack('>i', self.recv(4))[0]
        r = self.recv(size)
        pos = 12
        tl = struct.unpack_from('>h', r, pos)[0]
        pos += 2 + tl + 4
        part, err, hw, lso = struct.unpack_from('>ihqq', r, pos)
        pos += 22
        na = struct.unpack_from('>i', r, pos)[0]
        pos += 4 + max(na, 0) * 16
        rl = struct.unpack_from('>i', r, pos)[0]
        pos += 4
        nxt, q, end = offset, pos, pos + max(rl, 0)
        while q + 61 <= end:  # walk batch headers only
            base, blen = struct.unpack_from('>qi', r, q)
            if q + 12 + blen > end:
                break
            nxt = base + struct.unpack_from('>i', r, q + 23)[0] + 1
            q += 12 + blen
        return err, rl, nxt


def replay(upto):
    c = Conn()
    off, nbytes, t0 = 0, 0, time.time()
    while off < upto:
        err, n, nxt = c.fetch(off)
        if err:
            sys.exit('fetch error %d at %d' % (err, off))
        nbytes += max(n, 0)
        off = nxt
    return nbytes, time.time() - t0


def local_bases():
    return sorted(int(os.path.basename(p)[:20]) for p in glob.glob(os.path.join(D, 'log', TOPIC + '-0', '*.log')))


def manifest_end():
    m = glob.glob(os.path.join(D, 'bucket', '*', TOPIC, '0_*', 'manifest'))
    end = -1
    if m:
        for line in open(m[0]):
            if line.startswith('seg '):
                end = max(end, int(dict(kv.split('=', 1) for kv in line.split()[1:])['last']) + 1)
    return end


try:
    open(FAULT, 'w').close()
    start()
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic, ConfigResource
    adm = AdminClient({'bootstrap.servers': BS})
    adm.create_topics([NewTopic(TOPIC, 1, 1, config={'segment.bytes': str(a.segment_bytes)})])[TOPIC].result(30)
    p = Producer({'bootstrap.servers': BS, 'linger.ms': 20, 'batch.size': 1 << 20, 'acks': 1,
                  'queue.buffering.max.kbytes': 1 << 20})
    val = os.urandom(1024)
    n = a.mb * 1024
    t0 = time.time()
    for i in range(n):
        while True:
            try:
                p.produce(TOPIC, value=val, partition=0)
                break
            except BufferError:
                p.poll(0.01)
    p.flush(120)
    end = n
    print('produced %d MiB (%d records of 1 KiB) in %.1f s' % (a.mb, n, time.time() - t0))
    closed = local_bases()[-1]

    def median(runs):
        return sorted(runs, key=lambda x: x[0] / x[1])[len(runs) // 2]
    hot = [replay(closed) for _ in range(5)]
    hb, ht = median(hot)
    hot_mbs = hb / ht / 1e6
    print('hot replay (local log, page cache), median of 5: %.0f MB/s (%d bytes in %.2f s; runs %s)'
          % (hot_mbs, hb, ht, ', '.join('%.0f' % (b / t / 1e6) for b, t in hot)))

    t0 = time.time()
    os.unlink(FAULT)
    while manifest_end() < closed and time.time() - t0 < 600:
        time.sleep(0.05)
    up_t = time.time() - t0
    up_bytes = sum(os.path.getsize(f) for f in glob.glob(os.path.join(D, 'bucket', '*', TOPIC, '0_*', '*.log')))
    print('upload: %d bytes (%d segments) in %.2f s = %.0f MB/s (backlog drain, 2 upload threads, one '
          'partition: one segment at a time)' % (up_bytes, len(local_bases()) - 1, up_t, up_bytes / up_t / 1e6))

    r = ConfigResource('topic', TOPIC, set_config={'segment.bytes': str(a.segment_bytes), 'local.retention.bytes': '1'})
    adm.alter_configs([r])[r].result(30)
    t0 = time.time()
    while len(local_bases()) > 1 and time.time() - t0 < 120:
        time.sleep(0.1)
    cold_upto = local_bases()[0]
    stop()
    start()  # empty read cache
    c = Conn()
    t0 = time.time()
    err, nbytes, nxt = c.fetch(0, max_wait_ms=10000, max_bytes=1 << 20)
    first_ms = (time.time() - t0) * 1000
    mid = cold_upto // 2
    t0 = time.time()
    err2, nbytes2, _ = c.fetch(mid, max_wait_ms=10000, max_bytes=1 << 20)
    mid_ms = (time.time() - t0) * 1000
    print('cold first fetch after restart (manifest read, index + first chunk downloaded): %.1f ms '
          '(%d bytes, error %d); another segment: %.1f ms' % (first_ms, nbytes, err, mid_ms, ))
    stop()
    start()
    perf = None
    if os.environ.get('TIER_BENCH_PERF'):
        perf = subprocess.Popen(['perf', 'record', '-g', '-o', os.environ['TIER_BENCH_PERF'], '-p',
                                 str(proc.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
    cold = []
    for run in range(5):
        if run:
            stop()
            start()  # empty cache again
        cold.append(replay(cold_upto))
    if perf:
        perf.send_signal(2)
        perf.wait()
    cb, ct = median(cold)
    cold_mbs = cb / ct / 1e6
    wb, wt = median([replay(cold_upto) for _ in range(5)])
    warm_mbs = wb / wt / 1e6
    print('cold replay (bucket, empty cache), median of 5: %.0f MB/s (%d bytes in %.2f s; runs %s) = %.0f%% of hot'
          % (cold_mbs, cb, ct, ', '.join('%.0f' % (b / t / 1e6) for b, t in cold), 100 * cold_mbs / hot_mbs))
    print('cold replay (warm cache), median of 5: %.0f MB/s = %.0f%% of hot' % (warm_mbs, 100 * warm_mbs / hot_mbs))
    stop()
finally:
    if proc and proc.poll() is None:
        proc.kill()
    if not a.keep:
        shutil.rmtree(D, ignore_errors=True)
