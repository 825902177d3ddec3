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
#
# TAP: a script numbers its tests in one of two ways (TAP_N counts them either way).
#   Streamed: tap_ok/tap_not_ok/tap_check print numbered lines as they go, tap_lines numbers a
#   helper's output into the stream, tap_run a sub-program's (with its plan); the script ends
#   with echo "1..$TAP_N".
#   Collected: the script and its t/*.py helpers print plan-less lines ("ok - desc",
#   "not ok - desc"; tap_result makes one from a command's status) into a file, kept in this
#   shell (a redirected brace group, not a pipeline, so that restarted brokers stay its
#   children); `tap_number < file` numbers them and prints the plan.
# tap_abort DESC ends a script that cannot go on (its broker does not start) with a failure.

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
TAP_N=0
TAP_FAILED=0
TAP_PLANNED=
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

# --- TAP -------------------------------------------------------------------------------------

tap_ok() { TAP_N=$((TAP_N + 1)); echo "ok $TAP_N - $1"; }
tap_not_ok() { TAP_N=$((TAP_N + 1)); TAP_FAILED=$((TAP_FAILED + 1)); echo "not ok $TAP_N - $1"; }

# tap_check DESC CMD...: one numbered test from CMD's exit status; returns that status's truth.
tap_check() {
	_tc_d=$1
	shift
	if "$@"; then tap_ok "$_tc_d"; return 0; fi
	tap_not_ok "$_tc_d"
	return 1
}

# tap_result DESC CMD...: "ok - DESC" or "not ok - DESC" from CMD's exit status, unnumbered (for
# collected output that tap_number numbers); returns that status's truth.
tap_result() {
	_tr_d=$1
	shift
	if "$@"; then echo "ok - $_tr_d"; return 0; fi
	echo "not ok - $_tr_d"
	return 1
}

# tap_lines: the TAP results on stdin ("ok - d", "not ok - d", numbered or not) numbered on from
# TAP_N into this stream; comments pass, a plan sets TAP_PLANNED and is dropped, any other line
# becomes a "# " comment. Run it with a redirection, not in a pipeline (TAP_N must stay here).
tap_lines() {
	TAP_PLANNED=
	while IFS= read -r _tl_line || [ -n "$_tl_line" ]; do # (a last line without its newline too)
		case "$_tl_line" in
		"ok "*) _tl_res="ok"; _tl_rest=${_tl_line#ok } ;;
		"not ok "*) _tl_res="not ok"; _tl_rest=${_tl_line#not ok }; TAP_FAILED=$((TAP_FAILED + 1)) ;;
		1..*) TAP_PLANNED=yes; continue ;;
		"#"*) printf '%s\n' "$_tl_line"; continue ;;
		*) printf '# %s\n' "$_tl_line"; continue ;;
		esac
		_tl_rest=${_tl_rest#"${_tl_rest%%[!0-9]*}"} # the sub-stream's own number, if any
		TAP_N=$((TAP_N + 1))
		printf '%s %s %s\n' "$_tl_res" "$TAP_N" "${_tl_rest# }"
	done
}

# tap_number: tap_lines, then the plan. Fails when there was no test at all: a run whose helpers
# printed nothing is not a pass.
tap_number() {
	tap_lines
	echo "1..$TAP_N"
	[ "$TAP_N" -gt 0 ]
}

# tap_run DESC CMD...: runs a sub-program that prints TAP with its plan (output kept in
# $STRATA_DIR/sub.out) and numbers its results into this stream; one that ends without its plan,
# or exits non-zero with nothing failed, is one more failure (with the broker log's tail).
tap_run() {
	_tu_d=$1
	shift
	"$@" > "$STRATA_DIR/sub.out" 2>&1
	_tu_rc=$?
	_tu_failed=$TAP_FAILED
	tap_lines < "$STRATA_DIR/sub.out"
	if [ -z "$TAP_PLANNED" ] || { [ "$_tu_rc" -ne 0 ] && [ "$TAP_FAILED" -eq "$_tu_failed" ]; }; then
		tap_not_ok "$_tu_d finished (exit status $_tu_rc, plan ${TAP_PLANNED:-missing})"
		strata_dump_log 30
	fi
}

# tap_abort DESC: DESC failed and nothing else can run: the failure, the plan, exit 1.
tap_abort() {
	tap_not_ok "$1"
	echo "1..$TAP_N"
	exit 1
}

# tap_skip_without_py MODULE...: skips the whole script (plan 1..0) unless $STRATA_PY imports them.
tap_skip_without_py() {
	for _ts_m in "$@"; do
		if ! "$STRATA_PY" -c "import $_ts_m" 2>/dev/null; then
			echo "1..0 # SKIP $STRATA_PY cannot import $_ts_m (scripts/deps)"
			exit 0
		fi
	done
}

# strata_log_clean [ERE]: true when the broker log has no line matching ERE (default: errors,
# assertions, sanitizer reports); otherwise the matches, with what follows them, as comments.
strata_log_clean() {
	_lc_re=${1:-'ERROR|ASSERT|AddressSanitizer|LeakSanitizer|runtime error'}
	grep -E -q "$_lc_re" "$STRATA_DIR/stratad.log" || return 0
	grep -E -A 20 "$_lc_re" "$STRATA_DIR/stratad.log" | head -60 | sed 's/^/#   /'
	return 1
}
