#!/bin/sh
# t/objstore_s3.sh -- the object store's S3 backend against s3rver on loopback, behind
# t/s3_sigcheck_proxy.py (every SigV4 signature recomputed with botocore; fault injection),
# plus an https proxy for UNSIGNED-PAYLOAD. Runs t/objstore.t's S3 part (its TAP is ours).
# Skips (TAP) when s3rver or botocore is not installed (scripts/deps --test installs both).
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
. "$top_srcdir/t/s3lib.sh"
trap s3_cleanup EXIT
trap 'exit 1' INT TERM

T="$top_builddir/t/objstore.t"
if [ ! -x "$T" ]; then
	echo "1..0 # SKIP $T is not built"
	exit 0
fi
s3_start --tls
rc=$?
if [ "$rc" = 2 ]; then
	echo "1..0 # SKIP s3rver or botocore missing"
	exit 0
fi
[ "$rc" = 0 ] || { echo "Bail out! could not start s3rver and the proxy"; exit 1; }

STRATA_TEST_S3_ENDPOINT=$S3_ENDPOINT \
STRATA_TEST_S3_VHOST_ENDPOINT=$S3_VHOST_ENDPOINT \
STRATA_TEST_S3_TLS_ENDPOINT=$S3_TLS_ENDPOINT \
STRATA_TEST_S3_CA=$S3_CA_FILE \
STRATA_TEST_S3_BUCKET=$S3_BUCKET \
STRATA_TEST_S3_ONLY=1 \
	"$T" 2> "$S3_DIR/objstore.log"
rc=$?
if [ "$rc" != 0 ]; then
	echo "# --- objstore log (last 60 lines) ---"
	tail -n 60 "$S3_DIR/objstore.log" | sed 's/^/#   /'
	s3_dump_logs
fi
exit $rc
