#!/bin/sh
# t/clients_js.sh -- the Node.js clients against a real stratad: kafkajs (produce, group consume,
# offsets for a timestamp) and @platformatic/kafka (flexible versions only: produce per codec,
# group consume). Skips when node or the npm modules (scripts/deps --test) are missing. TAP.
. "$top_srcdir/t/lib.sh"
trap strata_cleanup EXIT INT TERM
mods="$top_srcdir/t/node_modules"
if ! command -v node >/dev/null 2>&1 || [ ! -d "$mods/kafkajs" ]; then
	echo "1..0 # SKIP node or t/node_modules missing (run scripts/deps --test)"
	exit 0
fi
strata_start --set group.initial.rebalance.delay.ms=100 || tap_abort "stratad starts"
raw="$STRATA_DIR/results"
{
	timeout 300 node "$top_srcdir/t/clients_kafkajs.js" "$STRATA_BOOTSTRAP" "$mods" 2>&1
	# @platformatic/kafka needs node >= 20.19 (Debian 12's own nodejs is 18).
	if node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=19)?0:1)'; then
		timeout 300 node "$top_srcdir/t/clients_platformatic.mjs" "$STRATA_BOOTSTRAP" "$mods" 2>&1
	else
		echo "ok - platformatic: skipped, node $(node --version) is older than 20.19 # SKIP"
	fi
	# stratad is a child of this shell: stop it here, not inside a pipeline's subshell.
	tap_result "clean shutdown" strata_stop
} > "$raw"
tap_number < "$raw"
