#!/bin/sh
# t/tier_e2e.sh -- tiered storage end to end on the default file:// bucket (<log.dirs>/../bucket):
# cold reads identical to hot ones (kafka-python, kcat), timestamp seeks into the bucket, a
# restart (with a scrub of planted orphan objects), an object store outage (strata.tier.test.fault.file) with and without a SIGKILL in
# the middle, a damaged object, topic deletion. The checks live in t/tier_test.py; this script
# drives the broker. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-tier.XXXXXX") || exit 1
FAULT="$STRATA_DIR/bucket-down"
strata_start --set log.retention.check.interval.ms=500 --set strata.tier.chunk.bytes=8192 \
	--set strata.tier.retry.backoff.max.ms=500 --set "strata.tier.test.fault.file=$FAULT" ||
	tap_abort "stratad starts"
py() { "$STRATA_PY" "$top_srcdir/t/tier_test.py" "$1" "$STRATA_BOOTSTRAP" "$STRATA_DIR" 2>&1; }
# Not a pipeline: the broker is restarted in here and must stay this shell's child (wait).
res="$STRATA_DIR/results"
{
	py hot
	py cold
	py scrub-plant
	tap_result "clean restart" strata_restart
	py restarted
	py scrub-check

	touch "$FAULT"
	py outage-produce
	tap_result "the backlog is logged" grep -q "upload backlog" "$STRATA_DIR/stratad.log"
	rm -f "$FAULT"
	py outage-restored

	touch "$FAULT"
	tap_result "restart with the bucket down" strata_restart
	py earliest-down
	py before-kill
	strata_kill9
	rm -f "$FAULT"
	tap_result "restart after SIGKILL" strata_start_again
	py after-kill

	py corrupt
	tap_result "the damaged object is logged" grep -q "not served" "$STRATA_DIR/stratad.log"
	py delete
	tap_result "clean shutdown" strata_stop
} > "$res" 2>&1
tap_number < "$res"
