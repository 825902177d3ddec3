#!/bin/sh
# t/admin.sh -- the admin APIs (src/kafka_admin.c) against a real stratad: every version on the
# wire (t/admin-wire, the generated codecs as client), then librdkafka and kafka-python
# (t/admin_test.py), then a restart (topics, settings, log starts and producer ids survive),
# then a broker with delete.topic.enable=false, then topic operations held on the broker's topic
# worker (concurrent creations, Metadata auto-creation, settings changes, requests served
# meanwhile, a stop with a creation in flight; settings changed while held survive a restart).
# TAP on stdout.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
. "$top_srcdir/t/lib.sh"

PY=$STRATA_PY
WIRE="$top_builddir/t/admin-wire"

tap_skip_without_py confluent_kafka kafka
if [ ! -x "$WIRE" ] || [ ! -x "$STRATAD" ]; then
	echo "Bail out! $WIRE or $STRATAD not built (make check builds them)"
	exit 1
fi

trap strata_cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

strata_start --set log.segment.bytes=536870912 --set num.partitions=2 || tap_abort "stratad started"
tap_ok "stratad started on port $STRATA_PORT"

tap_run "admin-wire run" "$WIRE" "$STRATA_PORT" run "$STRATA_DIR/wire.state"
tap_run "admin_test.py before" "$PY" "$top_srcdir/t/admin_test.py" "$STRATA_BOOTSTRAP" before \
	"$STRATA_DIR/py.state"

if strata_restart; then tap_ok "stratad restarted (clean stop, start)"; else tap_not_ok "stratad restarted"; fi
tap_run "admin_test.py after" "$PY" "$top_srcdir/t/admin_test.py" "$STRATA_BOOTSTRAP" after \
	"$STRATA_DIR/py.state"
tap_run "admin-wire after" "$WIRE" "$STRATA_PORT" after "$STRATA_DIR/wire.state"

if strata_stop && strata_start --set delete.topic.enable=false; then
	tap_ok "stratad restarted with delete.topic.enable=false"
	tap_run "admin-wire nodelete" "$WIRE" "$STRATA_PORT" nodelete
else
	tap_not_ok "stratad restarted with delete.topic.enable=false"
fi

# Topic operations off the reactor (src/broker.c's topic worker): the gate file holds the
# worker before each job while it exists, so the checks can see requests parked and others served.
GATE="$STRATA_DIR/topic.gate"
STRATA_TEST_TOPIC_GATE=$GATE
export STRATA_TEST_TOPIC_GATE
if strata_stop && strata_start --set log.segment.bytes=536870912 --set num.partitions=2; then
	tap_ok "stratad restarted with the topic gate hook"
	tap_run "admin-wire async" "$WIRE" "$STRATA_PORT" async "$GATE"
	tap_run "admin_test.py held" "$PY" "$top_srcdir/t/admin_test.py" "$STRATA_BOOTSTRAP" held "$GATE"
	# A creation held at the gate while the broker stops: a clean stop, the topic not created.
	"$WIRE" "$STRATA_PORT" hold "$GATE" > "$STRATA_DIR/hold.out" 2>&1 &
	hold_pid=$!
	i=0
	while [ "$i" -lt 300 ] && ! grep -q '^# parked' "$STRATA_DIR/hold.out"; do
		sleep 0.1
		i=$((i + 1))
	done
	if strata_stop; then
		tap_ok "stratad stopped cleanly with a topic creation in flight"
	else
		tap_not_ok "stratad stopped cleanly with a topic creation in flight"
	fi
	wait "$hold_pid"
	tap_run "admin-wire hold" cat "$STRATA_DIR/hold.out"
	rm -f "$GATE"
	unset STRATA_TEST_TOPIC_GATE
	if strata_start_again; then
		tap_run "admin-wire afterhold" "$WIRE" "$STRATA_PORT" afterhold
		tap_run "admin_test.py afterheld" "$PY" "$top_srcdir/t/admin_test.py" "$STRATA_BOOTSTRAP" \
			afterheld -
	else
		tap_not_ok "stratad started again after the held creation"
	fi
else
	tap_not_ok "stratad restarted with the topic gate hook"
	unset STRATA_TEST_TOPIC_GATE
fi

tap_check "stratad stopped cleanly" strata_stop
tap_check "no errors in the broker log" strata_log_clean
echo "1..$TAP_N"
