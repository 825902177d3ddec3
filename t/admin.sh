#!/bin/sh
# t/admin.sh -- the admin APIs (src/kafka_admin.c) against a real stratad: every version on the
# wire (t/admin-wire, the generated codecs as client), then librdkafka and kafka-python
# (t/admin_test.py), then a restart (topics, settings, log starts and producer ids survive),
# then a broker with delete.topic.enable=false, then topic operations held on the broker's topic
# worker (concurrent creations, Metadata auto-creation, requests served meanwhile, a stop with a
# creation in flight). TAP on stdout.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
. "$top_srcdir/t/lib.sh"

PY=/usr/bin/python3
WIRE="$top_builddir/t/admin-wire"
n=0

if [ ! -x "$PY" ] || ! "$PY" -c 'import confluent_kafka, kafka' 2>/dev/null; then
	echo "1..0 # SKIP $PY with confluent_kafka and kafka-python is needed"
	exit 0
fi
if [ ! -x "$WIRE" ] || [ ! -x "$STRATAD" ]; then
	echo "Bail out! $WIRE or $STRATAD not built (make check builds them)"
	exit 1
fi

trap strata_cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }

# run_tap DESC CMD...: re-numbers a sub-program's TAP lines into this stream; a sub-program that
# dies without its plan, or exits non-zero with nothing failed, is one more failure.
run_tap() {
	desc=$1; shift
	"$@" > "$STRATA_DIR/sub.out" 2>&1
	rc=$?
	bad=0
	planned=
	while IFS= read -r line; do
		case "$line" in
		"ok "*)
			n=$((n + 1)); rest=${line#ok }; echo "ok $n ${rest#* }";;
		"not ok "*)
			n=$((n + 1)); bad=1; rest=${line#not ok }; echo "not ok $n ${rest#* }";;
		1..*) planned=1;;
		"#"*) echo "$line";;
		*) echo "# $line";;
		esac
	done < "$STRATA_DIR/sub.out"
	if [ -z "$planned" ] || { [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; }; then
		not_ok "$desc finished (exit status $rc, plan ${planned:-missing})"
		strata_dump_log 30
	fi
}

if strata_start --set log.segment.bytes=536870912 --set num.partitions=2; then
	ok "stratad started on port $STRATA_PORT"
else
	not_ok "stratad started"
	echo "1..$n"
	exit 1
fi

run_tap "admin-wire run" "$WIRE" "$STRATA_PORT" run "$STRATA_DIR/wire.state"
run_tap "admin_test.py before" "$PY" "$top_srcdir/t/admin_test.py" "$STRATA_BOOTSTRAP" before \
	"$STRATA_DIR/py.state"

if strata_restart; then ok "stratad restarted (clean stop, start)"; else not_ok "stratad restarted"; fi
run_tap "admin_test.py after" "$PY" "$top_srcdir/t/admin_test.py" "$STRATA_BOOTSTRAP" after \
	"$STRATA_DIR/py.state"
run_tap "admin-wire after" "$WIRE" "$STRATA_PORT" after "$STRATA_DIR/wire.state"

if strata_stop && strata_start --set delete.topic.enable=false; then
	ok "stratad restarted with delete.topic.enable=false"
	run_tap "admin-wire nodelete" "$WIRE" "$STRATA_PORT" nodelete
else
	not_ok "stratad restarted with delete.topic.enable=false"
fi

# Topic operations off the reactor (src/broker.c's topic worker): the gate file holds the
# worker before each job while it exists, so the checks can see requests parked and others served.
GATE="$STRATA_DIR/topic.gate"
STRATA_TEST_TOPIC_GATE=$GATE
export STRATA_TEST_TOPIC_GATE
if strata_stop && strata_start --set log.segment.bytes=536870912 --set num.partitions=2; then
	ok "stratad restarted with the topic gate hook"
	run_tap "admin-wire async" "$WIRE" "$STRATA_PORT" async "$GATE"
	# A creation held at the gate while the broker stops: a clean stop, the topic not created.
	"$WIRE" "$STRATA_PORT" hold "$GATE" > "$STRATA_DIR/hold.out" 2>&1 &
	hold_pid=$!
	i=0
	while [ "$i" -lt 300 ] && ! grep -q '^# parked' "$STRATA_DIR/hold.out"; do
		sleep 0.1
		i=$((i + 1))
	done
	if strata_stop; then
		ok "stratad stopped cleanly with a topic creation in flight"
	else
		not_ok "stratad stopped cleanly with a topic creation in flight"
	fi
	wait "$hold_pid"
	run_tap "admin-wire hold" cat "$STRATA_DIR/hold.out"
	rm -f "$GATE"
	unset STRATA_TEST_TOPIC_GATE
	if strata_start_again; then
		run_tap "admin-wire afterhold" "$WIRE" "$STRATA_PORT" afterhold
	else
		not_ok "stratad started again after the held creation"
	fi
else
	not_ok "stratad restarted with the topic gate hook"
	unset STRATA_TEST_TOPIC_GATE
fi

if strata_stop; then ok "stratad stopped cleanly"; else not_ok "stratad stopped cleanly"; fi
if grep -E 'ERROR|ASSERT|AddressSanitizer|runtime error' "$STRATA_DIR/stratad.log" > "$STRATA_DIR/errors"; then
	not_ok "no errors in the broker log"
	sed 's/^/#   /' "$STRATA_DIR/errors" | head -20
else
	ok "no errors in the broker log"
fi
echo "1..$n"
