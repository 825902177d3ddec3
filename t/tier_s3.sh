#!/bin/sh
# t/tier_s3.sh -- tiered storage on the S3 backend: s3rver on loopback behind the SigV4-checking
# proxy (t/s3lib.sh), the same phases as t/tier_e2e.sh (checks in t/tier_test.py, which reads and
# writes the bucket through botocore here): cold reads identical to hot ones (kafka-python,
# kcat), timestamp seeks, a restart with a scrub of planted orphan objects; a real outage
# (s3rver stopped while producing: no produce errors, no local deletion of what is not in the
# manifest; started again: the backlog uploads, local retention catches up); a restart with
# s3rver down, then SIGKILL while a segment upload is in flight (the proxy holds its .log PUT):
# the upload is redone; a damaged object fails only the fetch that needs it; topic deletion
# empties the bucket. Every S3 request's signature must check. Skips (TAP) when s3rver or
# botocore is not installed.
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
STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-tier-s3.XXXXXX") || exit 1
strata_start --set log.retention.check.interval.ms=500 --set strata.tier.chunk.bytes=8192 \
	--set "strata.tier.url=s3://$S3_BUCKET/tiered" --set "strata.tier.s3.endpoint=$S3_ENDPOINT" \
	--set strata.tier.s3.path.style=true --set strata.tier.retry.backoff.max.ms=500 ||
	tap_abort "stratad starts with an s3:// bucket"
py() { TIER_S3=1 "$STRATA_PY" "$top_srcdir/t/tier_test.py" "$1" "$STRATA_BOOTSTRAP" "$STRATA_DIR" 2>&1; }
log_lines() { wc -l < "$STRATA_DIR/stratad.log"; }
logged_since() { tail -n +"$(($1 + 1))" "$STRATA_DIR/stratad.log" | grep -q "$2"; }
# Waits (bounded, 60 s) until proxy counter $1 is above $2.
stat_above() {
	_i=0
	while [ "$_i" -lt 300 ]; do
		[ "$(s3_stat "$1")" -gt "$2" ] 2>/dev/null && return 0
		sleep 0.2
		_i=$((_i + 1))
	done
	return 1
}
# Not a pipeline: the broker and s3rver are restarted in here and must stay this shell's children.
res="$STRATA_DIR/results"
{
	py hot
	py cold
	py scrub-plant
	tap_result "clean restart" strata_restart
	py restarted
	py scrub-check

	# An outage while producing: s3rver itself stops; the proxy answers 503 meanwhile.
	py mark
	e0=$(s3_stat upstream_errors)
	l0=$(log_lines)
	tap_result "s3rver stopped" s3rver_stop
	py outage-produce
	tap_result "the backlog is logged" logged_since "$l0" "upload backlog"
	tap_result "stratad's S3 requests failed during the outage (proxy: upstream down)" \
		stat_above upstream_errors "${e0:-0}"
	tap_result "s3rver started again on port $S3RVER_PORT" s3rver_start
	py outage-restored

	# Down across a restart, then SIGKILL with an upload half done: its index objects are in
	# the bucket, its .log PUT is held by the proxy when the broker dies.
	py mark
	tap_result "s3rver stopped again" s3rver_stop
	tap_result "restart with the bucket down" strata_restart
	py earliest-down
	py before-kill
	f0=$(s3_stat faults)
	tap_result "the proxy will hold the next .log PUT for 3 s" \
		s3_proxy_ctl 'fault?action=delay&method=PUT&match=.log&count=1&delay_ms=3000'
	tap_result "s3rver started again" s3rver_start
	tap_result "a segment upload reached its .log PUT (held by the proxy)" stat_above faults "${f0:-0}"
	strata_kill9
	s3_proxy_ctl clear
	py killed-mid-upload
	tap_result "restart after SIGKILL" strata_start_again
	py after-kill

	py corrupt
	tap_result "the damaged object is logged" grep -q "not served" "$STRATA_DIR/stratad.log"
	py delete
	tap_result "clean shutdown" strata_stop
	v=$(s3_stat verified)
	m=$(s3_stat mismatch)
	if [ "${v:-0}" -gt 0 ] && [ "${m:-1}" = 0 ]; then echo "ok - $v S3 requests, every signature valid"
	else echo "not ok - S3 requests signed correctly (verified ${v:-?}, mismatch ${m:-?})"; fi
} > "$res" 2>&1
tap_number < "$res"
