# t/s3lib.sh -- starts a loopback S3 for tests: s3rver (npm, t/node_modules) behind
# t/s3_sigcheck_proxy.py, which checks every request's SigV4 signature with botocore and can
# inject faults. POSIX sh; source it from a t/*.sh test:
#
#   . "$top_srcdir/t/s3lib.sh"
#   trap s3_cleanup EXIT INT TERM
#   s3_start [--tls] || exit 1      # returns 2 (reason printed) when s3rver is not installed
#   ... S3 at $S3_ENDPOINT (path style), $S3_VHOST_ENDPOINT (virtual-host style: the bucket
#       is a subdomain of s3.localhost, which curl resolves to loopback), bucket $S3_BUCKET,
#       credentials $S3_ACCESS_KEY / $S3_SECRET_KEY (also exported as AWS_ACCESS_KEY_ID /
#       AWS_SECRET_ACCESS_KEY), proxy control at $S3_ENDPOINT/__proxy/...
#       with --tls also $S3_TLS_ENDPOINT (https, same checks) trusting $S3_CA_FILE.
#   s3_stat NAME                    # prints one proxy counter (mismatch, verified, ...)
#   s3_proxy_ctl 'fault?action=...' # a proxy control request (faults, clear, set, reset_hwm)
#   s3rver_stop; ...; s3rver_start  # a real outage: the s3rver process is stopped, then started
#                                   # again on the same port and data dir (the proxy stays up and
#                                   # answers 503 ServiceUnavailable meanwhile)
#
# s3_cleanup stops both servers and removes S3_DIR (S3_KEEP=1 keeps it). Every wait is bounded.

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
S3_PY=/usr/bin/python3
S3_DIR=
S3RVER_PID=
S3_PROXY_PID=
S3_TLS_PROXY_PID=
S3_BUCKET=strata-test
S3_ACCESS_KEY=S3RVER   # s3rver knows only this key pair
S3_SECRET_KEY=S3RVER
S3_REGION=us-east-1

s3_dump_logs() {
	for _s3_f in "$S3_DIR/s3rver.log" "$S3_DIR/proxy.log" "$S3_DIR/proxy-tls.log"; do
		[ -f "$_s3_f" ] || continue
		echo "# --- $_s3_f (last 40 lines) ---"
		tail -n 40 "$_s3_f" | sed 's/^/#   /'
	done
}

# Waits (bounded, tenths of a second) for file $1 to exist and be non-empty; $2 = pid to watch.
s3_wait_file() {
	_s3_i=0
	while [ "$_s3_i" -lt 300 ]; do
		[ -s "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
		_s3_i=$((_s3_i + 1))
	done
	return 1
}

# s3_start_proxy PORTFILE LOG [extra args]: starts a proxy in front of s3rver (pid in
# _s3_started_pid: no command substitution, so it stays this shell's child).
s3_start_proxy() {
	_s3_pf=$1
	_s3_log=$2
	shift 2
	"$S3_PY" "$top_srcdir/t/s3_sigcheck_proxy.py" --upstream "127.0.0.1:$S3RVER_PORT" \
		--port-file "$_s3_pf" --access-key "$S3_ACCESS_KEY" --secret "$S3_SECRET_KEY" \
		--region "$S3_REGION" "$@" > "$_s3_log" 2>&1 &
	_s3_started_pid=$!
}

# s3_launch_s3rver PORT: starts s3rver on 127.0.0.1:PORT (0: the kernel picks) over
# $S3_DIR/data, appending to $S3_DIR/s3rver.log, and waits (bounded) until it listens. Sets
# S3RVER_PID and S3RVER_PORT. Returns 1 (logs dumped) when it exits or does not listen in time.
s3_launch_s3rver() {
	_s3_lines=0
	[ -f "$S3_DIR/s3rver.log" ] && _s3_lines=$(wc -l < "$S3_DIR/s3rver.log")
	# The legacy provider: s3rver's continuation tokens use DES, which OpenSSL 3 hides.
	NODE_OPTIONS=--openssl-legacy-provider node "$top_srcdir/t/node_modules/s3rver/bin/s3rver.js" \
		-d "$S3_DIR/data" -a 127.0.0.1 -p "$1" -s --service-endpoint localhost \
		--configure-bucket "$S3_BUCKET" >> "$S3_DIR/s3rver.log" 2>&1 &
	S3RVER_PID=$!
	_s3_i=0
	_s3_port=
	while [ "$_s3_i" -lt 300 ] && [ -z "$_s3_port" ]; do
		if ! kill -0 "$S3RVER_PID" 2>/dev/null; then
			wait "$S3RVER_PID" 2>/dev/null
			echo "# s3rver exited during startup"
			S3RVER_PID=
			s3_dump_logs
			return 1
		fi
		# Only this start's lines: a restart appends to the same log.
		_s3_port=$(tail -n +"$((_s3_lines + 1))" "$S3_DIR/s3rver.log" |
			sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p')
		[ -n "$_s3_port" ] || sleep 0.1
		_s3_i=$((_s3_i + 1))
	done
	if [ -z "$_s3_port" ]; then
		echo "# s3rver did not start listening"
		s3_dump_logs
		s3_stop_pid "$S3RVER_PID"
		S3RVER_PID=
		return 1
	fi
	S3RVER_PORT=$_s3_port
	return 0
}

s3_start() {
	if ! command -v node > /dev/null 2>&1 || [ ! -f "$top_srcdir/t/node_modules/s3rver/bin/s3rver.js" ]; then
		echo "# s3rver is not installed (scripts/deps --test installs it)"
		return 2
	fi
	if ! "$S3_PY" -c 'import botocore' 2> /dev/null; then
		echo "# python3-botocore is not installed (scripts/deps --test installs it)"
		return 2
	fi
	S3_DIR=$(mktemp -d "${TMPDIR:-/tmp}/strata-s3.XXXXXX") || return 1
	mkdir -p "$S3_DIR/data"
	s3_launch_s3rver 0 || return 1

	s3_start_proxy "$S3_DIR/proxy.port" "$S3_DIR/proxy.log"
	S3_PROXY_PID=$_s3_started_pid
	if ! s3_wait_file "$S3_DIR/proxy.port" "$S3_PROXY_PID"; then
		echo "# the signature-checking proxy did not start"
		s3_dump_logs
		return 1
	fi
	S3_PROXY_PORT=$(cat "$S3_DIR/proxy.port")
	S3_ENDPOINT="http://127.0.0.1:$S3_PROXY_PORT"
	S3_VHOST_ENDPOINT="http://s3.localhost:$S3_PROXY_PORT"
	export S3_ENDPOINT S3_VHOST_ENDPOINT S3_BUCKET S3_ACCESS_KEY S3_SECRET_KEY S3_REGION S3_DIR
	AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
	AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
	export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

	if [ "${1:-}" = "--tls" ]; then
		if ! openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
			-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
			-keyout "$S3_DIR/tls.key" -out "$S3_DIR/tls.crt" > "$S3_DIR/openssl.log" 2>&1; then
			echo "# openssl could not make a test certificate"
			cat "$S3_DIR/openssl.log" | sed 's/^/#   /'
			return 1
		fi
		s3_start_proxy "$S3_DIR/proxy-tls.port" "$S3_DIR/proxy-tls.log" \
			--tls-cert "$S3_DIR/tls.crt" --tls-key "$S3_DIR/tls.key"
		S3_TLS_PROXY_PID=$_s3_started_pid
		if ! s3_wait_file "$S3_DIR/proxy-tls.port" "$S3_TLS_PROXY_PID"; then
			echo "# the TLS proxy did not start"
			s3_dump_logs
			return 1
		fi
		S3_TLS_ENDPOINT="https://127.0.0.1:$(cat "$S3_DIR/proxy-tls.port")"
		S3_CA_FILE="$S3_DIR/tls.crt"
		export S3_TLS_ENDPOINT S3_CA_FILE
	fi
	return 0
}

# s3_stat NAME [ENDPOINT]: one counter of the proxy.
s3_stat() {
	"$S3_PY" - "${2:-$S3_ENDPOINT}" "$1" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + '/__proxy/stats', timeout=10) as r:
    for line in r.read().decode().splitlines():
        k, v = line.split()
        if k == sys.argv[2]:
            print(v)
EOF
}

# s3_proxy_ctl WHAT [ENDPOINT]: POST ENDPOINT/__proxy/WHAT, e.g.
# s3_proxy_ctl 'fault?action=delay&method=PUT&match=.log&count=1&delay_ms=3000'.
s3_proxy_ctl() {
	"$S3_PY" - "${2:-$S3_ENDPOINT}/__proxy/$1" <<'EOF'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1], data=b'', method='POST')
with urllib.request.urlopen(req, timeout=10) as r:
    sys.exit(0 if r.status == 200 else 1)
EOF
}

s3_stop_pid() {
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null
	_s3_i=0
	while kill -0 "$1" 2>/dev/null && [ "$_s3_i" -lt 50 ]; do
		sleep 0.1
		_s3_i=$((_s3_i + 1))
	done
	kill -KILL "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

# s3rver_stop: an outage. Stops the s3rver process (SIGTERM, SIGKILL after 5 s); its data dir
# and port number are kept for s3rver_start. Returns 1 when s3rver was not running.
s3rver_stop() {
	[ -n "$S3RVER_PID" ] || { echo "# s3rver_stop: s3rver is not running"; return 1; }
	s3_stop_pid "$S3RVER_PID"
	S3RVER_PID=
	return 0
}

# s3rver_start: the end of an outage. Starts s3rver again on the port it had (the proxies'
# upstream) over the same data dir. A few bounded tries: another process may hold the port
# for a moment (an outgoing connection given it as its ephemeral port).
s3rver_start() {
	[ -z "$S3RVER_PID" ] || { echo "# s3rver_start: s3rver $S3RVER_PID is still running"; return 1; }
	_s3_port0=$S3RVER_PORT
	for _s3_try in 1 2 3 4 5; do
		if s3_launch_s3rver "$_s3_port0" > "$S3_DIR/s3rver-start.out" 2>&1; then
			[ "$S3RVER_PORT" = "$_s3_port0" ] && return 0
			echo "# s3rver came back on port $S3RVER_PORT, not $_s3_port0"
			s3rver_stop
			S3RVER_PORT=$_s3_port0
			return 1
		fi
		S3RVER_PORT=$_s3_port0
		sleep 0.5
	done
	cat "$S3_DIR/s3rver-start.out"
	return 1
}

s3_cleanup() {
	s3_stop_pid "$S3_TLS_PROXY_PID"
	s3_stop_pid "$S3_PROXY_PID"
	s3_stop_pid "$S3RVER_PID"
	S3_TLS_PROXY_PID=
	S3_PROXY_PID=
	S3RVER_PID=
	if [ -n "$S3_DIR" ] && [ -z "${S3_KEEP:-}" ]; then
		rm -rf "$S3_DIR"
	fi
}
