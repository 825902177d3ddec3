# t/tapkit.py -- what the python halves of the shell-driven tests share (t/tier_test.py,
# t/tier_restore.py, t/recompress_test.py, t/idempotence.py, t/groups_test.py, t/badinput.py):
# plan-less TAP lines that the calling t/*.sh numbers (t/lib.sh: tap_number, tap_lines, tap_run),
# a guard that turns a crash into a failed test, bounded polling, JSON state kept between the
# phases of one test, a long-lived confluent-kafka AdminClient, reading a partition back with
# kafka-python. No test logic here.
# Imported as `import tapkit`: the scripts run as /usr/bin/python3 t/X.py, so t/ is on sys.path.
import json
import sys
import time
import traceback


def ok(cond, desc):
    """One plan-less result line; returns cond so that callers can chain on it."""
    print(('ok' if cond else 'not ok') + ' - ' + desc, flush=True)
    return cond


def diag(msg):
    """A TAP comment, one '# ' line per line of msg."""
    for line in str(msg).splitlines() or ['']:
        print('# ' + line, flush=True)


def run(main, what):
    """Runs main(). An exception is a failed test 'WHAT: <exception>' after its traceback, and
    exit status 1: the calling script counts only the lines it sees, so a helper that died
    half-way must say so, not just print fewer passes."""
    try:
        main()
    except Exception as e:  # noqa: BLE001 (any crash is the failure being reported)
        diag(traceback.format_exc())
        ok(False, '%s: %r' % (what, e))
        sys.exit(1)


def wait_until(fn, timeout_s, step=0.2):
    """Polls fn until it is true or timeout_s passes; the last answer of fn. A bound, never an
    assertion of speed."""
    end = time.time() + timeout_s
    while time.time() < end:
        if fn():
            return True
        time.sleep(step)
    return fn()


def load_json(path, default=None):
    """The JSON in path; default when there is no such file and a default is given."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        if default is None:
            raise
        return default


def save_json(path, obj):
    with open(path, 'w') as f:
        json.dump(obj, f)


_admins = {}


def admin(bootstrap):
    """One confluent-kafka AdminClient per bootstrap, kept for the whole run: futures of a
    destroyed client fail with _DESTROY."""
    from confluent_kafka.admin import AdminClient
    if bootstrap not in _admins:
        _admins[bootstrap] = AdminClient({'bootstrap.servers': bootstrap})
    return _admins[bootstrap]


def kp_read(bootstrap, topic, part, start=0, timeout_s=60, fetch_bytes=65536):
    """Every record of a partition from offset start to its end (as the read begins), with
    kafka-python: ([[offset, key, value, [[header key, value], ...], timestamp], ...], end).
    Keys, values and header values are decoded as UTF-8 (None stays None for keys)."""
    from kafka import KafkaConsumer, TopicPartition
    tp = TopicPartition(topic, part)
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=200,
                      max_partition_fetch_bytes=fetch_bytes)
    end = c.end_offsets([tp])[tp]
    c.assign([tp])
    c.seek(tp, start)
    out = []
    deadline = time.time() + timeout_s
    while c.position(tp) < end and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            for m in recs:
                out.append([m.offset, m.key.decode() if m.key is not None else None, m.value.decode(),
                            [[k, v.decode()] for k, v in (m.headers or [])], m.timestamp])
    c.close()
    return out, end


def create_topic(bootstrap, topic, parts, cfg, timeout_s=60):
    """CreateTopics of one topic (replication factor 1): None, or the error (the error is
    often the answer a check wants)."""
    from confluent_kafka.admin import NewTopic
    f = admin(bootstrap).create_topics([NewTopic(topic, parts, 1, config=cfg)],
                                       request_timeout=timeout_s)
    try:
        f[topic].result(timeout_s)
        return None
    except Exception as e:  # noqa: BLE001 (the error is the answer)
        return e


# ---- Kafka wire encoding helpers (raw-protocol tests) ---------------------------------------

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC32C_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli), as Kafka's record batches and Strata's bucket keys use it; crc
    continues an earlier result."""
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def uvarint(v):
    """Unsigned varint (protobuf style)."""
    out = b''
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


def varint(v):
    """Zigzag varint (Kafka record fields)."""
    return uvarint((v << 1) ^ (v >> 63))
