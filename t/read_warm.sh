#!/bin/sh
# t/read_warm.sh -- reads of closed segments that are not in memory (src/rwarm.c): a topic of many
# small segments is written, the broker restarted (closed segments' files shut) and the page
# cache of the partition's files dropped (POSIX_FADV_DONTNEED); kafka-python and kcat then read
# every record back from offset 0, identical, while the broker warms the segments up off the
# reactor (strata_log_read_warmups_total > 0) instead of reading them on it. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
tap_skip_without_py confluent_kafka kafka
TOPIC=read-warm
N=20000
strata_start || tap_abort "stratad starts"

# py STEP: the Python side (produce | drop | consume | metric).
py() {
	"$STRATA_PY" - "$1" "$STRATA_BOOTSTRAP" "$TOPIC" "$N" "$STRATA_DIR" "$STRATA_METRICS_PORT" <<'PY'
import os, sys, urllib.request
step, bs, topic, n, sdir, mport = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
def value(i):
    return (b'%08d-' % i) * 20
if step == 'produce':
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic
    adm = AdminClient({'bootstrap.servers': bs})  # (kept: the futures need the handle alive)
    fs = adm.create_topics(
        [NewTopic(topic, 1, 1, config={'segment.bytes': '65536', 'remote.storage.enable': 'false'})])
    for f in fs.values():
        f.result(30)
    p = Producer({'bootstrap.servers': bs, 'acks': 'all', 'linger.ms': 5, 'batch.num.messages': 50})
    errs = []
    for i in range(n):
        p.produce(topic, value=value(i), key=b'k%d' % i, partition=0,
                  on_delivery=lambda e, m: errs.append(e) if e else None)
        if i % 1000 == 0:
            p.poll(0)
    left = p.flush(60)
    segs = len([f for f in os.listdir(os.path.join(sdir, 'log', topic + '-0')) if f.endswith('.log')])
    print('%s - produced %d records into %d segments (%d errors, %d left)'
          % ('ok' if not errs and not left and segs > 20 else 'not ok', n, segs, len(errs), left))
elif step == 'drop':
    d = os.path.join(sdir, 'log', topic + '-0')
    k = 0
    for f in os.listdir(d):
        fd = os.open(os.path.join(d, f), os.O_RDONLY)
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
        k += 1
    print('ok - dropped the page cache of %d files' % k)
elif step == 'consume':
    from kafka import KafkaConsumer, TopicPartition
    c = KafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False, consumer_timeout_ms=20000,
                      fetch_max_bytes=1 << 20, max_partition_fetch_bytes=1 << 20)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    c.seek(tp, 0)
    seen = bad = 0
    for m in c:
        if m.offset != seen or m.value != value(seen) or m.key != b'k%d' % seen:
            bad += 1
        seen += 1
        if seen == n:
            break
    c.close()
    print('%s - kafka-python reads all %d records from offset 0, in order, identical (%d, %d bad)'
          % ('ok' if seen == n and bad == 0 else 'not ok', n, seen, bad))
elif step == 'metric':
    o = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    text = o.open('http://127.0.0.1:%s/metrics' % mport, timeout=10).read().decode()
    v = {l.split()[0]: float(l.split()[1]) for l in text.splitlines() if l and not l.startswith('#')}
    w = v.get('strata_log_read_warmups_total', -1)
    b = v.get('strata_log_read_warmup_bytes_total', -1)
    print('%s - the broker warmed segments up off the reactor (strata_log_read_warmups_total %d, '
          'bytes %d)' % ('ok' if w > 0 and b > 0 else 'not ok', w, b))
PY
}

raw_out="$STRATA_DIR/tap.out"
{
	py produce
	tap_result "restart (closed segments' files shut)" strata_restart
	py drop
	py consume
	got=$(kcat -C -b "$STRATA_BOOTSTRAP" -t "$TOPIC" -p 0 -o beginning -e -q -f '%o\n' 2>/dev/null | wc -l)
	tap_result "kcat reads all $N records ($got)" [ "$got" -eq "$N" ]
	py metric
	tap_result "no errors in the broker log" strata_log_clean
	tap_result "clean shutdown" strata_stop
} > "$raw_out" 2>&1
if grep -q '^not ok' "$raw_out"; then strata_dump_log 40 >> "$raw_out"; fi
tap_number < "$raw_out"
