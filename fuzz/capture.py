#!/usr/bin/python3
"""fuzz/capture.py -- builds the fuzz seed corpus from what real Kafka clients send.

  capture.py proxy LISTEN_PORT UPSTREAM_HOST:PORT OUT_DIR
      A TCP proxy: every client connection is relayed to the broker; each request frame the
      client sends is written (without its 4-byte size prefix: header + body, what
      fuzz_requests takes) to OUT_DIR/kKEY-vVER-SHA1 (identical frames dedupe by name). Frames
      larger than --max-frame bytes are relayed but not written. Runs until killed.
      The broker must advertise the proxy (advertised.listeners=PLAINTEXT://host:LISTEN_PORT),
      or clients would bypass it after their first Metadata answer.

  capture.py batches REQ_DIR OUT_DIR
      Extracts the records bytes of every Produce request in REQ_DIR (one file per partition:
      what fuzz_batch takes) into OUT_DIR/SHA1.

Only the standard library; run with /usr/bin/python3. Never changes what it relays.
"""
import hashlib
import os
import socket
import struct
import sys
import threading

MAX_FRAME_DEFAULT = 64 * 1024


def write_unique(out_dir, prefix, data):
    name = prefix + hashlib.sha1(data).hexdigest()[:16]
    path = os.path.join(out_dir, name)
    if not os.path.exists(path):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.rename(tmp, path)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def pump_requests(client, upstream, out_dir, max_frame):
    """Client -> broker, frame by frame (so each can be saved)."""
    try:
        while True:
            hdr = recv_exact(client, 4)
            if hdr is None:
                break
            (size,) = struct.unpack(">i", hdr)
            if size < 0:
                break
            body = recv_exact(client, size) if size else b""
            if body is None:
                break
            if len(body) >= 4 and size <= max_frame:
                key, ver = struct.unpack(">hh", body[:4])
                write_unique(out_dir, "k%02d-v%02d-" % (key, ver), body)
            upstream.sendall(hdr + body)
    except OSError:
        pass
    finally:
        for s in (upstream, client):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def pump_bytes(src, dst):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def proxy(listen_port, upstream, out_dir, max_frame):
    host, port = upstream.rsplit(":", 1)
    os.makedirs(out_dir, exist_ok=True)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen_port))
    ls.listen(64)
    while True:
        client, _ = ls.accept()
        try:
            up = socket.create_connection((host, int(port)), timeout=10)
            up.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pump_requests, args=(client, up, out_dir, max_frame),
                         daemon=True).start()
        threading.Thread(target=pump_bytes, args=(up, client), daemon=True).start()


# --- Produce request parsing (just enough to find the records) ------------------------------

class Reader:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, n):
        if n < 0 or self.p + n > len(self.b):
            raise ValueError("short")
        v = self.b[self.p:self.p + n]
        self.p += n
        return v

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        v, shift = 0, 0
        while True:
            c = self.take(1)[0]
            v |= (c & 0x7F) << shift
            if not c & 0x80:
                return v
            shift += 7
            if shift > 35:
                raise ValueError("varint")

    def string(self, compact):
        n = self.uvarint() - 1 if compact else self.i16()
        return None if n < 0 else self.take(n)

    def bytes_(self, compact):
        n = self.uvarint() - 1 if compact else self.i32()
        return None if n < 0 else self.take(n)

    def array_len(self, compact):
        return self.uvarint() - 1 if compact else self.i32()

    def skip_tags(self):
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def produce_records(frame):
    """Yields the records bytes of each partition of a Produce request frame (v3+)."""
    r = Reader(frame)
    key, ver = r.i16(), r.i16()
    if key != 0 or ver < 3:
        return
    flex = ver >= 9
    r.i32()                       # correlation id
    r.string(False)               # client id: a classic string in every header version
    if flex:
        r.skip_tags()
    r.string(flex)                # transactional id
    r.i16()                       # acks
    r.i32()                       # timeout
    for _ in range(max(r.array_len(flex), 0)):
        r.string(flex)
        for _ in range(max(r.array_len(flex), 0)):
            r.i32()
            recs = r.bytes_(flex)
            if flex:
                r.skip_tags()
            if recs:
                yield recs
        if flex:
            r.skip_tags()


def batches(req_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    n = 0
    for name in sorted(os.listdir(req_dir)):
        if not name.startswith("k00-"):
            continue
        with open(os.path.join(req_dir, name), "rb") as f:
            frame = f.read()
        try:
            for recs in produce_records(frame):
                write_unique(out_dir, "", recs)
                n += 1
        except ValueError as e:
            print("capture.py: %s: %s" % (name, e), file=sys.stderr)
    print("capture.py: %d records sections from %s" % (n, req_dir))


def main(argv):
    max_frame = MAX_FRAME_DEFAULT
    if len(argv) > 2 and argv[1] == "--max-frame":
        max_frame = int(argv[2])
        argv = argv[:1] + argv[3:]
    if len(argv) == 5 and argv[1] == "proxy":
        proxy(int(argv[2]), argv[3], argv[4], max_frame)
    elif len(argv) == 4 and argv[1] == "batches":
        batches(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
