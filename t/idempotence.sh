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
PY=$STRATA_PY
HELPER="$top_srcdir/t/idempotence.py"
tap_skip_without_py confluent_kafka
# Clients reach the broker only through the helper's proxy: the broker advertises its port.
PROXY_PORT=$(strata_free_port)
strata_start --set "advertised.listeners=PLAINTEXT://127.0.0.1:$PROXY_PORT" || tap_abort "stratad starts"
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
		tap_result "broker restarts after SIGKILL" strata_start_again
	else
		echo "not ok - the helper SIGKILLed the broker"
	fi
	wait $helper

	state="$STRATA_DIR/raw.json"
	"$PY" "$HELPER" raw "$STRATA_PORT" "$PROXY_PORT" "$state" 1 2>&1
	strata_kill9
	tap_result "broker restarts after SIGKILL (raw)" strata_start_again
	"$PY" "$HELPER" raw "$STRATA_PORT" "$PROXY_PORT" "$state" 2 2>&1
	tap_result "clean shutdown" strata_stop
	snaps=$(ls "$STRATA_DIR/log/idem-raw-0/" 2>/dev/null | grep -c '^[0-9]\{20\}\.snapshot$')
	if [ "$snaps" -ge 1 ]; then echo "ok - clean shutdown wrote a producer snapshot beside the segments"
	else echo "not ok - clean shutdown wrote a producer snapshot ($(ls "$STRATA_DIR/log/idem-raw-0/" | tr '\n' ' '))"; fi
	tap_result "broker restarts cleanly" strata_start_again
	if grep -q 'idem-raw-0 producer state: 1 producers (snapshot at [0-9]' "$STRATA_DIR/stratad.log"; then
		echo "ok - the restart loaded the snapshot"
	else
		echo "not ok - the restart loaded the snapshot"
		grep 'idem-raw-0 producer state' "$STRATA_DIR/stratad.log" | sed 's/^/# /'
	fi
	"$PY" "$HELPER" raw "$STRATA_PORT" "$PROXY_PORT" "$state" 3 2>&1
	tap_result "clean shutdown" strata_stop
} > "$raw_out" 2>&1
tap_number < "$raw_out"
