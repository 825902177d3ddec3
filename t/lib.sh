# t/lib.sh -- shared helpers for integration tests that run a real stratad (POSIX sh).
# Source it from a t/*.sh test:
#
#   . "$top_srcdir/t/lib.sh"
#   trap strata_cleanup EXIT INT TERM
#   strata_start [--set key=value ...] || exit 1   # extra stratad arguments are kept for restarts
#   ... clients use 127.0.0.1:$STRATA_PORT (also $STRATA_BOOTSTRAP) ...
#   strata_restart                                 # SIGTERM, then start again: same dir, port, args
#   strata_kill9; strata_start_again               # crash, then start again
#   strata_stop                                    # SIGTERM; returns stratad's exit status
#
# Sets STRATA_PORT, STRATA_PID (empty when not running), STRATA_DIR (temp dir: log.dirs is
# $STRATA_DIR/log, the broker's stderr goes to $STRATA_DIR/stratad.log), STRATA_BOOTSTRAP,
# STRATA_METRICS_PORT (metrics.listener=127.0.0.1:$STRATA_METRICS_PORT unless the arguments set
# metrics.listener themselves).
# strata_cleanup stops the broker (SIGKILL if it hangs) and removes STRATA_DIR.
# Diagnostics go to stdout prefixed with "# " (TAP comments). Every wait is bounded.

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=.}"
STRATA_PY=/usr/bin/python3
STRATAD="${STRATAD:-$top_builddir/stratad}"
STRATA_PID=
STRATA_PORT=
STRATA_DIR=
STRATA_BOOTSTRAP=
STRATA_METRICS_PORT=
STRATA_ARGS_FILE=
# How long to wait for the listener and for a clean shutdown, in tenths of a second.
: "${STRATA_START_TENTHS:=300}"
: "${STRATA_STOP_TENTHS:=600}"

# A port nobody listens on right now (the kernel's choice; tiny race with other processes).
strata_free_port() {
	"$STRATA_PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# True when 127.0.0.1:$1 accepts a connection.
strata_port_open() {
	"$STRATA_PY" -c 'import socket, sys
s = socket.socket()
s.settimeout(1)
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
s.close()' "$1" 2>/dev/null
}

strata_dump_log() {
	if [ -n "$STRATA_DIR" ] && [ -f "$STRATA_DIR/stratad.log" ]; then
		echo "# --- stratad log ($STRATA_DIR/stratad.log, last ${1:-60} lines) ---"
		tail -n "${1:-60}" "$STRATA_DIR/stratad.log" | sed 's/^/#   /'
	fi
}

# Starts stratad with the saved arguments, on STRATA_PORT and STRATA_DIR, and waits until it
# accepts connections. Returns 1 (log dumped) if it exits or does not listen in time.
strata_start_again() {
	if [ -n "$STRATA_PID" ]; then
		echo "# strata_start_again: stratad $STRATA_PID is still running"
		return 1
	fi
	if [ ! -x "$STRATAD" ]; then
		echo "# $STRATAD is not built"
		return 1
	fi
	echo "# --- start $(date +%H:%M:%S) ---" >> "$STRATA_DIR/stratad.log"
	# Arguments are kept one per line (no quoting games; settings have no newlines).
	set --
	while IFS= read -r _sl_a; do set -- "$@" "$_sl_a"; done < "$STRATA_ARGS_FILE"
	if [ -z "$STRATA_METRICS_PORT" ]; then
		STRATA_METRICS_PORT=$(strata_free_port) || return 1
		export STRATA_METRICS_PORT
	fi
	"$STRATAD" --set "listeners=PLAINTEXT://127.0.0.1:$STRATA_PORT" \
		--set "log.dirs=$STRATA_DIR/log" --set "metrics.listener=127.0.0.1:$STRATA_METRICS_PORT" \
		"$@" >> "$STRATA_DIR/stratad.log" 2>&1 &
	STRATA_PID=$!
	_sl_i=0
	while [ "$_sl_i" -lt "$STRATA_START_TENTHS" ]; do
		if ! kill -0 "$STRATA_PID" 2>/dev/null; then
			wait "$STRATA_PID"
			echo "# stratad exited during startup (status $?)"
			STRATA_PID=
			strata_dump_log
			return 1
		fi
		if strata_port_open "$STRATA_PORT"; then
			return 0
		fi
		sleep 0.1
		_sl_i=$((_sl_i + 1))
	done
	echo "# stratad did not listen on port $STRATA_PORT within $((STRATA_START_TENTHS / 10))s"
	strata_dump_log
	kill -KILL "$STRATA_PID" 2>/dev/null
	wait "$STRATA_PID" 2>/dev/null
	STRATA_PID=
	return 1
}

# strata_start [stratad args...]: new temp dir, free port, start, wait until ready.
strata_start() {
	if [ -z "$STRATA_DIR" ]; then
		STRATA_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-test.XXXXXX") || return 1
	fi
	STRATA_ARGS_FILE="$STRATA_DIR/stratad.args"
	: > "$STRATA_ARGS_FILE"
	for _sl_a in "$@"; do printf '%s\n' "$_sl_a" >> "$STRATA_ARGS_FILE"; done
	STRATA_PORT=$(strata_free_port) || return 1
	# Distinct from STRATA_PORT (both were free a moment ago; the kernel may hand one out twice).
	STRATA_METRICS_PORT=$STRATA_PORT
	_sl_i=0
	while [ "$STRATA_METRICS_PORT" = "$STRATA_PORT" ] && [ "$_sl_i" -lt 10 ]; do
		STRATA_METRICS_PORT=$(strata_free_port) || return 1
		_sl_i=$((_sl_i + 1))
	done
	STRATA_BOOTSTRAP="127.0.0.1:$STRATA_PORT"
	export STRATA_PORT STRATA_DIR STRATA_BOOTSTRAP STRATA_METRICS_PORT
	strata_start_again
}

# Waits (bounded) for STRATA_PID to exit after a signal; returns its exit status, or 124 after
# SIGKILL when it did not stop in time.
strata_wait_exit() {
	_sl_i=0
	while kill -0 "$STRATA_PID" 2>/dev/null && [ "$_sl_i" -lt "$1" ]; do
		sleep 0.1
		_sl_i=$((_sl_i + 1))
	done
	if kill -0 "$STRATA_PID" 2>/dev/null; then
		echo "# stratad $STRATA_PID did not exit within $(($1 / 10))s: SIGKILL"
		kill -KILL "$STRATA_PID" 2>/dev/null
		wait "$STRATA_PID" 2>/dev/null
		STRATA_PID=
		strata_dump_log
		return 124
	fi
	wait "$STRATA_PID"
	_sl_rc=$?
	STRATA_PID=
	return $_sl_rc
}

# Clean shutdown (SIGTERM). Returns stratad's exit status (0 = stopped cleanly).
strata_stop() {
	[ -n "$STRATA_PID" ] || return 0
	kill -TERM "$STRATA_PID" 2>/dev/null
	strata_wait_exit "$STRATA_STOP_TENTHS"
	_sl_rc=$?
	if [ "$_sl_rc" -ne 0 ]; then
		echo "# stratad exited with status $_sl_rc"
		strata_dump_log
	fi
	return $_sl_rc
}

# Crash: SIGKILL, no chance to flush or checkpoint.
strata_kill9() {
	[ -n "$STRATA_PID" ] || return 0
	kill -KILL "$STRATA_PID" 2>/dev/null
	wait "$STRATA_PID" 2>/dev/null
	STRATA_PID=
	return 0
}

# Clean stop then start on the same dir, port and arguments. Returns 1 if either fails.
strata_restart() {
	strata_stop || return 1
	strata_start_again
}

strata_cleanup() {
	if [ -n "$STRATA_PID" ]; then
		kill -TERM "$STRATA_PID" 2>/dev/null
		strata_wait_exit 100 > /dev/null
	fi
	if [ -n "$STRATA_DIR" ] && [ -z "${STRATA_KEEP:-}" ]; then
		rm -rf "$STRATA_DIR"
	fi
}
