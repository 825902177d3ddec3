#!/bin/sh
# t/fuzz.sh -- the fuzz targets in the suite. TAP.
#   Every build: replays the seed corpus (fuzz/corpus/requests, fuzz/corpus/batch: frames captured
#   from real clients by fuzz/capture.py) through the targets' LLVMFuzzerTestOneInput with the
#   ordinary compiler (t/fuzz-replay-*; under ASan+UBSan in the sanitizer build).
#   Fuzz build (configure CC=clang --enable-fuzzers): also runs fuzz/fuzz_requests and
#   fuzz/fuzz_batch (libFuzzer, ASan, UBSan), both at once, for STRATA_FUZZ_SECONDS each
#   (default 60) over the corpus. New inputs go to a temp dir (removed); a crashing input is
#   kept as $top_builddir/fuzz/crash-* (reproduce: fuzz/fuzz_X that-file).
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
: "${STRATA_FUZZ_SECONDS:=60}"
corpus="$top_srcdir/fuzz/corpus"
n=0
fails=0
ok() { # ok COND-STATUS DESCRIPTION
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fails=$((fails + 1)); fi
}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata-fuzz.XXXXXX") || exit 1
pids=
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

# The corpus: present, captured seeds for both targets, small.
nreq=$(find "$corpus/requests" -type f 2>/dev/null | wc -l)
nbat=$(find "$corpus/batch" -type f 2>/dev/null | wc -l)
bytes=$(cat "$corpus"/requests/* "$corpus"/batch/* 2>/dev/null | wc -c)
[ "$nreq" -ge 50 ] && [ "$nbat" -ge 10 ]
ok $? "seed corpus has request frames ($nreq) and record batches ($nbat)"
[ "$bytes" -lt 2000000 ]
ok $? "seed corpus is small ($bytes bytes < 2 MB)"

replay() { # replay TARGET
	out="$tmp/replay-$1.log"
	"$top_builddir/t/fuzz-replay-$1" "$corpus/$1" > "$out" 2>&1
	rc=$?
	sed 's/^/# /' "$out" | tail -n 20
	ok $rc "every $1 seed runs through fuzz_$1 cleanly (replay, no libFuzzer)"
}
for t in requests batch; do
	if [ -x "$top_builddir/t/fuzz-replay-$t" ]; then
		replay "$t"
	else
		ok 1 "t/fuzz-replay-$t is built"
	fi
done

if [ -x "$top_builddir/fuzz/fuzz_requests" ] && [ -x "$top_builddir/fuzz/fuzz_batch" ]; then
	echo "# fuzz build: libFuzzer for ${STRATA_FUZZ_SECONDS}s per target (in parallel)"
	for t in requests batch; do
		mkdir -p "$tmp/new-$t"
		# ASAN_OPTIONS from the caller (e.g. abort_on_error) stay; leaks are errors here.
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1" \
		"$top_builddir/fuzz/fuzz_$t" -max_total_time="$STRATA_FUZZ_SECONDS" \
			-rss_limit_mb=2048 -timeout=10 -max_len=8192 -print_final_stats=1 \
			-artifact_prefix="$top_builddir/fuzz/" "$tmp/new-$t" "$corpus/$t" \
			> "$tmp/fuzz-$t.log" 2>&1 &
		pids="$pids $!"
		eval "pid_$t=$!"
	done
	for t in requests batch; do
		eval "wait \$pid_$t"
		rc=$?
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/fuzz-$t.log")
		cov=$(grep -o 'cov: [0-9]*' "$tmp/fuzz-$t.log" | tail -n 1)
		if [ "$rc" -ne 0 ]; then
			echo "# fuzz_$t exited with status $rc; its log ends:"
			grep -v '^"' "$tmp/fuzz-$t.log" | tail -n 60 | sed 's/^/#   /'
			ls "$top_builddir"/fuzz/crash-* "$top_builddir"/fuzz/leak-* \
				"$top_builddir"/fuzz/timeout-* "$top_builddir"/fuzz/oom-* 2>/dev/null |
				sed 's/^/# kept: /'
		fi
		ok $rc "fuzz_$t: ${STRATA_FUZZ_SECONDS}s of libFuzzer, no crash, leak or UB (${runs:-?} runs, ${cov:-cov: ?})"
	done
	pids=
else
	echo "# not a fuzz build (configure CC=clang --enable-fuzzers): seeds replayed only"
fi

echo "1..$n"
[ "$fails" -eq 0 ]
