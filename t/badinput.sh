#!/bin/sh
# t/badinput.sh -- malformed frames, truncated fields, absurd lengths, unknown APIs and versions,
# invalid record batches, sent on raw sockets to a real stratad (t/badinput.py): each gets Kafka's
# answer (connection closed, or the right error code), a log line, and leaves the broker, other
# connections and stored data alone. Then real clients still work, and the broker stops cleanly
# and comes back with the same data. TAP.
. "$top_srcdir/t/lib.sh"
tap=$(mktemp)
trap 'strata_cleanup; rm -f "$tap"' EXIT INT TERM
check() { tap_result "$@" >> "$tap"; } # check DESCRIPTION COMMAND...

strata_start --set num.partitions=2 --set socket.request.max.bytes=1048576 \
	--set message.max.bytes=100000 || tap_abort "stratad starts"
"$STRATA_PY" "$top_srcdir/t/badinput.py" "$STRATA_PORT" "$STRATA_DIR" >> "$tap" 2>&1
check "stratad is still running" kill -0 "$STRATA_PID"

# Real clients after all that: a confluent-kafka producer, kcat reads it back.
"$STRATA_PY" - "$STRATA_BOOTSTRAP" >> "$tap" 2>&1 <<'PY'
import sys
from confluent_kafka import Producer
p = Producer({'bootstrap.servers': sys.argv[1], 'acks': 'all'})
errs = []
for i in range(10):
    p.produce('bad', value=b'after-%d' % i, partition=1,
              on_delivery=lambda e, m: errs.append(e) if e else None)
left = p.flush(30)
print(('ok' if left == 0 and not errs else 'not ok') +
      ' - confluent-kafka produces 10 records after the bad input (%d left, errors %s)' % (left, errs))
PY
got=$(kcat -b "$STRATA_BOOTSTRAP" -C -t bad -p 1 -o beginning -e -q 2>/dev/null | grep -c '^after-')
check "kcat consumes them ($got)" [ "$got" -eq 10 ]

# Nothing stored was hurt: a clean stop, a restart, the same records.
read_p0() { kcat -b "$STRATA_BOOTSTRAP" -C -t bad -p 0 -o beginning -e -q -f '%o %k %s\n' 2>/dev/null; }
before=$(read_p0 | md5sum)
nbefore=$(read_p0 | wc -l)
strata_restart >> "$tap"
check "clean stop and restart after the bad input" [ $? -eq 0 ]
after=$(read_p0 | md5sum)
check "partition 0 reads the same $nbefore records after the restart" [ "$nbefore" -gt 0 -a "$before" = "$after" ]
strata_stop >> "$tap"
check "clean shutdown" [ $? -eq 0 ]
check "no sanitizer reports in the broker log" \
	strata_log_clean 'runtime error|AddressSanitizer|LeakSanitizer'
tap_number < "$tap"
