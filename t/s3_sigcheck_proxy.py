#!/usr/bin/python3
# t/s3_sigcheck_proxy.py -- an S3 proxy for tests, on loopback, in front of s3rver (which does
# not check SigV4 signatures). Every request's signature is recomputed with botocore's signer
# (S3SigV4Auth, an implementation independent of Strata's) from what was received: method,
# path and query (decoded, then re-encoded canonically by botocore), the headers named in
# SignedHeaders, x-amz-date and the region of the credential scope. A mismatch, an unsigned
# x-amz-* header, a payload whose SHA-256 differs from x-amz-content-sha256, or a missing
# required signed header is answered 403 and never reaches s3rver. Counters and fault
# injection are reached under /__proxy/ (never signed, never forwarded):
#   GET  /__proxy/stats   -> "name value" lines (requests verified mismatch unsigned token
#                            faults aborts parts completes lists connections inflight
#                            inflight_max upstream_errors)
#   POST /__proxy/fault?action=status|drop|delay|err200&count=N[&status=503&code=SlowDown]
#                       [&method=PUT][&match=substring of path?query][&delay_ms=3000]
#   POST /__proxy/clear   (drops pending faults)   POST /__proxy/reset_hwm (inflight_max=0)
#   POST /__proxy/set?list_max_keys=N  (adds max-keys=N to the ListObjectsV2 requests it
#                         forwards, after checking their signature: short pages, so clients
#                         must follow continuation tokens; 0 = off)
# s3rver has no AbortMultipartUpload: the proxy answers it itself (204) after checking it.
# When s3rver cannot be reached (stopped for an outage test, or it dropped the connection),
# a correctly signed request is answered 503 ServiceUnavailable at once (upstream_errors).
# Usage: s3_sigcheck_proxy.py --upstream 127.0.0.1:PORT --port-file F --access-key AK
#        --secret SK [--region us-east-1] [--token T] [--tls-cert C --tls-key K]
import argparse
import hashlib
import http.client
import http.server
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
from datetime import datetime, timezone
from urllib.parse import quote, unquote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_RE = re.compile(
    r'^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, ?'
    r'SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$')
HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te',
              'trailer', 'upgrade', 'expect'}

args = None
lock = threading.Lock()
stats = {k: 0 for k in ('requests', 'verified', 'mismatch', 'unsigned', 'token', 'faults',
                        'aborts', 'parts', 'completes', 'lists', 'connections', 'inflight',
                        'inflight_max', 'upstream_errors')}
settings = {'list_max_keys': 0}
faults = []  # dicts: action, count, status, code, method, match, delay_ms


def bump(name, n=1):
    with lock:
        stats[name] += n
        if name == 'inflight' and stats['inflight'] > stats['inflight_max']:
            stats['inflight_max'] = stats['inflight']


def take_fault(method, target):
    with lock:
        for f in faults:
            if f['count'] <= 0:
                continue
            if f['method'] and f['method'] != method:
                continue
            if f['match'] and f['match'] not in target:
                continue
            f['count'] -= 1
            stats['faults'] += 1
            return dict(f)
    return None


def s3_error_xml(code, message):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '<RequestId>proxy</RequestId></Error>' % (code, message)).encode()


def verify(method, target, headers, body, scheme):
    """Returns None when the request is correctly signed, else a reason."""
    auth = headers.get('Authorization')
    if auth is None:
        return 'no Authorization header'
    m = AUTH_RE.match(auth)
    if not m:
        return 'malformed Authorization: %r' % auth
    access_key, scope_date, region, signed, signature = m.groups()
    if access_key != args.access_key:
        return 'unknown access key %r' % access_key
    if region != args.region:
        return 'region %r, want %r' % (region, args.region)
    names = signed.split(';')
    if names != sorted(names) or len(set(names)) != len(names):
        return 'SignedHeaders not sorted/unique'
    for need in ('host', 'x-amz-date', 'x-amz-content-sha256'):
        if need not in names:
            return 'SignedHeaders lacks %s' % need
    for h in headers.keys():
        if h.lower().startswith('x-amz-') and h.lower() not in names:
            return 'x-amz header %s is not signed' % h
    for n in names:
        if headers.get(n) is None:
            return 'signed header %s was not sent' % n
    amz_date = headers['x-amz-date']
    if not re.match(r'^\d{8}T\d{6}Z$', amz_date) or amz_date[:8] != scope_date:
        return 'bad x-amz-date %r for scope %r' % (amz_date, scope_date)
    t = datetime.strptime(amz_date, '%Y%m%dT%H%M%SZ').replace(tzinfo=timezone.utc)
    if abs(time.time() - t.timestamp()) > 900:
        return 'x-amz-date %s is more than 15 minutes off' % amz_date
    if args.token is not None and headers.get('x-amz-security-token') not in (None, args.token):
        return 'wrong session token'
    content_sha = headers['x-amz-content-sha256']
    if content_sha == 'UNSIGNED-PAYLOAD':
        if scheme != 'https':
            return 'UNSIGNED-PAYLOAD over plain http'
        bump('unsigned')
    elif content_sha != hashlib.sha256(body).hexdigest():
        return 'x-amz-content-sha256 does not match the payload'

    # Rebuild the request from its parts and let botocore canonicalize it: the path and the
    # query are decoded first, so a client that encodes differently from SigV4 is caught.
    raw_path, _, raw_query = target.partition('?')
    path = quote(unquote(raw_path), safe='/~')
    params = []
    for item in raw_query.split('&') if raw_query else []:
        k, _, v = item.partition('=')
        params.append((unquote(k), unquote(v)))
    req = AWSRequest(method=method, url='%s://%s%s' % (scheme, headers['host'], path),
                     headers={n: headers[n] for n in names}, data=body)
    req.params = params
    req.context['timestamp'] = amz_date
    token = headers.get('x-amz-security-token')
    signer = S3SigV4Auth(Credentials(access_key, args.secret, token), 's3', region)
    canonical = signer.canonical_request(req)
    string_to_sign = signer.string_to_sign(req, canonical)
    expected = signer.signature(string_to_sign, req)
    if expected != signature:
        return 'signature mismatch\n--- canonical request (botocore) ---\n%s\n---' % canonical
    if token is not None:
        bump('token')
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'sigcheck-proxy'

    def setup(self):
        super().setup()
        bump('connections')
        self.upstream = None

    def log_message(self, fmt, *a):
        if args.verbose:
            sys.stderr.write('proxy: ' + (fmt % a) + '\n')

    def send_plain(self, status, body, ctype='text/plain', extra=None):
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)

    def control(self):
        path, _, query = self.path.partition('?')
        q = {}
        for item in query.split('&') if query else []:
            k, _, v = item.partition('=')
            q[unquote(k)] = unquote(v)
        if path == '/__proxy/stats':
            with lock:
                text = ''.join('%s %d\n' % kv for kv in stats.items())
            return self.send_plain(200, text.encode())
        if path == '/__proxy/fault':
            f = {'action': q.get('action', 'status'), 'count': int(q.get('count', '1')),
                 'status': int(q.get('status', '503')), 'code': q.get('code', 'SlowDown'),
                 'method': q.get('method', ''), 'match': q.get('match', ''),
                 'delay_ms': int(q.get('delay_ms', '3000'))}
            with lock:
                faults.append(f)
            return self.send_plain(200, b'ok\n')
        if path == '/__proxy/clear':
            with lock:
                faults.clear()
            return self.send_plain(200, b'ok\n')
        if path == '/__proxy/set':
            with lock:
                for k, v in q.items():
                    if k in settings:
                        settings[k] = int(v)
            return self.send_plain(200, b'ok\n')
        if path == '/__proxy/reset_hwm':
            with lock:
                stats['inflight_max'] = stats['inflight']
            return self.send_plain(200, b'ok\n')
        return self.send_plain(404, b'no such control\n')

    def read_body(self):
        if 'chunked' in (self.headers.get('Transfer-Encoding') or '').lower():
            return None
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n else b''

    def forward(self, body):
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        target = self.path
        with lock:
            max_keys = settings['list_max_keys']
        if self.command == 'GET' and 'list-type=2' in target.partition('?')[2]:
            bump('lists')
            if max_keys > 0:
                target += '&max-keys=%d' % max_keys
        for attempt in range(2):
            if self.upstream is None:
                self.upstream = http.client.HTTPConnection(args.upstream_host, args.upstream_port,
                                                           timeout=60)
            try:
                self.upstream.request(self.command, target, body=body, headers=hdrs)
                resp = self.upstream.getresponse()
                data = resp.read()
                return resp, data
            except (http.client.HTTPException, OSError):
                self.upstream.close()
                self.upstream = None
                if attempt == 1:
                    raise
        raise RuntimeError('unreachable')

    def handle_any(self):
        if self.path.startswith('/__proxy/'):
            self.read_body()
            return self.control()
        bump('requests')
        bump('inflight')
        try:
            self.handle_s3()
        finally:
            bump('inflight', -1)

    def handle_s3(self):
        body = self.read_body()
        if body is None:
            self.close_connection = True
            return self.send_plain(411, s3_error_xml('MissingContentLength', 'chunked'),
                                   'application/xml')
        why = verify(self.command, self.path, self.headers, body, args.scheme)
        if why is not None:
            bump('mismatch')
            sys.stderr.write('proxy: REJECTED %s %s: %s\n' % (self.command, self.path, why))
            return self.send_plain(403, s3_error_xml('SignatureDoesNotMatch', why.split('\n')[0]),
                                   'application/xml')
        bump('verified')
        target = self.path
        f = take_fault(self.command, target)
        if f is not None:
            if f['action'] == 'drop':
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return None
            if f['action'] == 'delay':
                time.sleep(f['delay_ms'] / 1000.0)
            elif f['action'] == 'err200':
                return self.send_plain(200, s3_error_xml('InternalError', 'injected'),
                                       'application/xml')
            else:
                return self.send_plain(f['status'], s3_error_xml(f['code'], 'injected'),
                                       'application/xml')
        query = target.partition('?')[2]
        if self.command == 'DELETE' and 'uploadId=' in query:
            bump('aborts')
            return self.send_plain(204, b'')
        if self.command == 'PUT' and 'partNumber=' in query:
            bump('parts')
        if self.command == 'POST' and 'uploadId=' in query:
            bump('completes')
        try:
            resp, data = self.forward(body)
        except (http.client.HTTPException, OSError) as e:
            # Refused (s3rver stopped) or dropped twice: answer like an overloaded S3 at once,
            # never hang; a well-behaved client retries with backoff.
            bump('upstream_errors')
            sys.stderr.write('proxy: upstream down for %s %s: %s\n' % (self.command, self.path, e))
            return self.send_plain(503, s3_error_xml('ServiceUnavailable', 'upstream: %s' % e),
                                   'application/xml')
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in HOP_BY_HOP or k.lower() == 'content-length':
                continue
            self.send_header(k, v)
        if self.command == 'HEAD':
            self.send_header('Content-Length', resp.getheader('Content-Length', '0'))
        else:
            self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(data)
        return None

    def do_GET(self):
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def main():
    global args
    p = argparse.ArgumentParser()
    p.add_argument('--listen', default='127.0.0.1:0')
    p.add_argument('--upstream', required=True)
    p.add_argument('--port-file', required=True)
    p.add_argument('--access-key', required=True)
    p.add_argument('--secret', required=True)
    p.add_argument('--region', default='us-east-1')
    p.add_argument('--token', default=None)
    p.add_argument('--tls-cert')
    p.add_argument('--tls-key')
    p.add_argument('--verbose', action='store_true')
    args = p.parse_args()
    args.upstream_host, _, up = args.upstream.rpartition(':')
    args.upstream_port = int(up)
    host, _, port = args.listen.rpartition(':')
    if not host.startswith('127.') and host != 'localhost':
        sys.exit('the proxy listens on loopback only')
    srv = Server((host, int(port)), Handler)
    args.scheme = 'http'
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        args.scheme = 'https'
    with open(args.port_file + '.tmp', 'w') as f:
        f.write('%d\n' % srv.server_address[1])
    import os
    os.rename(args.port_file + '.tmp', args.port_file)
    srv.serve_forever()


if __name__ == '__main__':
    main()
