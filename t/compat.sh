#!/bin/sh
# t/compat.sh -- Strata's partition directories against Apache Kafka's on-disk format, both
# ways, refereed by t/kafka_segment_reader.py (written from Kafka's format description only):
#   1. the referee itself catches damage (CRC, torn batch, bad index / time index entries);
#   2. Strata writes (t/compat-driver write: rolls, codecs, keys, null values, headers,
#      CreateTime and LogAppendTime), the referee checks every batch, record and index entry;
#   3. the python writer lays out a directory as Kafka does, Strata opens it, reads every
#      batch byte-exact, answers timestamp lookups, appends on top; the referee re-checks.
# TAP on stdout. Needs /usr/bin/python3 (Debian's; its codec modules are optional).
set -u
: "${top_srcdir:=$(dirname "$0")/..}"
: "${top_builddir:=.}"
PY=/usr/bin/python3
REF="$top_srcdir/t/kafka_segment_reader.py"
DRIVER="$top_builddir/t/compat-driver"

if [ ! -x "$PY" ]; then
	echo "1..0 # SKIP $PY not found"
	exit 0
fi
if [ ! -x "$DRIVER" ]; then
	echo "Bail out! $DRIVER not built (make check builds it)"
	exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/strata-compat-XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT INT TERM
n=0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); echo "not ok $n - $1"; }
diag_file() { sed 's/^/# /' "$1" | tail -n "${2:-40}"; }

# expect_ok DESC CMD...: one test line; the command's output is shown when it fails
expect_ok() {
	desc=$1; shift
	if "$@" > "$tmp/out" 2>&1; then ok "$desc"; else not_ok "$desc"; diag_file "$tmp/out"; fi
}
# expect_fail DESC CMD...: the command must exit non-zero (the referee must catch damage)
expect_fail() {
	desc=$1; shift
	if "$@" > "$tmp/out" 2>&1; then not_ok "$desc"; diag_file "$tmp/out" 20
	else ok "$desc"; "$PY" -c "import json,sys; print('# caught:', json.load(open(sys.argv[1]))['errors'][0])" "$tmp/out" 2>/dev/null; fi
}
# run_driver CMD...: re-numbers the driver's TAP lines into this stream
run_driver() {
	"$@" > "$tmp/drv" 2>&1
	rc=$?
	failed=0
	while IFS= read -r line; do
		case $line in
		"ok "*) rest=${line#ok }; rest=${rest#* }; n=$((n + 1)); echo "ok $n $rest" ;;
		"not ok "*) rest=${line#not ok }; rest=${rest#* }; n=$((n + 1)); echo "not ok $n $rest"; failed=1 ;;
		"Bail out!"*) not_ok "driver: $line"; failed=1 ;;
		1..*) ;;
		"#"*) echo "$line" ;;
		*) echo "# $line" ;;
		esac
	done < "$tmp/drv"
	if [ $rc -ne 0 ] && [ $failed -eq 0 ]; then not_ok "driver exited with status $rc: $*"; fi
}
# json_check DESC FILE PYTHON-EXPR: an assertion over the referee's JSON summary (as j)
json_check() {
	if "$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if ($3) else 1)" "$2" 2>"$tmp/err"
	then ok "$1"; else not_ok "$1"; diag_file "$tmp/err" 5; fi
}

codecs=$("$PY" -c "
import importlib.util as u
c=['none','gzip']
for name, mod in (('snappy','snappy'),('lz4','lz4.frame'),('zstd','zstandard')):
    try:
        if u.find_spec(mod): c.append(name)
    except ModuleNotFoundError: pass
print(','.join(c))")
echo "# python codecs: $codecs"

# ---- 1. the referee catches damage --------------------------------------------------------
"$PY" "$REF" write "$tmp/ref" --manifest "$tmp/ref.m" --batches 120 --codecs "$codecs" --seed 5 > /dev/null
expect_ok "referee: accepts its own Kafka-layout directory" \
	"$PY" "$REF" read "$tmp/ref" --expect "$tmp/ref.m" --index-interval 4096
seg=$(ls "$tmp/ref" | grep '\.log$' | sed -n 2p)
seg=${seg%.log}

cp -r "$tmp/ref" "$tmp/bad1"
size=$(stat -c %s "$tmp/bad1/$seg.log")
printf '\377' | dd of="$tmp/bad1/$seg.log" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
expect_fail "referee: a flipped byte in a .log fails the CRC-32C" "$PY" "$REF" read "$tmp/bad1"

cp -r "$tmp/ref" "$tmp/bad2"
truncate -s $((size - 7)) "$tmp/bad2/$seg.log"
expect_fail "referee: a torn last batch is reported" "$PY" "$REF" read "$tmp/bad2"

cp -r "$tmp/ref" "$tmp/bad3"
isize=$(stat -c %s "$tmp/bad3/$seg.index")
if [ "$isize" -ge 8 ]; then
	# position of the first entry + 1: no longer a batch boundary
	"$PY" -c "
import struct,sys
p=sys.argv[1]; b=bytearray(open(p,'rb').read())
rel,pos=struct.unpack_from('>iI',b,0); struct.pack_into('>iI',b,0,rel,pos+1); open(p,'wb').write(b)" "$tmp/bad3/$seg.index"
	expect_fail "referee: an index entry off a batch boundary is reported" "$PY" "$REF" read "$tmp/bad3"
else
	not_ok "referee: segment $seg has no index entry to damage"
fi

cp -r "$tmp/ref" "$tmp/bad4"
"$PY" -c "
import struct,sys
p=sys.argv[1]; b=bytearray(open(p,'rb').read())
b += struct.pack('>qi', 1, 0)  # an entry older than the ones before
open(p,'wb').write(b)" "$tmp/bad4/$seg.timeindex"
expect_fail "referee: a time index going back in time is reported" "$PY" "$REF" read "$tmp/bad4"

# ---- 2. Strata writes, the referee reads ---------------------------------------------------
run_driver "$DRIVER" write "$tmp/s1" "$tmp/s1.m" --seed 11 --batches 400 --segment-bytes 49152
expect_ok "referee: Strata's CreateTime directory (every batch, record, index entry)" \
	"$PY" "$REF" read "$tmp/s1" --expect "$tmp/s1.m" --index-interval 4096
cp "$tmp/out" "$tmp/s1.json"
json_check "Strata CreateTime dir: >3 segments, 400 batches, no gaps, every record compared" "$tmp/s1.json" \
	"j['total']['segments'] > 3 and j['total']['batches'] == 400 and j['total']['gaps'] == 0 and j['manifest']['records_matched'] + j['manifest']['records_not_decoded'] == j['manifest']['records_expected'] > 0"
json_check "Strata CreateTime dir: each segment is named by its first batch's base offset" "$tmp/s1.json" \
	"all(s.get('first_batch_is_base') for s in j['segments'])"
json_check "Strata CreateTime dir: all five codecs present" "$tmp/s1.json" \
	"set(j['total']['codecs']) == {'none','gzip','snappy','lz4','zstd'}"
json_check "Strata CreateTime dir: index and time index entries exist" "$tmp/s1.json" \
	"sum(s['index_entries'] for s in j['segments']) > 10 and all(s['timeindex_entries'] >= 1 for s in j['segments'])"

run_driver "$DRIVER" write "$tmp/s2" "$tmp/s2.m" --lat --seed 12 --batches 200 --segment-bytes 65536
expect_ok "referee: Strata's LogAppendTime directory" \
	"$PY" "$REF" read "$tmp/s2" --expect "$tmp/s2.m" --index-interval 4096
cp "$tmp/out" "$tmp/s2.json"
json_check "Strata LogAppendTime dir: every batch flagged LogAppendTime" "$tmp/s2.json" \
	"j['total']['log_append_time_batches'] == j['total']['batches'] == 200 and j['total']['gaps'] == 0"

# ---- 3. Kafka layout written by python, Strata reads and appends ---------------------------
"$PY" "$REF" write "$tmp/k1" --manifest "$tmp/k1.m" --batches 300 --codecs "$codecs" --seed 21 \
	--segment-bytes 65536 > /dev/null
run_driver "$DRIVER" read "$tmp/k1" "$tmp/k1.m" "$tmp/k1.more"
cat "$tmp/k1.m" "$tmp/k1.more" > "$tmp/k1.all"
expect_ok "referee: the Kafka-layout directory after Strata appended to it" \
	"$PY" "$REF" read "$tmp/k1" --expect "$tmp/k1.all" --index-interval 4096

"$PY" "$REF" write "$tmp/k2" --manifest "$tmp/k2.m" --batches 150 --codecs "$codecs" --seed 22 \
	--segment-bytes 40000 --base-offset 1000 --log-append-time > /dev/null
run_driver "$DRIVER" read "$tmp/k2" "$tmp/k2.m" "$tmp/k2.more" --lat
cat "$tmp/k2.m" "$tmp/k2.more" > "$tmp/k2.all"
expect_ok "referee: Kafka-layout LogAppendTime directory from offset 1000, after Strata's appends" \
	"$PY" "$REF" read "$tmp/k2" --expect "$tmp/k2.all" --index-interval 4096

echo "1..$n"
