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

PY=$STRATA_PY
WIRE="$top_builddir/t/group-wire"
NM="$top_srcdir/t/node_modules"

tap_skip_without_py confluent_kafka kafka
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

# 1. the wire, every version
if ! strata_start --set group.initial.rebalance.delay.ms=0 --set num.partitions=10; then
	echo "Bail out! stratad does not start"
	exit 1
fi
tap_run "group-wire" "$WIRE" "$STRATA_PORT"
tap_check "clean shutdown after the wire checks" strata_stop
rm -rf "$STRATA_DIR/log"

# 2. real clients; short delays so that the whole file stays quick
if ! strata_start --set group.initial.rebalance.delay.ms=300 --set group.min.session.timeout.ms=1000 \
	--set num.partitions=6; then
	echo "Bail out! stratad does not start"
	exit 1
fi
SD="$STRATA_DIR/state"
mkdir -p "$SD"
# plan-less sub-programs: a printed plan is not expected, so tap_run gets one appended
plan_tail() { "$@"; rc=$?; echo "1..0"; return $rc; }
tap_run "clients" plan_tail "$PY" "$top_srcdir/t/groups_test.py" clients "$STRATA_BOOTSTRAP" "$SD" "$NM"

# 3. clean restart
tap_check "broker restarts cleanly with its groups" strata_restart
tap_run "after-restart" plan_tail "$PY" "$top_srcdir/t/groups_test.py" after-restart "$STRATA_BOOTSTRAP" "$SD"

# 4. SIGKILL while commits are in flight
tap_run "commitloop" plan_tail "$PY" "$top_srcdir/t/groups_test.py" commitloop "$STRATA_BOOTSTRAP" "$SD" "$STRATA_PID"
wait "$STRATA_PID" 2>/dev/null
STRATA_PID=
tap_check "broker restarts after SIGKILL" strata_start_again
tap_run "after-crash" plan_tail "$PY" "$top_srcdir/t/groups_test.py" after-crash "$STRATA_BOOTSTRAP" "$SD"
if grep -q 'loaded [0-9]* groups' "$STRATA_DIR/stratad.log"; then
	echo "# $(grep 'loaded [0-9]* groups' "$STRATA_DIR/stratad.log" | tail -1)"
fi
tap_check "clean shutdown" strata_stop
echo "1..$TAP_N"
