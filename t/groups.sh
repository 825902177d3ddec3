#!/bin/sh
# t/groups.sh -- consumer groups (src/group.c, src/kafka_group.c) against a real stratad: every
# version of every group API on the wire (t/group-wire, the generated codecs as client), then
# real clients (t/groups_test.py: confluent-kafka members as processes that leave, crash and
# restart, eager and cooperative-sticky, static membership, offset reset, a kafka-python group
# next to a kafkajs one, the __consumer_offsets records decoded independently), then a clean
# restart and a SIGKILL during commits: committed offsets are what was acknowledged. TAP.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
. "$top_srcdir/t/lib.sh"

PY=/usr/bin/python3
WIRE="$top_builddir/t/group-wire"
NM="$top_srcdir/t/node_modules"
n=0

if [ ! -x "$PY" ] || ! "$PY" -c 'import confluent_kafka, kafka' 2>/dev/null; then
	echo "1..0 # SKIP $PY with confluent_kafka and kafka-python is needed"
	exit 0
fi
if [ ! -x "$WIRE" ] || [ ! -x "$STRATAD" ]; then
	echo "Bail out! $WIRE or $STRATAD not built (make check builds them)"
	exit 1
fi
if ! command -v node > /dev/null 2>&1 || [ ! -d "$NM/kafkajs" ]; then
	echo "# node or $NM/kafkajs missing (scripts/deps --test): the kafkajs group is skipped"
	NM=
fi

trap strata_cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }

# run_tap DESC CMD...: re-numbers a sub-program's TAP lines into this stream; one that dies
# without its plan or exits non-zero with nothing failed is one more failure.
run_tap() {
	desc=$1; shift
	"$@" > "$STRATA_DIR/sub.out" 2>&1
	rc=$?
	bad=0
	planned=
	while IFS= read -r line; do
		case "$line" in
		"ok "*)
			n=$((n + 1)); rest=${line#ok }; rest=${rest#[0-9]* }; echo "ok $n - ${rest#- }";;
		"not ok "*)
			n=$((n + 1)); bad=1; rest=${line#not ok }; rest=${rest#[0-9]* }; echo "not ok $n - ${rest#- }";;
		1..*) planned=1;;
		"#"*) echo "$line";;
		*) echo "# $line";;
		esac
	done < "$STRATA_DIR/sub.out"
	if [ -z "$planned" ] && [ "$rc" -ne 0 ] || { [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; }; then
		not_ok "$desc finished (exit status $rc)"
		strata_dump_log 40
	fi
}

# 1. the wire, every version
if ! strata_start --set group.initial.rebalance.delay.ms=0 --set num.partitions=10; then
	echo "Bail out! stratad does not start"
	exit 1
fi
run_tap "group-wire" "$WIRE" "$STRATA_PORT"
if strata_stop; then ok "clean shutdown after the wire checks"; else not_ok "clean shutdown after the wire checks"; fi
rm -rf "$STRATA_DIR/log"

# 2. real clients; short delays so that the whole file stays quick
if ! strata_start --set group.initial.rebalance.delay.ms=300 --set group.min.session.timeout.ms=1000 \
	--set num.partitions=6; then
	echo "Bail out! stratad does not start"
	exit 1
fi
SD="$STRATA_DIR/state"
mkdir -p "$SD"
# plan-less sub-programs: a printed plan is not expected, so run_tap gets one appended
plan_tail() { "$@"; rc=$?; echo "1..0"; return $rc; }
run_tap "clients" plan_tail "$PY" "$top_srcdir/t/groups_test.py" clients "$STRATA_BOOTSTRAP" "$SD" "$NM"

# 3. clean restart
if strata_restart; then ok "broker restarts cleanly with its groups"; else not_ok "broker restarts cleanly with its groups"; fi
run_tap "after-restart" plan_tail "$PY" "$top_srcdir/t/groups_test.py" after-restart "$STRATA_BOOTSTRAP" "$SD"

# 4. SIGKILL while commits are in flight
run_tap "commitloop" plan_tail "$PY" "$top_srcdir/t/groups_test.py" commitloop "$STRATA_BOOTSTRAP" "$SD" "$STRATA_PID"
wait "$STRATA_PID" 2>/dev/null
STRATA_PID=
if strata_start_again; then ok "broker restarts after SIGKILL"; else not_ok "broker restarts after SIGKILL"; fi
run_tap "after-crash" plan_tail "$PY" "$top_srcdir/t/groups_test.py" after-crash "$STRATA_BOOTSTRAP" "$SD"
if grep -q 'loaded [0-9]* groups' "$STRATA_DIR/stratad.log"; then
	echo "# $(grep 'loaded [0-9]* groups' "$STRATA_DIR/stratad.log" | tail -1)"
fi
if strata_stop; then ok "clean shutdown"; else not_ok "clean shutdown"; fi
echo "1..$n"
