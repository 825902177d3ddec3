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
PY=$STRATA_PY
HELPER="$top_srcdir/t/recompress_test.py"
tap_skip_without_py confluent_kafka kafka snappy lz4.frame zstandard
strata_start || tap_abort "stratad starts"
raw_out="$STRATA_DIR/tap.out"
{
	"$PY" "$HELPER" run "$STRATA_BOOTSTRAP" "$STRATA_DIR/state.json" 2>&1
	tap_result "clean shutdown" strata_stop
	# (an --enable-sanitizers build reports into the broker's log)
	tap_result "no sanitizer reports in the broker log" \
		strata_log_clean 'runtime error|AddressSanitizer|LeakSanitizer'
	if [ -f "$STRATA_DIR/state.json" ]; then
		"$PY" "$HELPER" disk "$STRATA_DIR/log" "$STRATA_DIR/state.json" 2>&1
	else
		echo "not ok - the run step left its state"
	fi
} > "$raw_out" 2>&1
if grep -q '^not ok' "$raw_out"; then strata_dump_log 40 >> "$raw_out"; fi
tap_number < "$raw_out"
