#!/bin/sh
# t/stratad.sh -- the daemon's front: config file and --set handling, errors naming the key,
# value and reason, --check, SIGHUP reload of dynamic settings, SIGTERM clean shutdown. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
echo "1..15"
n=0
t() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }
tmp=$(mktemp -d)
STRATAD_BIN="$top_builddir/stratad"

out=$("$STRATAD_BIN" --set no.such.key=1 --check 2>&1); rc=$?
t $([ $rc = 2 ] && echo "$out" | grep -q 'no.such.key'; echo $?) "unknown key rejected, named ($out)"
out=$("$STRATAD_BIN" --set num.partitions=zero --check 2>&1); rc=$?
t $([ $rc = 2 ] && echo "$out" | grep -q 'num.partitions=zero' && echo "$out" | grep -q 'integer'; echo $?) \
	"bad value rejected with key, value and reason ($out)"
printf '# a comment\nnum.partitions = 3\nlog.retention.ms = banana\n' > "$tmp/bad.conf"
out=$("$STRATAD_BIN" -c "$tmp/bad.conf" --check 2>&1); rc=$?
t $([ $rc = 2 ] && echo "$out" | grep -q "bad.conf:3" && echo "$out" | grep -q 'log.retention.ms'; echo $?) \
	"config file error names file, line and key ($out)"
out=$("$STRATAD_BIN" -c "$tmp/missing.conf" --check 2>&1); rc=$?
t $([ $rc = 2 ] && echo "$out" | grep -q 'missing.conf'; echo $?) "missing config file named"
printf 'num.partitions = 3\nlog.segment.bytes = 1048576\n' > "$tmp/good.conf"
out=$("$STRATAD_BIN" -c "$tmp/good.conf" --set num.partitions=4 --check 2>&1); rc=$?
t $rc "a good file plus --set passes --check"
out=$("$STRATAD_BIN" --set listeners=127.0.0.1:9092 --check 2>&1); rc=$?
t $([ $rc = 2 ] && echo "$out" | grep -q 'listeners'; echo $?) "listener without PLAINTEXT:// is rejected"
out=$("$STRATAD_BIN" --set metrics.listener=localhost --check 2>&1); rc=$?
t $([ $rc = 2 ] && echo "$out" | grep -q 'metrics.listener=localhost'; echo $?) \
	"a metrics.listener without a port is rejected by --check ($out)"

# A running broker with a config file: SIGHUP reloads it.
printf 'num.partitions = 2\nlogging.level = info\n' > "$tmp/run.conf"
strata_start -c "$tmp/run.conf"
t $? "stratad starts with -c"
"$STRATA_PY" - "$STRATA_BOOTSTRAP" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({'bootstrap.servers': sys.argv[1]})
md = a.list_topics('auto1', timeout=10)
print('# auto1 partitions', len(md.topics['auto1'].partitions))
sys.exit(0 if len(md.topics['auto1'].partitions) == 2 else 1)
PY
t $? "auto-created topic takes num.partitions from the file"
printf 'num.partitions = 5\nlogging.level = info\nsocket.request.max.bytes = 1000\n' > "$tmp/run.conf"
kill -HUP "$STRATA_PID"
i=0; while [ $i -lt 50 ] && ! grep -q 'reload done' "$STRATA_DIR/stratad.log"; do sleep 0.1; i=$((i+1)); done
grep -q 'reload: num.partitions=5' "$STRATA_DIR/stratad.log"
t $? "SIGHUP applies a dynamic setting (log line)"
grep -q 'socket.request.max.bytes changed but needs a restart' "$STRATA_DIR/stratad.log"
t $? "SIGHUP reports a static setting that needs a restart"
"$STRATA_PY" - "$STRATA_BOOTSTRAP" <<'PY'
import sys
from confluent_kafka.admin import AdminClient
a = AdminClient({'bootstrap.servers': sys.argv[1]})
md = a.list_topics('auto2', timeout=10)
sys.exit(0 if len(md.topics['auto2'].partitions) == 5 else 1)
PY
t $? "the reloaded num.partitions is used"
printf 'num.partitions = nope\n' > "$tmp/run.conf"
kill -HUP "$STRATA_PID"
sleep 0.5
grep -q 'reload refused' "$STRATA_DIR/stratad.log" && kill -0 "$STRATA_PID"
t $? "a bad reload is refused and the broker keeps running"
strata_stop
t $? "SIGTERM: clean shutdown, exit 0"
grep -q 'stopped cleanly' "$STRATA_DIR/stratad.log"
t $? "clean shutdown logged"
rm -rf "$tmp"
