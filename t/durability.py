#!/usr/bin/python3
# t/durability.py -- acks=all durability across SIGKILL. Phase "produce BOOTSTRAP PID FILE":
# produce with acks=all, SIGKILL the broker (PID) at a random moment, write every acknowledged
# (partition, offset, value) to FILE. Phase "verify BOOTSTRAP FILE": after the broker restarted,
# every acknowledged record must be there, at its offset, with its value. TAP lines, no plan.
import json, os, random, signal, sys, threading, time

from confluent_kafka import Producer, Consumer, TopicPartition

phase, bs = sys.argv[1], sys.argv[2]
TOPIC = 'durability'


def ok(cond, desc):
    print(('ok' if cond else 'not ok') + ' - durability: ' + desc, flush=True)


if phase == 'produce':
    pid, out = int(sys.argv[3]), sys.argv[4]
    acked = []
    p = Producer({'bootstrap.servers': bs, 'acks': 'all', 'linger.ms': 1,
                  'message.timeout.ms': 3000, 'retries': 0, 'partitioner': 'murmur2_random'})

    errors = {}

    def cb(err, m):
        if not err:
            acked.append((m.partition(), m.offset(), m.value().decode()))
        else:
            errors[str(err.name())] = errors.get(str(err.name()), 0) + 1

    # The kill lands at a random moment after the first acknowledgements (not before them:
    # on a loaded machine topic creation alone may take longer than a fixed delay).
    delay = random.uniform(0.0, 0.8)
    killer = None
    i = 0
    t_start = time.time()
    while i < 200000 and time.time() - t_start < 60:
        try:
            p.produce(TOPIC, key=b'k%d' % (i % 50), value=b'value-%d' % i, on_delivery=cb)
            i += 1
        except BufferError:
            p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0.005)  # paced: the broker shares 2 cores with this producer
        if killer is None and len(acked) >= 1000:
            killer = threading.Timer(delay, lambda: os.kill(pid, signal.SIGKILL))
            killer.start()
            t_kill = time.time() + delay
        if killer is not None and time.time() > t_kill + 0.5:
            break
    if killer is None:  # never got 1000 acks: kill anyway so the test goes on
        os.kill(pid, signal.SIGKILL)
    else:
        killer.join()
    p.flush(5)
    with open(out, 'w') as f:
        json.dump(acked, f)
    ok(len(acked) > 0, 'acknowledged %d of %d records before the SIGKILL at %.2fs (errors %s)'
       % (len(acked), i, delay, errors))
else:
    acked = [tuple(x) for x in json.load(open(sys.argv[3]))]
    c = Consumer({'bootstrap.servers': bs, 'group.id': 'unused', 'enable.auto.commit': False})
    parts = sorted({p for p, _, _ in acked})
    c.assign([TopicPartition(TOPIC, p, 0) for p in parts])
    want = {(p, o): v for p, o, v in acked}
    got = {}
    # Read every partition up to its high watermark (bounded in time).
    hw = {p: c.get_watermark_offsets(TopicPartition(TOPIC, p), 10)[1] for p in parts}
    pos = {p: 0 for p in parts}
    deadline = time.time() + 120
    while any(pos[p] < hw[p] for p in parts) and time.time() < deadline:
        for m in c.consume(10000, 0.5):
            if not m.error():
                got[(m.partition(), m.offset())] = m.value().decode()
                pos[m.partition()] = m.offset() + 1
    missing = [k for k in want if got.get(k) != want[k]]
    ok(not missing, 'all %d acknowledged records present after restart (missing %s)'
       % (len(want), missing[:5]))
    c.close()
