#!/bin/sh
# t/recompress.sh -- topic compression.type end to end (t/recompress_test.py does the work):
# topics with compression.type producer/uncompressed/gzip/snappy/lz4/zstd get records from
# producers of every codec; two clients read them back identical; after a clean shutdown the
# segment files are parsed by t/kafka_segment_reader.py: every batch is stored in the topic's
# codec (the producer's for `producer`), CRC valid, records, producer ids and sequences kept.
# Also Kafka's zstd rule for old fetchers, error precedence and max.message.bytes after
# recompression, LogAppendTime. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
PY=/usr/bin/python3
HELPER="$top_srcdir/t/recompress_test.py"
out=$(mktemp)
n=0
emit() { # numbers the plan-less TAP lines of the helper
	while IFS= read -r line; do
		case "$line" in
		"ok "*|"not ok "*) n=$((n + 1)); echo "$line" | sed "s/^\(not ok\|ok\) /\1 $n /" ;;
		*) echo "# $line" | sed 's/^# # /# /' ;;
		esac
	done
	echo "$n" > "$out"
}

if ! "$PY" -c 'import confluent_kafka, kafka, snappy, lz4.frame, zstandard' 2>/dev/null; then
	echo "1..0 # SKIP needs python3-confluent-kafka, python3-kafka, python3-snappy, python3-lz4, python3-zstandard for $PY"
	rm -f "$out"
	exit 0
fi
if ! strata_start; then
	echo "1..1"
	echo "not ok 1 - stratad starts"
	rm -f "$out"
	exit 1
fi
raw_out="$STRATA_DIR/tap.out"
{
	"$PY" "$HELPER" run "$STRATA_BOOTSTRAP" "$STRATA_DIR/state.json" 2>&1
	if strata_stop; then echo "ok - clean shutdown"; else echo "not ok - clean shutdown"; fi
	# (an --enable-sanitizers build reports into the broker's log)
	if grep -q 'runtime error\|AddressSanitizer\|LeakSanitizer' "$STRATA_DIR/stratad.log"; then
		echo "not ok - no sanitizer reports in the broker log"
		grep -A 20 'runtime error\|AddressSanitizer\|LeakSanitizer' "$STRATA_DIR/stratad.log" |
			head -40 | sed 's/^/# /'
	else
		echo "ok - no sanitizer reports in the broker log"
	fi
	if [ -f "$STRATA_DIR/state.json" ]; then
		"$PY" "$HELPER" disk "$STRATA_DIR/log" "$STRATA_DIR/state.json" 2>&1
	else
		echo "not ok - the run step left its state"
	fi
} > "$raw_out" 2>&1
emit < "$raw_out"
n=$(cat "$out")
rm -f "$out"
if grep -q '^not ok' "$raw_out"; then strata_dump_log 40; fi
echo "1..$n"
[ "$n" -gt 0 ]
