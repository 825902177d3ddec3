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

if [ ! -x "$STRATA_PY" ] || ! "$STRATA_PY" -c 'import confluent_kafka, kafka' 2>/dev/null; then
	echo "1..0 # SKIP $STRATA_PY with confluent_kafka and kafka-python is needed"
	exit 0
fi
trap strata_cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
# py PHASE: the helper's plan-less TAP lines, numbered into this stream.
py() {
	"$STRATA_PY" "$top_srcdir/t/tier_restore.py" "$1" "$STRATA_BOOTSTRAP" "$STRATA_DIR" \
		> "$STRATA_DIR/py.out" 2>&1
	while IFS= read -r line; do
		case "$line" in
		"ok - "*) ok "${line#ok - }";;
		"not ok - "*) not_ok "${line#not ok - }";;
		*) echo "# $line" | sed 's/^# # /# /';;
		esac
	done < "$STRATA_DIR/py.out"
}

STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-restore.XXXXXX") || exit 1
BUCKET_URL="file://$STRATA_DIR/bucket"
TIER="--set strata.tier.url=$BUCKET_URL"

# The first machine: log.dirs=$STRATA_DIR/log (lib.sh's default).
# shellcheck disable=SC2086
if strata_start $TIER --set log.retention.check.interval.ms=500 \
	--set strata.tier.retry.backoff.max.ms=500; then
	ok "stratad started on $BUCKET_URL"
else
	not_ok "stratad started"
	echo "1..$n"
	exit 1
fi
py produce
if strata_stop; then ok "the first broker stopped cleanly"; else not_ok "the first broker stopped cleanly"; fi

# The machine is lost: everything but the bucket goes.
rm -rf "$STRATA_DIR/log" "$STRATA_DIR/tier-cache"
if [ -d "$STRATA_DIR/bucket" ] && [ ! -e "$STRATA_DIR/log" ]; then
	ok "log.dirs removed, the bucket kept"
else
	not_ok "log.dirs removed, the bucket kept"
fi

# A new broker, new log.dirs, same bucket.
# shellcheck disable=SC2086
if strata_start $TIER --set "log.dirs=$STRATA_DIR/log2" --set log.retention.check.interval.ms=500 \
	--set strata.tier.retry.backoff.max.ms=500; then
	ok "a new broker started with log.dirs=$STRATA_DIR/log2 on the same bucket"
else
	not_ok "a new broker started on the same bucket"
	echo "1..$n"
	exit 1
fi
py restore-errors
py restore
if strata_restart; then ok "the restored broker restarted cleanly"; else not_ok "the restored broker restarted"; fi
py after-restart
if strata_stop; then ok "the restored broker stopped cleanly"; else not_ok "the restored broker stopped cleanly"; fi
if grep -E 'ERROR|ASSERT|AddressSanitizer|runtime error' "$STRATA_DIR/stratad.log" > "$STRATA_DIR/errors"; then
	not_ok "no errors in the broker log"
	sed 's/^/#   /' "$STRATA_DIR/errors" | head -20
else
	ok "no errors in the broker log"
fi

# Without tiered storage there is nothing to restore from.
if strata_start --set strata.tier.url=none --set "log.dirs=$STRATA_DIR/log3"; then
	py notier
	if strata_stop; then ok "the untiered broker stopped cleanly"; else not_ok "the untiered broker stopped"; fi
else
	not_ok "an untiered broker started"
fi
echo "1..$n"
