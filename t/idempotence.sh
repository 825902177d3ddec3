#!/bin/sh
# t/idempotence.sh -- the idempotent producer end to end (t/idempotence.py does the work):
#   1. a proxy loses produce answers after the broker wrote the batches: without idempotence
#      the retries duplicate records (control), with enable.idempotence (librdkafka) every
#      record is in the log exactly once;
#   2. the same with the broker SIGKILLed right after a lost answer and restarted: the client's
#      retries are recognised from producer state rebuilt from the log;
#   3. Produce v9 spoken by hand: the same batch twice gets one offset, also after SIGKILL and
#      after a clean restart (snapshot), gaps and older epochs refused.
# TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
PY=/usr/bin/python3
HELPER="$top_srcdir/t/idempotence.py"
out=$(mktemp)
n=0
emit() { # numbers the plan-less TAP lines of the helper
	while IFS= read -r line; do
		case "$line" in
		"ok "*|"not ok "*) n=$((n + 1)); echo "$line" | sed "s/^\(not ok\|ok\) /\1 $n /" ;;
		*) echo "# $line" | sed 's/^# # /# /' ;;
		esac
	done
	echo "$n" > "$out"
}

if ! "$PY" -c 'import confluent_kafka' 2>/dev/null; then
	echo "1..0 # SKIP python3-confluent-kafka is not installed for $PY"
	exit 0
fi
# Clients reach the broker only through the helper's proxy: the broker advertises its port.
PROXY_PORT=$(strata_free_port)
if ! strata_start --set "advertised.listeners=PLAINTEXT://127.0.0.1:$PROXY_PORT"; then
	echo "1..1"
	echo "not ok 1 - stratad starts"
	exit 1
fi
raw_out="$STRATA_DIR/tap.out"
# A brace group with a redirection runs in this shell: restarts update STRATA_PID for cleanup.
{
	"$PY" "$HELPER" cut "$STRATA_PORT" "$PROXY_PORT" 2>&1

	marker="$STRATA_DIR/killed"
	"$PY" "$HELPER" crash "$STRATA_PORT" "$PROXY_PORT" "$STRATA_PID" "$marker" 2>&1 &
	helper=$!
	i=0
	while [ ! -f "$marker" ] && [ $i -lt 600 ] && kill -0 $helper 2>/dev/null; do
		sleep 0.1
		i=$((i + 1))
	done
	if [ -f "$marker" ]; then
		wait "$STRATA_PID" 2>/dev/null
		STRATA_PID=
		if strata_start_again; then echo "ok - broker restarts after SIGKILL"
		else echo "not ok - broker restarts after SIGKILL"; fi
	else
		echo "not ok - the helper SIGKILLed the broker"
	fi
	wait $helper

	state="$STRATA_DIR/raw.json"
	"$PY" "$HELPER" raw "$STRATA_PORT" "$PROXY_PORT" "$state" 1 2>&1
	strata_kill9
	if strata_start_again; then echo "ok - broker restarts after SIGKILL (raw)"
	else echo "not ok - broker restarts after SIGKILL (raw)"; fi
	"$PY" "$HELPER" raw "$STRATA_PORT" "$PROXY_PORT" "$state" 2 2>&1
	if strata_stop; then echo "ok - clean shutdown"; else echo "not ok - clean shutdown"; fi
	snaps=$(ls "$STRATA_DIR/log/idem-raw-0/" 2>/dev/null | grep -c '^[0-9]\{20\}\.snapshot$')
	if [ "$snaps" -ge 1 ]; then echo "ok - clean shutdown wrote a producer snapshot beside the segments"
	else echo "not ok - clean shutdown wrote a producer snapshot ($(ls "$STRATA_DIR/log/idem-raw-0/" | tr '\n' ' '))"; fi
	if strata_start_again; then echo "ok - broker restarts cleanly"
	else echo "not ok - broker restarts cleanly"; fi
	if grep -q 'idem-raw-0 producer state: 1 producers (snapshot at [0-9]' "$STRATA_DIR/stratad.log"; then
		echo "ok - the restart loaded the snapshot"
	else
		echo "not ok - the restart loaded the snapshot"
		grep 'idem-raw-0 producer state' "$STRATA_DIR/stratad.log" | sed 's/^/# /'
	fi
	"$PY" "$HELPER" raw "$STRATA_PORT" "$PROXY_PORT" "$state" 3 2>&1
	if strata_stop; then echo "ok - clean shutdown"; else echo "not ok - clean shutdown"; fi
} > "$raw_out" 2>&1
emit < "$raw_out"
n=$(cat "$out")
rm -f "$out"
echo "1..$n"
[ "$n" -gt 0 ]
