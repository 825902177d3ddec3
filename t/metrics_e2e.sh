#!/bin/sh
# t/metrics_e2e.sh -- the metrics endpoint of a real stratad (metrics.listener): Prometheus text that
# an independent parser (prometheus_client) accepts, the tier upload backlog rising during an
# object store outage (strata.tier.test.fault.file) and back to 0 once the bucket is back,
# health checks, 404/400/405, a taken port failing the start, metrics.listener=none. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
echo "1..23"
n=0
t() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

# http PATH [PORT]: "<status> <content type>" on the first line, then the body.
http() {
	"$STRATA_PY" - "${2:-$STRATA_METRICS_PORT}" "$1" <<'PY'
import sys, urllib.request, urllib.error
url = 'http://127.0.0.1:%s%s' % (sys.argv[1], sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    r = opener.open(url, timeout=10)
except urllib.error.HTTPError as e:
    r = e
except OSError as e:
    print('error %s' % e)
    sys.exit(0)
print(r.status, r.headers.get('Content-Type'))
sys.stdout.write(r.read().decode())
PY
}
# status PATH [PORT]: the status code alone ("error" when nothing answers).
status() { http "$@" | awk 'NR == 1 { print $1 }'; }
# metric NAME: the value of the unlabelled series NAME (empty when absent).
metric() { http /metrics | awk -v n="$1" '$1 == n { print $2 }'; }
# wait_metric NAME CMP VALUE TENTHS: polls until "metric CMP VALUE" (test -gt/-eq...) holds.
wait_metric() {
	_i=0
	while [ "$_i" -lt "$4" ]; do
		_v=$(metric "$1")
		if [ -n "$_v" ] && [ "$_v" "$2" "$3" ]; then return 0; fi
		sleep 0.1
		_i=$((_i + 1))
	done
	echo "# $1 = '${_v}' after $(($4 / 10)) s (wanted $2 $3)"
	return 1
}
# raw BYTES: sends BYTES (printf format) on a plain socket; prints the status code.
raw() {
	"$STRATA_PY" - "$STRATA_METRICS_PORT" "$1" <<'PY'
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)
s.sendall(sys.argv[2].encode().decode('unicode_escape').encode('latin-1'))
data = b''
while True:
    d = s.recv(65536)
    if not d:
        break
    data += d
print(data.split(b' ')[1].decode() if data.startswith(b'HTTP/1.1 ') else 'none')
PY
}

STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-metrics.XXXXXX") || exit 1
FAULT="$STRATA_DIR/bucket-down"
TOPIC=metrics-backlog
strata_start --set strata.tier.retry.backoff.max.ms=300 --set "strata.tier.test.fault.file=$FAULT"
t $? "stratad starts (metrics on 127.0.0.1:$STRATA_METRICS_PORT)"
grep -q "serving metrics and health checks on http://127.0.0.1:$STRATA_METRICS_PORT" "$STRATA_DIR/stratad.log"
t $? "the metrics listener is logged"

# Kafka's port accepts (queued) connections a moment before the broker serves them: ready
# follows once kafka_server_start has returned (__consumer_offsets created and so on).
i=0
while [ "$(status /health/ready)" != 200 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
t "$([ "$(status /health/ready)" = 200 ]; echo $?)" "/health/ready: 200 once serving"
t "$([ "$(http /health/live | sed -n 2p)" = ok ]; echo $?)" "/health/live: 200 ok"
head=$(http /metrics | sed -n 1p)
t "$([ "$head" = "200 text/plain; version=0.0.4; charset=utf-8" ]; echo $?)" \
	"/metrics: 200, Prometheus text 0.0.4 ($head)"
wait_metric strata_tier_upload_backlog_segments -eq 0 100
t $? "strata_tier_upload_backlog_segments is published (0 at rest)"

# Many small batches into 1 KiB segments, with the bucket down: closed segments pile up.
"$STRATA_PY" - "$STRATA_BOOTSTRAP" "$TOPIC" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
a = AdminClient({'bootstrap.servers': sys.argv[1]})
f = a.create_topics([NewTopic(sys.argv[2], 1, 1, config={'segment.bytes': '1024'})])
f[sys.argv[2]].result(30)
PY
t $? "create $TOPIC with segment.bytes=1024"
touch "$FAULT"
i=0
while [ $i -lt 60 ]; do printf 'record-%03d-%0400d\n' $i 0; i=$((i + 1)); done > "$STRATA_DIR/records"
kcat -P -b "$STRATA_BOOTSTRAP" -t "$TOPIC" -p 0 -X queue.buffering.max.ms=0 -X batch.num.messages=1 \
	-X max.in.flight=1 < "$STRATA_DIR/records" > "$STRATA_DIR/kcat.out" 2>&1
rc=$?
sed 's/^/# kcat: /' "$STRATA_DIR/kcat.out"
t $rc "kcat produced 60 records (one batch each)"
wait_metric strata_tier_upload_backlog_segments -gt 1 300
t $? "bucket down: strata_tier_upload_backlog_segments > 1"
backlog_segs=$(metric strata_tier_upload_backlog_segments)
wait_metric strata_tier_upload_backlog_bytes -gt 1000 100
t $? "bucket down: strata_tier_upload_backlog_bytes > 1000"
wait_metric strata_tier_upload_errors_total -gt 0 100
t $? "bucket down: strata_tier_upload_errors_total > 0"
up_before=$(metric strata_tier_uploaded_segments_total)
echo "# backlog $backlog_segs segments; uploaded so far: $up_before"

rm -f "$FAULT"
wait_metric strata_tier_upload_backlog_segments -eq 0 600
t $? "bucket back: strata_tier_upload_backlog_segments returns to 0"
t "$([ "$(metric strata_tier_upload_backlog_bytes)" = 0 ]; echo $?)" "... and the backlog bytes too"
up_after=$(metric strata_tier_uploaded_segments_total)
t "$([ "$up_after" -ge $((up_before + backlog_segs)) ]; echo $?)" \
	"strata_tier_uploaded_segments_total grew by the backlog ($up_before -> $up_after)"
wait_metric strata_tier_remote_segments -ge "$backlog_segs" 100
t $? "strata_tier_remote_segments counts them"

# The whole exposition through an independent parser: names, types, HELP, label syntax.
if ! "$STRATA_PY" -c 'import prometheus_client' 2>/dev/null; then
	n=$((n + 1))
	echo "ok $n # SKIP python3-prometheus-client is not installed (scripts/deps)"
else
http /metrics | sed 1d | "$STRATA_PY" -c '
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(sys.stdin.read())}
need = {"strata_tier_upload_backlog_segments": "gauge", "strata_tier_uploaded_bytes": "counter",
        "strata_tier_upload_errors": "counter", "strata_tier_cache_hits": "counter",
        "strata_tier_remote_segments": "gauge", "strata_build_info": "gauge",
        "strata_tier_cache_bytes": "gauge", "strata_tier_prefetch_handovers": "counter",
        "strata_tier_cache_pressure_evictions": "counter", "strata_tier_cache_pressure_refusals": "counter",
        "strata_log_read_warmups": "counter", "strata_log_read_warmup_bytes": "counter"}
bad = [n for n, ty in need.items() if n not in fams or fams[n].type != ty or not fams[n].documentation]
print("# %d metric families parsed; missing or wrong: %s" % (len(fams), bad))
sys.exit(1 if bad else 0)'
t $? "prometheus_client parses /metrics; counters and gauges typed and documented"
fi

t "$([ "$(status /nope)" = 404 ]; echo $?)" "unknown path: 404"
t "$([ "$(raw 'NONSENSE\r\n\r\n')" = 400 ]; echo $?)" "malformed request: 400"
t "$([ "$(raw 'DELETE /metrics HTTP/1.1\r\n\r\n')" = 405 ]; echo $?)" "DELETE: 405"

# A second broker asking for the same metrics port must not start.
mkdir -p "$STRATA_DIR/second"
"$STRATAD" --set "listeners=PLAINTEXT://127.0.0.1:$(strata_free_port)" \
	--set "log.dirs=$STRATA_DIR/second/log" --set strata.tier.url=none \
	--set "metrics.listener=127.0.0.1:$STRATA_METRICS_PORT" > "$STRATA_DIR/second.log" 2>&1 &
second=$!
i=0
while kill -0 $second 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
if kill -0 $second 2>/dev/null; then
	kill -KILL $second
	wait $second
	t 1 "a taken metrics port fails the start (it kept running)"
else
	wait $second
	rc=$?
	sed 's/^/# second: /' "$STRATA_DIR/second.log"
	t "$([ $rc -ne 0 ] && grep -q "metrics.listener=127.0.0.1:$STRATA_METRICS_PORT: cannot listen: Address already in use" \
		"$STRATA_DIR/second.log"; echo $?)" "a taken metrics port fails the start with a clear error"
fi

strata_stop
t $? "clean shutdown"

# metrics.listener=none: nothing listens where lib.sh would have put it.
strata_start --set metrics.listener=none --set strata.tier.url=none
rc=$?
t "$([ $rc = 0 ] && [ "$(status /health/live)" = error ] && ! strata_port_open "$STRATA_METRICS_PORT" &&
	[ "$(grep -c 'serving metrics' "$STRATA_DIR/stratad.log")" = 1 ]; echo $?)" \
	"metrics.listener=none: no HTTP listener"
strata_stop
! grep -E 'AddressSanitizer|LeakSanitizer|runtime error|ASSERT' "$STRATA_DIR/stratad.log" "$STRATA_DIR/second.log"
t $? "no sanitizer report nor assertion in the brokers' logs"
