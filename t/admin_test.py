#!/usr/bin/python3
"""t/admin_test.py -- the admin APIs through real client libraries, against a running stratad:
confluent_kafka's AdminClient (librdkafka) and kafka-python's KafkaAdminClient (older API
versions). Run by t/admin.sh; prints TAP.

  admin_test.py BOOTSTRAP before STATE   create/describe/alter/partitions/delete records/delete
  admin_test.py BOOTSTRAP after STATE    after a restart: topics, settings, log starts survived
  admin_test.py BOOTSTRAP held GATE      AlterConfigs held at the broker's topic worker (the broker
                                         runs with STRATA_TEST_TOPIC_GATE=GATE): served meanwhile,
                                         answered when written, in order
  admin_test.py BOOTSTRAP afterheld -    after a restart: those settings survived

The broker must run with --set log.segment.bytes=536870912 --set num.partitions=2.
"""
import json
import os
import sys
import threading
import time
import traceback

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, ConfigResource, NewPartitions, NewTopic)

TIMEOUT = 15
n = 0
failed = 0


def ok(cond, desc, diag=None):
    global n, failed
    n += 1
    print("%sok %d - %s" % ("" if cond else "not ", n, desc))
    if not cond:
        failed += 1
        if diag is not None:
            for line in str(diag).splitlines():
                print("#   " + line)
    sys.stdout.flush()
    return cond


def check(desc, fn):
    """Runs fn() -> (cond, diag); an exception is a failure with its traceback."""
    try:
        cond, diag = fn()
    except Exception:
        cond, diag = False, traceback.format_exc()
    return ok(cond, desc, diag)


def result(fut):
    """(None, value) or (KafkaError, None) of an admin future."""
    try:
        return None, fut.result(TIMEOUT)
    except Exception as e:  # KafkaException wrapping a KafkaError
        err = e.args[0] if e.args else e
        return err, None


def err_code(err):
    return err.code() if hasattr(err, "code") else None


def err_str(err):
    return err.str() if hasattr(err, "str") else str(err)


def describe_topic(admin, name):
    res = ConfigResource("topic", name)
    return admin.describe_configs([res])[res].result(TIMEOUT)


def partitions_of(admin, name):
    md = admin.list_topics(timeout=TIMEOUT)
    t = md.topics.get(name)
    return None if t is None or t.error is not None else len(t.partitions)


def watermarks(bootstrap, topic, part=0):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "admin-test",
                  "enable.auto.commit": False})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, part), timeout=TIMEOUT)
    finally:
        c.close()


SRC_TOPIC, SRC_STATIC, SRC_DEFAULT = 1, 4, 5


def kafka_admin(bootstrap):
    from kafka.admin import KafkaAdminClient
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT * 1000,
                            client_id="admin-test-kp")


from kafka.protocol.api import Request, Response  # noqa: E402
from kafka.protocol.types import Array, Int16, Int32, Int64, Schema, String  # noqa: E402


class DeleteRecordsResponse_v0(Response):
    API_KEY = 21
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("topics", Array(("name", String("utf-8")),
                         ("partitions", Array(("partition_index", Int32), ("low_watermark", Int64),
                                              ("error_code", Int16))))))


class DeleteRecordsRequest_v0(Request):
    API_KEY = 21
    API_VERSION = 0
    RESPONSE_TYPE = DeleteRecordsResponse_v0
    SCHEMA = Schema(
        ("topics", Array(("name", String("utf-8")),
                         ("partitions", Array(("partition_index", Int32), ("offset", Int64))))),
        ("timeout_ms", Int32))


def before(bootstrap, state):
    a = AdminClient({"bootstrap.servers": bootstrap})

    # --- CreateTopics ---
    fs = a.create_topics([
        NewTopic("adm-a", 3, 1, config={"retention.ms": "3600000", "cleanup.policy": "delete"}),
        NewTopic("adm-b", 1, 1),
        NewTopic("adm-c", 1, 1),
        NewTopic("adm-badkey", 1, 1, config={"retention.msx": "5"}),
        NewTopic("adm-badval", 1, 1, config={"max.message.bytes": "-7"}),
        NewTopic("adm-rf", 1, 3),
    ], request_timeout=TIMEOUT)
    errs = {t: result(f)[0] for t, f in fs.items()}
    ok(all(errs[t] is None for t in ("adm-a", "adm-b", "adm-c")), "confluent: three topics created",
       errs)
    e = errs["adm-badkey"]
    ok(err_code(e) is not None and err_code(e) == 40 and "retention.msx" in err_str(e),
       "confluent: an unknown config key is INVALID_CONFIG naming the key", e)
    print("# " + err_str(e))
    e = errs["adm-badval"]
    ok(err_code(e) == 40 and "max.message.bytes" in err_str(e) and "-7" in err_str(e),
       "confluent: a bad config value is INVALID_CONFIG naming key and value", e)
    print("# " + err_str(e))
    e = errs["adm-rf"]
    ok(err_code(e) == 38, "confluent: replication factor 3 is INVALID_REPLICATION_FACTOR", e)
    e, _ = result(a.create_topics([NewTopic("adm-a", 1, 1)])["adm-a"])
    ok(err_code(e) == 36, "confluent: creating adm-a again is TOPIC_ALREADY_EXISTS", e)
    e, _ = result(a.create_topics([NewTopic("adm-vo", 4, 1)], validate_only=True)["adm-vo"])
    check("confluent: validate_only creates nothing",
          lambda: (e is None and partitions_of(a, "adm-vo") is None, e))
    check("confluent: list_topics shows adm-a with 3 partitions, no refused topic",
          lambda: (partitions_of(a, "adm-a") == 3 and partitions_of(a, "adm-badkey") is None,
                   a.list_topics(timeout=TIMEOUT).topics))

    # --- DescribeConfigs ---
    def desc_a():
        c = describe_topic(a, "adm-a")
        r = c["retention.ms"]
        s = c["segment.bytes"]
        m = c["max.message.bytes"]
        return (r.value == "3600000" and r.source == SRC_TOPIC and not r.is_default and
                s.value == "536870912" and s.source == SRC_STATIC and
                m.value == "1048588" and m.source == SRC_DEFAULT and
                not r.is_read_only and len(c) >= 10,
                {k: (v.value, v.source) for k, v in c.items()})
    check("confluent: describe reports values and sources (topic, static broker, default)", desc_a)

    def desc_broker():
        res = ConfigResource("broker", "1")
        c = a.describe_configs([res])[res].result(TIMEOUT)
        return (c["num.partitions"].value == "2" and c["num.partitions"].source == SRC_STATIC and
                c["log.retention.hours"].source == SRC_DEFAULT and c["node.id"].is_read_only,
                {k: (v.value, v.source) for k, v in c.items()})
    check("confluent: describe broker 1", desc_broker)

    # --- AlterConfigs (replaces the whole set) ---
    res = ConfigResource("topic", "adm-a", set_config={"segment.bytes": "1048576",
                                                       "retention.ms": "7200000"})
    e, _ = result(a.alter_configs([res])[res])

    def after_alter():
        c = describe_topic(a, "adm-a")
        return (e is None and c["segment.bytes"].value == "1048576" and
                c["segment.bytes"].source == SRC_TOPIC and c["retention.ms"].value == "7200000" and
                c["cleanup.policy"].source == SRC_DEFAULT,
                (e, {k: (v.value, v.source) for k, v in c.items()}))
    check("confluent: alter_configs sets keys and resets the others", after_alter)
    res = ConfigResource("topic", "adm-a", set_config={"segment.bytes": "12"})
    e, _ = result(a.alter_configs([res])[res])
    check("confluent: alter_configs with a bad value is INVALID_CONFIG and changes nothing",
          lambda: (err_code(e) == 40 and "segment.bytes" in err_str(e) and
                   describe_topic(a, "adm-a")["segment.bytes"].value == "1048576", e))
    res = ConfigResource("topic", "adm-a", set_config={"segment.bytes": "2097152"})
    e, _ = result(a.alter_configs([res], validate_only=True)[res])
    check("confluent: alter_configs validate_only changes nothing",
          lambda: (e is None and describe_topic(a, "adm-a")["segment.bytes"].value == "1048576", e))

    # --- CreatePartitions ---
    e, _ = result(a.create_partitions([NewPartitions("adm-a", 5)])["adm-a"])
    check("confluent: create_partitions 3 -> 5",
          lambda: (e is None and partitions_of(a, "adm-a") == 5, e))
    e, _ = result(a.create_partitions([NewPartitions("adm-a", 4)])["adm-a"])
    ok(err_code(e) == 37, "confluent: shrinking is INVALID_PARTITIONS", e)
    e, _ = result(a.create_partitions([NewPartitions("adm-a", 8)], validate_only=True)["adm-a"])
    check("confluent: create_partitions validate_only changes nothing",
          lambda: (e is None and partitions_of(a, "adm-a") == 5, e))

    # --- idempotent produce (InitProducerId), then DeleteRecords (neither python client has
    #     delete_records: sent through kafka-python's protocol layer), low watermark checked
    #     with librdkafka's ListOffsets ---
    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors = []
    for i in range(20):
        p.produce("adm-b", b"value-%d" % i, partition=0,
                  on_delivery=lambda err, msg: errors.append(err) if err else None)
    left = p.flush(TIMEOUT)
    check("confluent: an idempotent producer (InitProducerId) delivers 20 records",
          lambda: (left == 0 and not errors and watermarks(bootstrap, "adm-b") == (0, 20),
                   (left, errors, watermarks(bootstrap, "adm-b"))))

    def delete_records(offset):
        ka = kafka_admin(bootstrap)
        try:
            req = DeleteRecordsRequest_v0(topics=[("adm-b", [(0, offset)])], timeout_ms=TIMEOUT * 1000)
            fut = ka._send_request_to_node(ka._client.least_loaded_node(), req)
            ka._wait_for_futures([fut])
            part = fut.value.topics[0][1][0]
            return part[2], part[1]  # error code, low watermark
        finally:
            ka.close()
    er = delete_records(5)
    check("kafka-python DeleteRecords v0 to offset 5: low watermark 5, ListOffsets agrees",
          lambda: (er == (0, 5) and watermarks(bootstrap, "adm-b") == (5, 20),
                   (er, watermarks(bootstrap, "adm-b"))))
    er = delete_records(21)
    ok(er == (1, -1), "DeleteRecords beyond the high watermark: OFFSET_OUT_OF_RANGE", er)

    # --- DeleteTopics ---
    e, _ = result(a.delete_topics(["adm-c"], operation_timeout=TIMEOUT)["adm-c"])
    check("confluent: delete_topics removes adm-c",
          lambda: (e is None and partitions_of(a, "adm-c") is None, e))
    e, _ = result(a.delete_topics(["adm-nope"])["adm-nope"])
    ok(err_code(e) == 3, "confluent: deleting an unknown topic is UNKNOWN_TOPIC_OR_PARTITION", e)

    # --- kafka-python (CreateTopics v3, DescribeConfigs v2, AlterConfigs v1, CreatePartitions v1,
    #     DeleteTopics v3) ---
    from kafka.admin import (ConfigResource as KConfigResource, ConfigResourceType,
                             NewPartitions as KNewPartitions, NewTopic as KNewTopic)
    ka = kafka_admin(bootstrap)
    try:
        r = ka.create_topics([KNewTopic("adm-kp", 2, 1, topic_configs={"retention.bytes": "1000000"}),
                              KNewTopic("adm-kp-del", 1, 1)])
        ok(all(t[1] == 0 for t in r.topic_errors), "kafka-python: create_topics", r)
        r = ka.describe_configs([KConfigResource(ConfigResourceType.TOPIC, "adm-kp")])
        entries = {c[0]: c for c in r[0].resources[0][4]}
        ok(entries["retention.bytes"][1] == "1000000" and entries["retention.bytes"][3] == SRC_TOPIC and
           entries["segment.bytes"][1] == "536870912" and entries["segment.bytes"][3] == SRC_STATIC,
           "kafka-python: describe_configs values and sources", entries)
        r = ka.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "adm-kp",
                                              configs={"retention.bytes": "2000000"})])
        ok(r.resources[0][0] == 0, "kafka-python: alter_configs", r)
        r = ka.create_partitions({"adm-kp": KNewPartitions(3)})
        ok(r.topic_errors[0][1] == 0, "kafka-python: create_partitions 2 -> 3", r)
        r = ka.delete_topics(["adm-kp-del"])
        ok(r.topic_error_codes[0][1] == 0, "kafka-python: delete_topics", r)
        check("kafka-python: the results are visible to librdkafka",
              lambda: (partitions_of(a, "adm-kp") == 3 and partitions_of(a, "adm-kp-del") is None and
                       describe_topic(a, "adm-kp")["retention.bytes"].value == "2000000", None))
    finally:
        ka.close()

    with open(state, "w") as f:
        json.dump({"adm-b": watermarks(bootstrap, "adm-b")}, f)


def after(bootstrap, state):
    with open(state) as f:
        st = json.load(f)
    a = AdminClient({"bootstrap.servers": bootstrap})
    check("after restart: topics and partition counts survived, deleted ones stay deleted",
          lambda: (partitions_of(a, "adm-a") == 5 and partitions_of(a, "adm-b") == 1 and
                   partitions_of(a, "adm-kp") == 3 and partitions_of(a, "adm-c") is None and
                   partitions_of(a, "adm-kp-del") is None, a.list_topics(timeout=TIMEOUT).topics))

    def cfg_survived():
        c = describe_topic(a, "adm-a")
        k = describe_topic(a, "adm-kp")
        return (c["segment.bytes"].value == "1048576" and c["segment.bytes"].source == SRC_TOPIC and
                c["retention.ms"].value == "7200000" and c["cleanup.policy"].source == SRC_DEFAULT and
                k["retention.bytes"].value == "2000000",
                {kk: (v.value, v.source) for kk, v in c.items()})
    check("after restart: topic settings survived", cfg_survived)
    check("after restart: adm-b's watermarks are as before (low watermark %d)" % st["adm-b"][0],
          lambda: (list(watermarks(bootstrap, "adm-b")) == st["adm-b"], watermarks(bootstrap, "adm-b")))


HELD_FINAL = {"retention.ms": "3000002", "segment.bytes": "2097152"}
HELD_KP = {"retention.bytes": "3000003"}


def held_settings(a):
    c = describe_topic(a, "adm-held")
    k = describe_topic(a, "adm-held-kp")
    return (c["retention.ms"].value == HELD_FINAL["retention.ms"] and
            c["segment.bytes"].value == HELD_FINAL["segment.bytes"] and
            c["segment.ms"].source == SRC_DEFAULT and
            k["retention.bytes"].value == HELD_KP["retention.bytes"] and
            k["retention.bytes"].source == SRC_TOPIC,
            ({kk: (v.value, v.source) for kk, v in c.items()}, k["retention.bytes"].value))


def held(bootstrap, gate):
    a = AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([NewTopic("adm-held", 1, 1), NewTopic("adm-held-kp", 1, 1)])
    errs = [result(f)[0] for f in fs.values()]
    ok(errs == [None, None], "confluent: adm-held and adm-held-kp created", errs)
    open(gate, "w").close()
    try:
        # two alter_configs of one topic in flight at once: queued, the last one's set wins
        r1 = ConfigResource("topic", "adm-held", set_config={"retention.ms": "3000001",
                                                             "segment.ms": "4000001"})
        f1 = a.alter_configs([r1])[r1]
        r2 = ConfigResource("topic", "adm-held", set_config=HELD_FINAL)
        f2 = a.alter_configs([r2])[r2]
        kp_out = {}

        def kp_alter():
            from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType
            ka = kafka_admin(bootstrap)
            try:
                kp_out["r"] = ka.alter_configs([KConfigResource(ConfigResourceType.TOPIC, "adm-held-kp",
                                                                configs=HELD_KP)])
            except Exception:
                kp_out["r"] = traceback.format_exc()
            finally:
                ka.close()
        th = threading.Thread(target=kp_alter)
        th.start()
        # another connection: answers on a's come in order, after the held ones (as Kafka's)
        b = AdminClient({"bootstrap.servers": bootstrap})
        rv = ConfigResource("topic", "adm-held", set_config={"retention.ms": "5"})
        ev, _ = result(b.alter_configs([rv], validate_only=True)[rv])
        ok(ev is None, "confluent: alter_configs validate_only is answered while the worker is held", ev)
        p = Producer({"bootstrap.servers": bootstrap})
        delivered = []
        p.produce("adm-held", b"meanwhile", on_delivery=lambda err, msg: delivered.append(err))
        left = p.flush(TIMEOUT)
        md = partitions_of(b, "adm-held")
        time.sleep(0.3)  # room for a wrong early answer to arrive; not a timing assertion
        ok(left == 0 and delivered == [None] and md == 1 and not f1.done() and not f2.done() and
           th.is_alive(),
           "held: a Produce and a Metadata are served while AlterConfigs of librdkafka and "
           "kafka-python wait", (left, delivered, md, f1.done(), f2.done(), th.is_alive()))
        c = describe_topic(b, "adm-held")
        ok(c["retention.ms"].source == SRC_DEFAULT, "held: the new settings are not in force yet",
           {k: (v.value, v.source) for k, v in c.items()})
    finally:
        os.unlink(gate)
    e1, _ = result(f1)
    e2, _ = result(f2)
    th.join(TIMEOUT)
    r = kp_out.get("r")
    ok(e1 is None and e2 is None and not th.is_alive() and
       getattr(r, "resources", [[None]])[0][0] == 0,
       "released: both alter_configs and kafka-python's are answered without error", (e1, e2, r))
    check("released: the second alter_configs replaced the first, kafka-python's applied", lambda: held_settings(a))


def after_held(bootstrap, state):
    a = AdminClient({"bootstrap.servers": bootstrap})
    check("after restart: the settings changed while the worker was held survived",
          lambda: held_settings(a))


def main():
    modes = {"before": before, "after": after, "held": held, "afterheld": after_held}
    if len(sys.argv) != 4 or sys.argv[2] not in modes:
        print("usage: admin_test.py BOOTSTRAP before|after|held|afterheld STATE|GATE", file=sys.stderr)
        return 2
    bootstrap, mode, state = sys.argv[1:]
    try:
        modes[mode](bootstrap, state)
    except Exception:
        ok(False, "%s phase ran to the end" % mode, traceback.format_exc())
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
