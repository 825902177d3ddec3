#!/bin/sh
# t/bench_smoke.sh -- `strata bench kafka` works: a tiny run of every workload against a stratad
# it starts itself (exit status, report lines, temp dir removed), a run against a running
# broker (--bootstrap: its topics are deleted afterwards), usage errors. No timing assertions:
# the figures are printed, never checked. TAP on stdout.
set -u
: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
. "$top_srcdir/t/lib.sh"

STRATA="$top_builddir/strata"
n=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
check() { # check DESC CONDITION-STATUS
	if [ "$2" -eq 0 ]; then ok "$1"; else not_ok "$1"; fi
}

if [ ! -x "$STRATA" ] || [ ! -x "$STRATAD" ]; then
	echo "Bail out! $STRATA or $STRATAD not built"
	exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/strata-bench-smoke.XXXXXX") || exit 1
cleanup() {
	strata_cleanup
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM PIPE

# --- help and usage ---
"$STRATA" bench --help > "$work/help" 2>&1
check "strata bench --help exits 0" $?
grep -q "strata bench kafka" "$work/help" && grep -q -- "--bootstrap" "$work/help"
check "strata bench --help documents bench kafka" $?
"$STRATA" bench kafka --no-such-option > /dev/null 2>&1
[ $? -eq 2 ]
check "an unknown option is a usage error (2)" $?
"$STRATA" bench kafka --shapes consume > /dev/null 2>&1
[ $? -eq 2 ]
check "consume without throughput is a usage error (2)" $?

# --- every workload, tiny, against a stratad it starts (next to strata) ---
"$STRATA" bench kafka --seconds 1 --warmup 0.3 --rate 5 --fio-size 16M --fio-match-max 64M \
	--loopback-seconds 0.3 --consumers 2 \
	--dir "$work" > "$work/out" 2> "$work/err"
rc=$?
check "strata bench kafka (--start) exits 0" $rc
if [ $rc -ne 0 ]; then
	sed 's/^/#   /' "$work/err" | tail -n 40
fi
sed 's/^/#   /' "$work/out"
grep -q "^strata bench kafka: started stratad pid" "$work/out"
check "it started its own stratad" $?
grep -q "fio seq write (bs 1M" "$work/out" && grep -q "loopback TCP (.*: 1 stream [0-9.]* MB/s" "$work/out"
check "machine limits: fio and loopback measured" $?
grep -q "^  settle after fio: syncfs .* disk flush (4 KiB append + fdatasync): p50 " "$work/out" &&
	grep -q "^  settle after the max-rate topic's deletion" "$work/out"
check "the disk is let settle after fio and after the max-rate topic" $?
[ "$(grep -c '^\[[1-6]\] ' "$work/out")" -eq 6 ] && grep -q '^\[[1-6]\] consume .* 2 librdkafka consumers$' "$work/out" &&
	grep -q '^\[[1-6]\] the same records through a raw Fetch v4 loop, 2 connections' "$work/out" &&
	grep -q '^\[[1-6]\] 100-byte records.*acks=1$' "$work/out" &&
	grep -q '^\[[1-6]\] 100-byte records.*acks=all$' "$work/out"
check "six workload reports (consume: 2 consumers, and the raw Fetch loop)" $?
[ "$(grep -c '^    throughput   [0-9]* records/s  [0-9.]* MB/s' "$work/out")" -eq 6 ]
check "each has a throughput line" $?
grep -q "^    over 5 ms    [0-9]* records (.*worst second #[0-9]*: e2e max" "$work/out"
check "the latency workload reports its slow records and worst second" $?
grep -q "the broker serves (raw Fetch loop)" "$work/out"
check "the raw Fetch loop is compared with loopback (no target)" $?
grep -q "^    end-to-end   p50 [0-9.]* ms  p99 [0-9.]* ms  p99.9 [0-9.]* ms  max [0-9.]* ms" "$work/out"
check "the latency workload has end-to-end percentiles" $?
grep -q "WITH ERRORS" "$work/out"
[ $? -ne 0 ]
check "no workload reports errors" $?
[ "$(grep -c ' PASS$\| MISS$' "$work/out")" -eq 5 ]
check "five targets, each PASS or MISS" $?
[ -z "$(find "$work" -maxdepth 1 -name 'strata-bench-kafka-*' -print)" ]
check "its temp data dir is gone" $?

# --- against a running broker ---
if ! strata_start; then
	not_ok "stratad starts for --bootstrap"
	echo "1..$n"
	exit 1
fi
"$STRATA" bench kafka --bootstrap "$STRATA_BOOTSTRAP" --shapes latency --seconds 0.5 --warmup 0.2 \
	--rate 2 --no-fio --loopback-seconds 0 > "$work/out2" 2> "$work/err2"
rc=$?
check "strata bench kafka --bootstrap exits 0" $rc
if [ $rc -ne 0 ]; then
	sed 's/^/#   /' "$work/err2" | tail -n 40
fi
grep -q "^\[1\] 1-topic-16-partitions-1kb" "$work/out2" && grep -q "^    end-to-end   p50" "$work/out2"
check "--bootstrap: the latency workload reports" $?
if command -v kcat > /dev/null 2>&1; then
	kcat -b "$STRATA_BOOTSTRAP" -L -m 10 > "$work/md" 2>&1
	grep -q 'broker 1 at\|1 brokers' "$work/md" && ! grep -q "strata-bench-" "$work/md"
	check "--bootstrap: its topics are deleted afterwards" $?
fi
strata_stop
check "the broker stops cleanly" $?
echo "1..$n"
