#!/usr/bin/python3
"""fuzz/capture_clients.py BOOTSTRAP -- drives the Python clients (confluent-kafka, kafka-python)
through produce per codec, consume, offsets and admin calls against BOOTSTRAP (the capture
proxy), so fuzz/capture.py records what they send. Failures are reported, never fatal: the goal
is the requests, not the answers (e.g. group APIs Strata does not serve yet)."""
import sys
import time
import traceback

bs = sys.argv[1]
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def step(name, fn):
    try:
        fn()
        print("capture: %s done" % name)
    except Exception as e:  # noqa: BLE001 -- any client error only loses some seeds
        print("capture: %s failed: %s" % (name, e))
        traceback.print_exc(limit=1, file=sys.stdout)


def confluent():
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic, NewPartitions, ConfigResource

    admin = AdminClient({"bootstrap.servers": bs})

    def create():
        fs = admin.create_topics([NewTopic("cap-ck-admin", 2, 1, config={"retention.ms": "3600000"})],
                                 request_timeout=10)
        for f in fs.values():
            f.result(timeout=15)
    step("confluent create_topics", create)
    step("confluent list_topics", lambda: admin.list_topics(timeout=10))

    def configs():
        for f in admin.describe_configs([ConfigResource("topic", "cap-ck-admin")]).values():
            f.result(timeout=15)
        r = ConfigResource("topic", "cap-ck-admin", set_config={"retention.ms": "7200000"})
        for f in admin.alter_configs([r]).values():
            f.result(timeout=15)
    step("confluent configs", configs)

    def parts():
        for f in admin.create_partitions([NewPartitions("cap-ck-admin", 3)]).values():
            f.result(timeout=15)
    step("confluent create_partitions", parts)

    for codec in CODECS:
        def produce(codec=codec):
            p = ck.Producer({"bootstrap.servers": bs, "compression.type": codec,
                             "enable.idempotence": codec in ("none", "zstd"),
                             "linger.ms": 5})
            for i in range(20):
                p.produce("cap-ck-" + codec, key=b"k%d" % (i % 3),
                          value=(b"value-%d " % i) * (10 + i % 4) if i % 7 else None,
                          headers=[("h", b"x%d" % i)] if i % 2 else None)
            if p.flush(15) != 0:
                raise RuntimeError("unflushed")
        step("confluent produce " + codec, produce)

    def consume():
        c = ck.Consumer({"bootstrap.servers": bs, "group.id": "cap-ck",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        c.assign([ck.TopicPartition("cap-ck-gzip", 0, 0)])
        got = 0
        deadline = time.time() + 10
        while got < 20 and time.time() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                got += 1
        c.offsets_for_times([ck.TopicPartition("cap-ck-none", 0, int(time.time() * 1000) - 60000)],
                            timeout=10)
        c.get_watermark_offsets(ck.TopicPartition("cap-ck-none", 0), timeout=10)
        c.close()
    step("confluent consume", consume)

    def group():
        # Group membership and commits (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
        # OffsetCommit/Fetch, LeaveGroup), where the broker serves them.
        c = ck.Consumer({"bootstrap.servers": bs, "group.id": "cap-ck-group", "session.timeout.ms": 6000,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.subscribe(["cap-ck-none"])
        got = 0
        deadline = time.time() + 15
        while got < 5 and time.time() < deadline:
            m = c.poll(1)
            if m is not None and not m.error():
                got += 1
        if got:
            c.commit(asynchronous=False)
        c.close()
    step("confluent group consume", group)

    def delete():
        for f in admin.delete_topics(["cap-ck-admin"], operation_timeout=10).values():
            f.result(timeout=15)
    step("confluent delete_topics", delete)


def kafka_python():
    import kafka
    from kafka.admin import KafkaAdminClient, NewTopic, NewPartitions, ConfigResource, ConfigResourceType

    for api in [(0, 11), (1, 0), (2, 1, 0)]:
        for codec in ["gzip", "snappy", "lz4", "zstd", None]:
            if codec == "zstd" and api < (2, 1, 0):
                continue

            def produce(api=api, codec=codec):
                p = kafka.KafkaProducer(bootstrap_servers=bs, api_version=api, compression_type=codec,
                                        request_timeout_ms=10000)
                for i in range(10):
                    p.send("cap-kp-%s" % (codec or "none"), key=b"k%d" % i, value=b"value %d " % i * 10,
                           headers=[("h", b"1")] if i % 2 else [])
                p.flush(15)
                p.close(5)
            step("kafka-python %s produce %s" % (api, codec), produce)

        def consume(api=api):
            c = kafka.KafkaConsumer(bootstrap_servers=bs, api_version=api, consumer_timeout_ms=3000,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    request_timeout_ms=11000)
            tp = kafka.TopicPartition("cap-kp-gzip", 0)
            c.assign([tp])
            c.seek_to_beginning(tp)
            for _ in c:
                pass
            c.end_offsets([tp])
            if api >= (0, 11):
                c.offsets_for_times({tp: int(time.time() * 1000) - 60000})
            c.close()
        step("kafka-python %s consume" % (api,), consume)

    def group():
        c = kafka.KafkaConsumer("cap-kp-gzip", bootstrap_servers=bs, group_id="cap-kp-group",
                                consumer_timeout_ms=5000, auto_offset_reset="earliest",
                                enable_auto_commit=False, request_timeout_ms=11000,
                                session_timeout_ms=10000)
        n = 0
        for _ in c:
            n += 1
            if n >= 5:
                break
        if n:
            c.commit()
        c.close()
    step("kafka-python group consume", group)

    def admin():
        a = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)
        a.create_topics([NewTopic("cap-kp-admin", 1, 1)])
        a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "cap-kp-admin")])
        a.create_partitions({"cap-kp-admin": NewPartitions(2)})
        a.delete_topics(["cap-kp-admin"])
        a.close()
    step("kafka-python admin", admin)


which = sys.argv[2] if len(sys.argv) > 2 else "all"
if which in ("all", "confluent"):
    confluent()
if which in ("all", "kafka-python"):
    kafka_python()
