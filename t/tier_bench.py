#!/usr/bin/python3
# t/tier_bench.py -- tiered storage benchmark (not a test: prints figures, asserts nothing).
#
# Two topics get the same records: "hot" (remote.storage.enable=false: always read from the
# local log) and "cold" (uploaded to the bucket, then local.retention.bytes=1 removes its local
# segments). Figures:
#   - upload: the cold topic's backlog (held back with strata.tier.test.fault.file while it is
#     produced) draining to the bucket;
#   - cold first fetch: after a restart (empty read cache), the latency of a fetch at offset 0
#     and then of one in another segment; with the bucket's files in the page cache and (file://)
#     dropped from it (POSIX_FADV_DONTNEED: the chunk comes from the disk);
#   - replay rounds, each after a restart (so an empty read cache): one pass over the offsets,
#     in blocks of --block-mb alternating hot and cold (hot block 0, cold block 0, cold block 1,
#     hot block 1, ...: the same records, the same client, the same moment), then a second such
#     pass (the cold blocks now from a warm cache). Per pass and kind: bytes / summed time of
#     its blocks. On a shared machine the load drifts within seconds; blocks of a few hundred
#     milliseconds see the same load, so the per-round ratio is stable where whole-run medians
#     are not. After each block the script pauses --pause-ms so that chunks the cold reader
#     had prefetched are verified in the pause rather than during the next hot block; the
#     cold blocks thus get up to strata.tier.prefetch.chunks chunks per block verified
#     outside their time (4 x 4 MiB of 128 MiB: ~12% of their verification work);
#   - CPU: the broker's (every thread) and the client's CPU seconds per GB, per kind: the cost
#     that sets the throughput once the machine is busy;
#   - the same upload, first fetch and replay rounds on s3rver on loopback (--s3-mb 0 skips
#     it; t/node_modules/s3rver started as t/s3lib.sh does, but without its signature-checking
#     proxy, which is Python and would be what is measured).
# The client (--client): "raw" (default) is a Python loop of Fetch v4 requests over one socket
# per topic that receives each response into one reused buffer and walks only the batch
# headers: the least any consumer does (receive every byte), no record parsing; the printed
# CPU use shows it is not the bottleneck. "confluent" uses confluent-kafka's Consumer
# (librdkafka; every record becomes a Python object): client-bound, both kinds alike.
# Usage: tier_bench.py [--mb 1024] [--rounds 5] [--stratad build/stratad] [--s3-mb 256]
#                      [--set key=value]... [--json out.json] [--perf prefix]   (see --help)
import argparse, glob, json, os, shutil, socket, statistics, struct, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser(description='tiered storage benchmark (figures only)')
ap.add_argument('--mb', type=int, default=1024, help='MiB of records per topic (1 KiB records)')
ap.add_argument('--rounds', type=int, default=5, help='replay rounds (each after a restart)')
ap.add_argument('--block-mb', type=int, default=128, help='hot and cold alternate every this many MiB')
ap.add_argument('--pause-ms', type=int, default=50, help='pause after each block (file://)')
ap.add_argument('--stratad', default=os.path.join(HERE, '..', 'build', 'stratad'))
ap.add_argument('--dir', default=tempfile.gettempdir())
ap.add_argument('--segment-bytes', type=int, default=16 << 20)
ap.add_argument('--fetch-bytes', type=int, default=4 << 20,
                help='max bytes of each fetch (request and partition limit)')
ap.add_argument('--client', choices=('raw', 'confluent'), default='raw')
ap.add_argument('--cache-bytes', type=int, default=0,
                help='strata.tier.cache.size.bytes (default: twice the data, so "warm" is warm)')
ap.add_argument('--s3-mb', type=int, default=256, help='MiB for the s3rver part (0: skip it)')
ap.add_argument('--s3-rounds', type=int, default=3)
ap.add_argument('--s3-pause-ms', type=int, default=500)
ap.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                help='extra broker setting (repeatable), e.g. strata.tier.chunk.bytes=8388608')
ap.add_argument('--json', help='write every measurement to this file')
ap.add_argument('--perf', metavar='PREFIX', help='perf record -g the broker during the first pass of '
                'the last round into PREFIX.data and PREFIX.s3.data (perf report --sort pid tells '
                'threads apart)')
ap.add_argument('--keep', action='store_true', help='keep the data directories')
a = ap.parse_args()

ROOT = tempfile.mkdtemp(prefix='strata-tier-bench.', dir=a.dir)
RESULTS = {'args': vars(a), 'load_start': os.getloadavg()}
CLK = os.sysconf('SC_CLK_TCK')


def known_setting(kv):
    """True when this stratad accepts the setting (older builds lack some)."""
    return subprocess.run([a.stratad, '--set', kv, '--check'], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


# Several brokers run one after another and other tests may run meanwhile: no fixed ports.
NO_METRICS = ['metrics.listener=none'] if known_setting('metrics.listener=none') else []


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    def __init__(self, name, settings, env=None):
        self.dir = os.path.join(ROOT, name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.bs = '127.0.0.1:%d' % self.port
        self.fault = os.path.join(self.dir, 'bucket-down')
        self.own = settings
        self.settings = ['listeners=PLAINTEXT://' + self.bs, 'log.dirs=' + os.path.join(self.dir, 'log'),
                         'log.retention.check.interval.ms=500', 'strata.tier.test.fault.file=' + self.fault,
                         'strata.tier.retry.backoff.max.ms=200'] + NO_METRICS + settings
        self.env = env
        self.proc = None

    def start(self):
        log = open(os.path.join(self.dir, 'stratad.log'), 'a')
        cmd = [a.stratad]
        for kv in self.settings:
            cmd += ['--set', kv]
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=self.env)
        log.close()
        for _ in range(600):
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        sys.exit('stratad did not start (see %s/stratad.log)' % self.dir)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)

    def restart(self):
        self.stop()
        self.start()

    def cpu_s(self):
        """CPU seconds of the whole process (every thread, io_uring workers included)."""
        with open('/proc/%d/stat' % self.proc.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK

    def local_bases(self, topic):
        return sorted(int(os.path.basename(p)[:20])
                      for p in glob.glob(os.path.join(self.dir, 'log', topic + '-0', '*.log')))

    def cache_stats(self):
        """The read cache's counters of the last run (logged at shutdown)."""
        lines = [ln for ln in open(os.path.join(self.dir, 'stratad.log')) if 'read cache: ' in ln]
        return lines[-1].split('read cache: ', 1)[1].strip() if lines else None


def kstr(x):
    b = x.encode()
    return struct.pack('>h', len(b)) + b


class RawReader:
    """Fetch v4 over one socket from offset 0 on; each response lands in one reused buffer."""

    def __init__(self, broker, topic):
        self.topic = topic
        self.off = 0
        self.s = socket.create_connection(('127.0.0.1', broker.port))
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.buf = bytearray(a.fetch_bytes + (1 << 20))
        self.view = memoryview(self.buf)

    def close(self):
        self.view.release()
        self.s.close()

    def recv(self, n):
        if n > len(self.buf):
            self.view.release()
            self.buf = bytearray(n)
            self.view = memoryview(self.buf)
        got = 0
        while got < n:
            k = self.s.recv_into(self.view[got:n], n - got)
            if not k:
                raise EOFError('broker closed the connection')
            got += k
        return self.buf

    def fetch(self, offset, max_wait_ms=500, max_bytes=None):
        """Returns (error, records bytes, next offset after the last whole batch)."""
        max_bytes = max_bytes or a.fetch_bytes
        body = struct.pack('>iiiib', -1, max_wait_ms, 1, max_bytes, 0) + struct.pack('>i', 1) + kstr(self.topic)
        body += struct.pack('>i', 1) + struct.pack('>iqi', 0, offset, max_bytes)
        req = struct.pack('>hhi', 1, 4, 1) + kstr('bench') + body
        self.s.sendall(struct.pack('>i', len(req)) + req)
        size = struct.unpack('>i', self.recv(4)[:4])[0]
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
        while q + 61 <= end:  # batch headers only
            base, blen = struct.unpack_from('>qi', r, q)
            if q + 12 + blen > end:
                break
            nxt = base + struct.unpack_from('>i', r, q + 23)[0] + 1
            q += 12 + blen
        return err, max(rl, 0), nxt

    def read_to(self, upto):
        """Fetches from where it is until offset upto; returns (bytes, requests)."""
        nbytes = n = 0
        while self.off < upto:
            err, got, nxt = self.fetch(self.off)
            if err:
                sys.exit('%s: fetch error %d at offset %d' % (self.topic, err, self.off))
            nbytes += got
            n += 1
            self.off = nxt
        return nbytes, n


class ConfluentReader:
    def __init__(self, broker, topic):
        from confluent_kafka import Consumer, TopicPartition
        self.topic = topic
        self.last = -1
        self.c = Consumer({'bootstrap.servers': broker.bs, 'group.id': 'bench-' + topic,
                           'enable.auto.commit': False, 'fetch.max.bytes': a.fetch_bytes,
                           'max.partition.fetch.bytes': a.fetch_bytes})
        self.c.assign([TopicPartition(topic, 0, 0)])

    def close(self):
        self.c.close()

    def read_to(self, upto):
        nbytes = n = 0
        while self.last < upto - 1:
            for m in self.c.consume(num_messages=10000, timeout=1.0):
                if m.error():
                    sys.exit('%s: consume error %s' % (self.topic, m.error()))
                self.last = m.offset()
                nbytes += len(m.value() or b'') + len(m.key() or b'') + 70  # ~ framing per record
                n += 1
        return nbytes, n


def measured(broker, reader, upto):
    b0, c0, t0 = broker.cpu_s(), time.process_time(), time.perf_counter()
    nbytes, requests = reader.read_to(upto)
    return {'bytes': nbytes, 's': time.perf_counter() - t0, 'requests': requests,
            'client_s': time.process_time() - c0, 'broker_s': broker.cpu_s() - b0}


def paired_pass(broker, bounds, pause_s):
    """One pass over the offsets: blocks alternating hot and cold (order flipped every block)."""
    Reader = RawReader if a.client == 'raw' else ConfluentReader
    rd = {'hot': Reader(broker, 'hot'), 'cold': Reader(broker, 'cold')}
    tot = {k: {'bytes': 0, 's': 0.0, 'requests': 0, 'client_s': 0.0, 'broker_s': 0.0, 'blocks': []} for k in rd}
    for i, upto in enumerate(bounds):
        for kind in (('hot', 'cold') if i % 2 == 0 else ('cold', 'hot')):
            m = measured(broker, rd[kind], upto)
            for k in ('bytes', 's', 'requests', 'client_s', 'broker_s'):
                tot[kind][k] += m[k]
            tot[kind]['blocks'].append(round(m['bytes'] / m['s'] / 1e6))
            time.sleep(pause_s)
    for r in rd.values():
        r.close()
    for t in tot.values():
        t['mbs'] = t['bytes'] / t['s'] / 1e6
        t['cpu_s_per_gb'] = (t['client_s'] + t['broker_s']) / (t['bytes'] / 1e9)
        t['broker_cpu_s_per_gb'] = t['broker_s'] / (t['bytes'] / 1e9)
        t['client_cores'] = t['client_s'] / t['s']
    return tot


def rounds(broker, n, upto, pause_s, perf=None):
    """n rounds, each after a restart: a paired pass with an empty read cache, then a warm one."""
    out = []
    bounds = list(range(a.block_mb * 1024, upto, a.block_mb * 1024)) + [upto]  # 1 KiB records
    for i in range(n):
        broker.restart()
        p = None
        if perf and i == n - 1:
            p = subprocess.Popen(['perf', 'record', '-g', '-o', perf + '.data', '-p', str(broker.proc.pid)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        empty = paired_pass(broker, bounds, pause_s)
        if p:
            p.send_signal(2)
            p.wait()
        warm = paired_pass(broker, bounds, pause_s)
        broker.stop()
        out.append({'empty': empty, 'warm': warm, 'cache': broker.cache_stats()})
    return out


def med(xs):
    return statistics.median(xs) if xs else float('nan')


def report(rs, indent='  '):
    def line(label, pass_, kind):
        runs = [r[pass_][kind] for r in rs]
        per = ', %.1f MB/fetch' % med([x['bytes'] / x['requests'] / 1e6 for x in runs]) if a.client == 'raw' else ''
        print('%s%-27s median %5.0f MB/s  runs %-30s CPU %.2f s/GB (broker %.2f), client %.2f cores%s'
              % (indent, label, med([x['mbs'] for x in runs]), ', '.join('%.0f' % x['mbs'] for x in runs),
                 med([x['cpu_s_per_gb'] for x in runs]), med([x['broker_cpu_s_per_gb'] for x in runs]),
                 med([x['client_cores'] for x in runs]), per))
    line('hot (pass 1):', 'empty', 'hot')
    line('cold, empty read cache:', 'empty', 'cold')
    line('hot (pass 2):', 'warm', 'hot')
    line('cold, warm read cache:', 'warm', 'cold')
    for pass_, label in (('empty', 'empty cache'), ('warm', 'warm cache')):
        ratio = [r[pass_]['cold']['mbs'] / r[pass_]['hot']['mbs'] for r in rs]
        cpu = [r[pass_]['hot']['cpu_s_per_gb'] / r[pass_]['cold']['cpu_s_per_gb'] for r in rs]
        print('%scold/hot, %s: throughput median %.0f%% (rounds %s); CPU per GB hot/cold median %.0f%% (rounds %s)'
              % (indent, label, 100 * med(ratio), ', '.join('%.0f%%' % (100 * x) for x in ratio),
                 100 * med(cpu), ', '.join('%.0f%%' % (100 * x) for x in cpu)))
    print('%sread cache counters, last round: %s' % (indent, rs[-1]['cache']))
    dl = []
    for r in rs:  # "... chunks verified (N bytes, ...) ...; download threads' CPU M ms"
        try:
            nb = int(r['cache'].split(' chunks verified (', 1)[1].split(' bytes', 1)[0])
            ms = int(r['cache'].split("download threads' CPU ", 1)[1].split(' ms', 1)[0])
            dl.append(ms / 1000 / (nb / 1e9))
        except (AttributeError, IndexError, ValueError, ZeroDivisionError):
            pass
    if dl:
        print('%sdownload threads (GET or read, verify, cache file): %.3f s CPU per GB (median; rounds %s)'
              % (indent, med(dl), ', '.join('%.3f' % x for x in dl)))


def manifest_end(pattern):
    """End offset of the partition manifest at the glob pattern (-1: none yet)."""
    end = -1
    for path in glob.glob(pattern, recursive=True):
        try:
            text = open(path).read()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith('seg '):
                kv = dict(x.split('=', 1) for x in line.split()[1:] if '=' in x)
                end = max(end, int(kv['last']) + 1)
    return end


def produce(broker, topics, mb):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    adm = AdminClient({'bootstrap.servers': broker.bs})
    new = [NewTopic(t, 1, 1, config=dict({'segment.bytes': str(a.segment_bytes)}, **cfg)) for t, cfg in topics]
    for t, f in adm.create_topics(new).items():
        f.result(30)
    p = Producer({'bootstrap.servers': broker.bs, 'linger.ms': 20, 'batch.size': 1 << 20, 'acks': 1,
                  'queue.buffering.max.kbytes': 1 << 20})
    val = os.urandom(1024)
    t0 = time.time()
    for i in range(mb * 1024):
        for t, _ in topics:
            while True:
                try:
                    p.produce(t, value=val, partition=0)
                    break
                except BufferError:
                    p.poll(0.01)
    p.flush(300)
    return adm, time.time() - t0


def upload_and_evict(broker, adm, topic, manifest_glob, bucket_glob):
    """Lets the backlog of topic upload; returns (bytes, segments, seconds, first local offset)."""
    from confluent_kafka.admin import ConfigResource
    closed = broker.local_bases(topic)[-1]
    t0 = time.time()
    os.unlink(broker.fault)
    while manifest_end(manifest_glob) < closed and time.time() - t0 < 1200:
        time.sleep(0.02)
    up_s = time.time() - t0
    objs = glob.glob(bucket_glob, recursive=True)
    up_bytes = sum(os.path.getsize(f) for f in objs)
    r = ConfigResource('topic', topic, set_config={'segment.bytes': str(a.segment_bytes),
                                                   'local.retention.bytes': '1'})
    adm.alter_configs([r])[r].result(30)
    t0 = time.time()
    while len(broker.local_bases(topic)) > 1 and time.time() - t0 < 120:
        time.sleep(0.1)
    return up_bytes, len(objs), up_s, broker.local_bases(topic)[0]


def first_fetch(broker, topic, mid, runs, drop=None):
    """Latency (ms) of the first fetch after a restart at offset 0, then one at offset mid."""
    out = []
    for _ in range(runs):
        broker.restart()
        if drop:
            drop()
        c = RawReader(broker, topic)
        t0 = time.perf_counter()
        e1, n1, _ = c.fetch(0, max_wait_ms=10000, max_bytes=1 << 20)
        t1 = time.perf_counter()
        e2, n2, _ = c.fetch(mid, max_wait_ms=10000, max_bytes=1 << 20)
        t2 = time.perf_counter()
        c.close()
        if e1 or e2 or not n1 or not n2:
            sys.exit('first fetch: errors %d/%d, %d/%d bytes' % (e1, e2, n1, n2))
        out.append(((t1 - t0) * 1000, (t2 - t1) * 1000))
    broker.stop()
    return out


def print_ff(label, ff):
    print('%s: offset 0 median %.1f ms (runs %s); then another segment median %.1f ms (runs %s)'
          % (label, med([x[0] for x in ff]), ', '.join('%.1f' % x[0] for x in ff),
             med([x[1] for x in ff]), ', '.join('%.1f' % x[1] for x in ff)))


def drop_page_cache(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)


def read_files(paths):
    for p in paths:
        with open(p, 'rb') as f:
            while f.read(1 << 20):
                pass


def s3rver_start(sdir):
    s3rver = os.path.join(HERE, 'node_modules', 's3rver', 'bin', 's3rver.js')
    if not shutil.which('node') or not os.path.exists(s3rver):
        return None, None
    os.makedirs(os.path.join(sdir, 'data'))
    logp = os.path.join(sdir, 's3rver.log')
    with open(logp, 'w') as log:
        # The legacy provider: s3rver's continuation tokens use DES, which OpenSSL 3 hides.
        srv = subprocess.Popen(['node', s3rver, '-d', os.path.join(sdir, 'data'), '-a', '127.0.0.1', '-p', '0',
                                '-s', '--service-endpoint', 'localhost', '--configure-bucket', 'bench'],
                               stdout=log, stderr=log, env=dict(os.environ, NODE_OPTIONS='--openssl-legacy-provider'))
    for _ in range(300):
        txt = open(logp).read()
        if 'listening on 127.0.0.1:' in txt:
            return srv, int(txt.split('listening on 127.0.0.1:', 1)[1].split()[0].strip('/'))
        if srv.poll() is not None:
            break
        time.sleep(0.1)
    srv.kill()
    srv.wait()
    sys.exit('s3rver did not start: %s' % open(logp).read()[-2000:])


fb = sb = srv = None
try:
    # --- file:// ------------------------------------------------------------------------------
    cache_bytes = a.cache_bytes or max(2 * a.mb << 20, 1 << 30)
    fb = Broker('file', ['strata.tier.cache.size.bytes=%d' % cache_bytes] + a.set)
    open(fb.fault, 'w').close()
    fb.start()
    adm, prod_s = produce(fb, [('hot', {'remote.storage.enable': 'false'}), ('cold', {})], a.mb)
    print('load average at start %.2f %.2f %.2f; %d CPUs; client: %s, %d-byte fetches; segment.bytes %d; '
          'broker settings: %s' % (RESULTS['load_start'] + (os.cpu_count(), a.client, a.fetch_bytes,
                                                            a.segment_bytes, ' '.join(fb.own))))
    print('produced %d MiB of 1 KiB records to each of "hot" and "cold" in %.1f s' % (a.mb, prod_s))
    bucket = os.path.join(fb.dir, 'bucket')
    up_bytes, n_objs, up_s, cold_upto = upload_and_evict(
        fb, adm, 'cold', os.path.join(bucket, '*', 'cold', '0_*', 'manifest'),
        os.path.join(bucket, '*', 'cold', '0_*', '*.log'))
    del adm  # its connection would complain through every restart
    print('upload (file://): %d bytes (%d segments) in %.2f s = %.0f MB/s (a backlog of one partition: one '
          'segment at a time)' % (up_bytes, n_objs, up_s, up_bytes / up_s / 1e6))
    RESULTS['file'] = {'upload': {'bytes': up_bytes, 's': up_s, 'mbs': up_bytes / up_s / 1e6}}
    objs = glob.glob(os.path.join(bucket, '*', 'cold', '0_*', '*'))
    ff = first_fetch(fb, 'cold', cold_upto // 2, a.rounds)
    ffd = first_fetch(fb, 'cold', cold_upto // 2, a.rounds, drop=lambda: drop_page_cache(objs))
    read_files(objs)  # back into the page cache: the replays read it from there
    print_ff('cold first fetch after a restart (manifest, index, first chunk; bucket in the page cache)', ff)
    print_ff('  ... bucket files dropped from the page cache first (read from disk)', ffd)
    RESULTS['file'].update(first_fetch=ff, first_fetch_disk=ffd)
    rs = rounds(fb, a.rounds, cold_upto, a.pause_ms / 1000, a.perf)
    print('replay of offsets [0, %d) (%.0f MB), %d rounds after a restart each; %d-MiB blocks alternating hot/cold:'
          % (cold_upto, rs[0]['empty']['cold']['bytes'] / 1e6, a.rounds, a.block_mb))
    report(rs)
    RESULTS['file']['rounds'] = rs
    if not a.keep:
        shutil.rmtree(fb.dir, ignore_errors=True)

    # --- s3:// on s3rver ----------------------------------------------------------------------
    if a.s3_mb > 0:
        srv, port = s3rver_start(os.path.join(ROOT, 's3rver'))
        if not srv:
            print('s3rver: not installed (scripts/deps --test installs it): skipped')
    if srv:
        env = dict(os.environ, AWS_ACCESS_KEY_ID='S3RVER', AWS_SECRET_ACCESS_KEY='S3RVER')
        sb = Broker('s3', ['strata.tier.url=s3://bench/tiered', 'strata.tier.s3.endpoint=http://127.0.0.1:%d' % port,
                           'strata.tier.cache.size.bytes=%d' % max(2 * a.s3_mb << 20, 1 << 30)] + a.set, env)
        open(sb.fault, 'w').close()
        sb.start()
        adm, _ = produce(sb, [('hot', {'remote.storage.enable': 'false'}), ('cold', {})], a.s3_mb)
        data = os.path.join(ROOT, 's3rver', 'data', 'bench')
        up_bytes, n_objs, up_s, s3_upto = upload_and_evict(
            sb, adm, 'cold', os.path.join(data, '**', 'cold', '0_*', 'manifest._S3rver_object'),
            os.path.join(data, '**', 'cold', '0_*', '*.log._S3rver_object'))
        del adm
        print('s3rver (node, loopback, no proxy), %d MiB per topic:' % a.s3_mb)
        print('  upload: %d bytes (%d segments) in %.2f s = %.0f MB/s' % (up_bytes, n_objs, up_s, up_bytes / up_s / 1e6))
        sff = first_fetch(sb, 'cold', s3_upto // 2, a.s3_rounds)
        print_ff('  cold first fetch after a restart', sff)
        srs = rounds(sb, a.s3_rounds, s3_upto, a.s3_pause_ms / 1000, a.perf and a.perf + '.s3')
        report(srs)
        RESULTS['s3rver'] = {'upload': {'bytes': up_bytes, 's': up_s, 'mbs': up_bytes / up_s / 1e6},
                             'first_fetch': sff, 'rounds': srs}
    RESULTS['load_end'] = os.getloadavg()
    print('load average at the end %.2f %.2f %.2f' % RESULTS['load_end'])
    if a.json:
        with open(a.json, 'w') as f:
            json.dump(RESULTS, f, indent=1)
finally:
    for b in (fb, sb):
        if b and b.proc and b.proc.poll() is None:
            b.proc.kill()
            b.proc.wait()
    if srv and srv.poll() is None:
        srv.terminate()
        try:
            srv.wait(30)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()
    if not a.keep:
        shutil.rmtree(ROOT, ignore_errors=True)
    else:
        print('kept %s' % ROOT)
