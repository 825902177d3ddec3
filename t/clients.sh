#!/bin/sh
# t/clients.sh -- unmodified Kafka clients against a real stratad: kcat, python3-confluent-kafka
# and python3-kafka produce and consume 10,000 records per codec over 8 partitions (keys,
# headers, NULL values, per-key order, seek, offsets for a timestamp); acks=all records
# survive SIGKILL of the broker. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
out=$(mktemp)
n=0
emit() { # numbers the plan-less TAP lines of a sub-test
	while IFS= read -r line; do
		case "$line" in
		"ok "*|"not ok "*) n=$((n + 1)); echo "$line" | sed "s/^\(not ok\|ok\) /\1 $n /" ;;
		*) echo "# $line" | sed 's/^# # /# /' ;;
		esac
	done
	echo "$n" > "$out"
}

if ! strata_start --set num.partitions=8; then
	echo "1..1"
	echo "not ok 1 - stratad starts"
	exit 1
fi
{
	"$STRATA_PY" "$top_srcdir/t/clients_kcat.py" "$STRATA_BOOTSTRAP" 2>&1
	"$STRATA_PY" "$top_srcdir/t/clients_py.py" "$STRATA_BOOTSTRAP" confluent 2>&1
	"$STRATA_PY" "$top_srcdir/t/clients_py.py" "$STRATA_BOOTSTRAP" kafka-python 2>&1
	for round in 1 2 3; do
		"$STRATA_PY" "$top_srcdir/t/durability.py" produce "$STRATA_BOOTSTRAP" "$STRATA_PID" \
			"$STRATA_DIR/acked.json" 2>&1
		wait "$STRATA_PID" 2>/dev/null
		STRATA_PID=
		if strata_start_again; then echo "ok - broker restarts after SIGKILL ($round)";
		else echo "not ok - broker restarts after SIGKILL ($round)"; break; fi
		"$STRATA_PY" "$top_srcdir/t/durability.py" verify "$STRATA_BOOTSTRAP" \
			"$STRATA_DIR/acked.json" 2>&1
	done
	if strata_stop; then echo "ok - clean shutdown"; else echo "not ok - clean shutdown"; fi
} | emit
n=$(cat "$out")
rm -f "$out"
echo "1..$n"
