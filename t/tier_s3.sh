#!/bin/sh
# t/tier_s3.sh -- tiered storage on the S3 backend: s3rver on loopback behind the SigV4-checking
# proxy (t/s3lib.sh). Records go cold into the S3 bucket and are read back identical with
# kafka-python and kcat, timestamp seeks, across a restart; every request's signature checks.
# Skips (TAP) when s3rver or botocore is not installed. The checks are t/tier_test.py's.
. "$top_srcdir/t/lib.sh"
. "$top_srcdir/t/s3lib.sh"
cleanup() { strata_cleanup; s3_cleanup; }
trap cleanup EXIT INT TERM
s3_start
rc=$?
if [ "$rc" = 2 ]; then
	echo "1..0 # SKIP s3rver or botocore missing"
	exit 0
fi
[ "$rc" = 0 ] || { echo "Bail out! could not start s3rver and the proxy"; exit 1; }
n=0
emit() { # numbers the plan-less TAP lines
	while IFS= read -r line; do
		case "$line" in
		"ok "*|"not ok "*) n=$((n + 1)); echo "$line" | sed "s/^\(not ok\|ok\) /\1 $n /" ;;
		*) echo "# $line" | sed 's/^# # /# /' ;;
		esac
	done
}
STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-tier-s3.XXXXXX") || exit 1
if ! strata_start --set log.retention.check.interval.ms=500 --set strata.tier.chunk.bytes=8192 \
	--set "strata.tier.url=s3://$S3_BUCKET/tiered" --set "strata.tier.s3.endpoint=$S3_ENDPOINT" \
	--set strata.tier.s3.path.style=true --set strata.tier.retry.backoff.max.ms=500; then
	echo "1..1"
	echo "not ok 1 - stratad starts with an s3:// bucket"
	exit 1
fi
py() { TIER_S3=1 "$STRATA_PY" "$top_srcdir/t/tier_test.py" "$1" "$STRATA_BOOTSTRAP" "$STRATA_DIR" 2>&1; }
res="$STRATA_DIR/results"
{
	py hot
	py cold
	if strata_restart; then echo "ok - clean restart"; else echo "not ok - clean restart"; fi
	py restarted
	if strata_stop; then echo "ok - clean shutdown"; else echo "not ok - clean shutdown"; fi
	v=$(s3_stat verified)
	m=$(s3_stat mismatch)
	if [ "${v:-0}" -gt 0 ] && [ "${m:-1}" = 0 ]; then echo "ok - $v S3 requests, every signature valid"
	else echo "not ok - S3 requests signed correctly (verified ${v:-?}, mismatch ${m:-?})"; fi
} > "$res" 2>&1
emit < "$res"
echo "1..$n"
