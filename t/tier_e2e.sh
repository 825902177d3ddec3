#!/bin/sh
# t/tier_e2e.sh -- tiered storage end to end on the default file:// bucket (<log.dirs>/../bucket):
# cold reads identical to hot ones (kafka-python, kcat), timestamp seeks into the bucket, a
# restart (with a scrub of planted orphan objects), an object store outage (strata.tier.test.fault.file) with and without a SIGKILL in
# the middle, a damaged object, topic deletion. The checks live in t/tier_test.py; this script
# drives the broker. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
out=$(mktemp)
n=0
emit() { # numbers the plan-less TAP lines
	while IFS= read -r line; do
		case "$line" in
		"ok "*|"not ok "*) n=$((n + 1)); echo "$line" | sed "s/^\(not ok\|ok\) /\1 $n /" ;;
		*) echo "# $line" | sed 's/^# # /# /' ;;
		esac
	done
	echo "$n" > "$out"
}

STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-tier.XXXXXX") || exit 1
FAULT="$STRATA_DIR/bucket-down"
if ! strata_start --set log.retention.check.interval.ms=500 --set strata.tier.chunk.bytes=8192 \
	--set strata.tier.retry.backoff.max.ms=500 --set "strata.tier.test.fault.file=$FAULT"; then
	echo "1..1"
	echo "not ok 1 - stratad starts"
	exit 1
fi
py() { "$STRATA_PY" "$top_srcdir/t/tier_test.py" "$1" "$STRATA_BOOTSTRAP" "$STRATA_DIR" 2>&1; }
# Not a pipeline: the broker is restarted in here and must stay this shell's child (wait).
res="$STRATA_DIR/results"
{
	py hot
	py cold
	py scrub-plant
	if strata_restart; then echo "ok - clean restart"; else echo "not ok - clean restart"; fi
	py restarted
	py scrub-check

	touch "$FAULT"
	py outage-produce
	if grep -q "upload backlog" "$STRATA_DIR/stratad.log"; then echo "ok - the backlog is logged"
	else echo "not ok - the backlog is logged"; fi
	rm -f "$FAULT"
	py outage-restored

	touch "$FAULT"
	if strata_restart; then echo "ok - restart with the bucket down"; else echo "not ok - restart with the bucket down"; fi
	py earliest-down
	py before-kill
	strata_kill9
	rm -f "$FAULT"
	if strata_start_again; then echo "ok - restart after SIGKILL"; else echo "not ok - restart after SIGKILL"; fi
	py after-kill

	py corrupt
	if grep -q "not served" "$STRATA_DIR/stratad.log"; then echo "ok - the damaged object is logged"
	else echo "not ok - the damaged object is logged"; fi
	py delete
	if strata_stop; then echo "ok - clean shutdown"; else echo "not ok - clean shutdown"; fi
} > "$res" 2>&1
emit < "$res"
n=$(cat "$out")
rm -f "$out"
echo "1..$n"
