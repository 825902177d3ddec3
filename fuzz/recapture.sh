#!/bin/sh
# fuzz/recapture.sh BUILD_DIR -- regenerates fuzz/corpus/requests and fuzz/corpus/batch from real
# clients: starts BUILD_DIR/stratad behind fuzz/capture.py (the broker advertises the proxy, so
# every request passes it), runs kcat, confluent-kafka, kafka-python and kafkajs through it, then
# extracts the Produce records sections. New files are added next to the existing ones (names are
# content hashes, so nothing duplicates). Not part of the suite: run it by hand, then commit.
set -u
top_srcdir=$(cd "$(dirname "$0")/.." && pwd)
top_builddir=$(cd "${1:?usage: fuzz/recapture.sh BUILD_DIR}" && pwd)
export top_srcdir top_builddir
. "$top_srcdir/t/lib.sh"
req="$top_srcdir/fuzz/corpus/requests"
bat="$top_srcdir/fuzz/corpus/batch"
mkdir -p "$req" "$bat"
proxy_pid=
cleanup() {
	[ -n "$proxy_pid" ] && kill "$proxy_pid" 2>/dev/null
	strata_cleanup
}
trap cleanup EXIT INT TERM

pport=$(strata_free_port)
strata_start --set num.partitions=2 --set "advertised.listeners=PLAINTEXT://127.0.0.1:$pport" || exit 1
"$STRATA_PY" "$top_srcdir/fuzz/capture.py" proxy "$pport" "127.0.0.1:$STRATA_PORT" "$req" &
proxy_pid=$!
sleep 1
bs="127.0.0.1:$pport"

# kcat (librdkafka): metadata, produce per codec, consume, offsets by timestamp, query.
kcat -b "$bs" -L >/dev/null
for z in none gzip snappy lz4 zstd; do
	# Compressible values: librdkafka sends a batch uncompressed when compression does not pay.
	i=0; while [ $i -lt 20 ]; do echo "k$((i % 3)):value-$i $(printf 'abcdefgh%.0s' 1 2 3 4 5 6 7 8 9 10 11 12)";
		i=$((i + 1)); done |
		kcat -b "$bs" -P -t "cap-kcat-$z" -K: -z "$z" -H origin=kcat -X acks=all
done
kcat -b "$bs" -C -t cap-kcat-gzip -o beginning -e -q >/dev/null
now_ms=$(($(date +%s) * 1000))
kcat -b "$bs" -C -t cap-kcat-none -o "s@$((now_ms - 60000))" -e -q >/dev/null
kcat -b "$bs" -Q -t "cap-kcat-none:0:$((now_ms - 60000))" >/dev/null
kcat -b "$bs" -C -t cap-kcat-zstd -o -5 -e -q >/dev/null

timeout 300 "$STRATA_PY" "$top_srcdir/fuzz/capture_clients.py" "$bs"
if [ -d "$top_srcdir/t/node_modules/kafkajs" ]; then
	timeout 120 node "$top_srcdir/fuzz/capture_kafkajs.js" "$bs"
else
	echo "recapture: t/node_modules/kafkajs missing (scripts/deps --test): no kafkajs seeds"
fi

kill "$proxy_pid" 2>/dev/null
wait "$proxy_pid" 2>/dev/null
proxy_pid=
"$STRATA_PY" "$top_srcdir/fuzz/capture.py" batches "$req" "$bat"
echo "recapture: $(ls "$req" | wc -l) request frames, $(ls "$bat" | wc -l) batches," \
	"$(du -sk "$top_srcdir/fuzz/corpus" | cut -f1) KiB"
