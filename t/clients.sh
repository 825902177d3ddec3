#!/bin/sh
# t/clients.sh -- unmodified Kafka clients against a real stratad: kcat, python3-confluent-kafka
# and python3-kafka produce and consume 10,000 records per codec over 8 partitions (keys,
# headers, NULL values, per-key order, seek, offsets for a timestamp); acks=all records
# survive SIGKILL of the broker. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
strata_start --set num.partitions=8 || tap_abort "stratad starts"
# Not a pipeline: the broker is restarted in here and must stay this shell's child (wait).
res="$STRATA_DIR/results"
{
	"$STRATA_PY" "$top_srcdir/t/clients_kcat.py" "$STRATA_BOOTSTRAP" 2>&1
	"$STRATA_PY" "$top_srcdir/t/clients_py.py" "$STRATA_BOOTSTRAP" confluent 2>&1
	"$STRATA_PY" "$top_srcdir/t/clients_py.py" "$STRATA_BOOTSTRAP" kafka-python 2>&1
	for round in 1 2 3; do
		"$STRATA_PY" "$top_srcdir/t/durability.py" produce "$STRATA_BOOTSTRAP" "$STRATA_PID" \
			"$STRATA_DIR/acked.json" 2>&1
		wait "$STRATA_PID" 2>/dev/null
		STRATA_PID=
		tap_result "broker restarts after SIGKILL ($round)" strata_start_again || break
		"$STRATA_PY" "$top_srcdir/t/durability.py" verify "$STRATA_BOOTSTRAP" \
			"$STRATA_DIR/acked.json" 2>&1
	done
	tap_result "clean shutdown" strata_stop
} > "$res" 2>&1
tap_number < "$res"
