#!/bin/sh
# t/tier_restore.sh -- a topic recreated from the tier bucket alone (man/strata-bucket.5,
# RESTORE): a broker on a file:// bucket tiers a 3-partition topic; it stops and its whole
# log.dirs is thrown away (a lost machine); a new broker with a new log.dirs on the same bucket
# restores the topic with CreateTopics redpanda.remote.recovery=true: settings, offsets and every
# record as before, producing continues and tiers. Also the refusals (no manifest, bad flag,
# wrong partition count, existing topic, no tiering). The checks live in t/tier_restore.py.
# TAP on stdout.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
. "$top_srcdir/t/lib.sh"

tap_skip_without_py confluent_kafka kafka
trap strata_cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

# py PHASE: the helper's plan-less TAP lines, numbered into this stream.
py() {
	"$STRATA_PY" "$top_srcdir/t/tier_restore.py" "$1" "$STRATA_BOOTSTRAP" "$STRATA_DIR" \
		> "$STRATA_DIR/py.out" 2>&1
	tap_lines < "$STRATA_DIR/py.out"
}

STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-restore.XXXXXX") || exit 1
BUCKET_URL="file://$STRATA_DIR/bucket"
TIER="--set strata.tier.url=$BUCKET_URL"

# The first machine: log.dirs=$STRATA_DIR/log (lib.sh's default).
# shellcheck disable=SC2086
strata_start $TIER --set log.retention.check.interval.ms=500 \
	--set strata.tier.retry.backoff.max.ms=500 || tap_abort "stratad started"
tap_ok "stratad started on $BUCKET_URL"
py produce
tap_check "the first broker stopped cleanly" strata_stop

# The machine is lost: everything but the bucket goes.
rm -rf "$STRATA_DIR/log" "$STRATA_DIR/tier-cache"
if [ -d "$STRATA_DIR/bucket" ] && [ ! -e "$STRATA_DIR/log" ]; then
	tap_ok "log.dirs removed, the bucket kept"
else
	tap_not_ok "log.dirs removed, the bucket kept"
fi

# A new broker, new log.dirs, same bucket.
# shellcheck disable=SC2086
strata_start $TIER --set "log.dirs=$STRATA_DIR/log2" --set log.retention.check.interval.ms=500 \
	--set strata.tier.retry.backoff.max.ms=500 || tap_abort "a new broker started on the same bucket"
tap_ok "a new broker started with log.dirs=$STRATA_DIR/log2 on the same bucket"
py restore-errors
py restore
tap_check "the restored broker restarted cleanly" strata_restart
py after-restart
tap_check "the restored broker stopped cleanly" strata_stop
tap_check "no errors in the broker log" strata_log_clean

# Without tiered storage there is nothing to restore from.
if strata_start --set strata.tier.url=none --set "log.dirs=$STRATA_DIR/log3"; then
	py notier
	tap_check "the untiered broker stopped cleanly" strata_stop
else
	tap_not_ok "an untiered broker started"
fi
echo "1..$TAP_N"
