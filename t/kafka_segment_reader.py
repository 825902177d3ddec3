#!/usr/bin/python3
"""kafka_segment_reader.py -- an independent reader and writer of Apache Kafka partition
directories (*.log, *.index, *.timeindex), written only from Kafka's published format
description (message format v2, offset and time index layouts), never from Strata's code.

It must stay independent: it is the referee for Strata's on-disk compatibility.

  read DIR [--expect MANIFEST] [--dump-records] [--index-interval BYTES]
           [--allow-preallocated-index]
      Parses every segment: each batch's header, CRC-32C, records (varints, keys, values,
      headers), decoding compressed records where python has the codec; checks the indexes
      against the log. Prints a JSON summary; exits 1 on any inconsistency.
      With --expect, also compares with a manifest (format below), record by record and
      byte for byte for every batch the manifest lists.

  write DIR --manifest MANIFEST [--seed N] [--batches N] [--segment-bytes N]
            [--index-interval N] [--log-append-time] [--codecs none,gzip,...]
      Writes a partition directory from scratch the way a Kafka broker lays it out, and a
      manifest of what it holds.

Manifest (text, one item per line; hex strings, '-' for null, '=' for empty):
  B <base_offset> <batch bytes as hex>
  R <offset> <timestamp_ms> <key> <value> <n_headers> [<hkey> <hvalue>]...
"""

import argparse
import bisect
import json
import os
import random
import re
import struct
import sys
import zlib

# ---- optional codecs (Debian: python3-snappy, python3-lz4, python3-zstandard) ---------

try:
    import snappy as _snappy  # python-snappy
except ImportError:  # pragma: no cover
    _snappy = None
try:
    import lz4.frame as _lz4f
except ImportError:  # pragma: no cover
    _lz4f = None
try:
    import zstandard as _zstd
except ImportError:  # pragma: no cover
    _zstd = None

CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
CODEC_IDS = {v: k for k, v in CODEC_NAMES.items()}

XERIAL_MAGIC = b"\x82SNAPPY\x00"


class Inconsistent(Exception):
    pass


def gzip_decode(data):
    out = []
    while data:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out.append(d.decompress(data))
        if not d.eof:
            raise Inconsistent("gzip: truncated member")
        data = d.unused_data
    return b"".join(out)


def snappy_decode(data):
    if data[:8] == XERIAL_MAGIC and len(data) >= 16:
        pos, out = 16, []
        while pos < len(data):
            if pos + 4 > len(data):
                raise Inconsistent("snappy xerial: truncated block length")
            (n,) = struct.unpack_from(">i", data, pos)
            pos += 4
            if n <= 0 or pos + n > len(data):
                raise Inconsistent("snappy xerial: bad block length %d" % n)
            out.append(_snappy.uncompress(data[pos:pos + n]))
            pos += n
        return b"".join(out)
    return _snappy.uncompress(data)


def lz4_decode(data):
    return _lz4f.decompress(data)


def zstd_decode(data):
    # frames written by streaming compressors carry no content size: decode as a stream
    d = _zstd.ZstdDecompressor().decompressobj()
    out = d.decompress(data)
    if not d.eof:
        raise Inconsistent("zstd: truncated frame")
    rest = d.unused_data
    while rest:
        d = _zstd.ZstdDecompressor().decompressobj()
        out += d.decompress(rest)
        rest = d.unused_data
    return out


DECODERS = {0: lambda b: b, 1: gzip_decode}
ENCODERS = {0: lambda b: b, 1: lambda b: _gzip_encode(b)}
if _snappy is not None:
    DECODERS[2] = snappy_decode
    ENCODERS[2] = lambda b: _snappy.compress(b)
if _lz4f is not None:
    DECODERS[3] = lz4_decode
    # the frame shape Kafka's clients write: independent blocks, 64 KiB, no checksums
    ENCODERS[3] = lambda b: _lz4f.compress(b, block_size=_lz4f.BLOCKSIZE_MAX64KB,
                                            block_linked=False, content_checksum=False,
                                            store_size=False)
if _zstd is not None:
    DECODERS[4] = zstd_decode
    ENCODERS[4] = lambda b: _zstd.ZstdCompressor().compress(b)


def _gzip_encode(b):
    c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return c.compress(b) + c.flush()


# ---- CRC-32C (Castagnoli): t/tapkit.py's ---------------------------------------------

from tapkit import crc32c  # noqa: E402 (t/ is on sys.path: this file sits beside it)

assert crc32c(b"123456789") == 0xE3069283

# ---- varints (zigzag, as records use them) --------------------------------------------


def read_varint(buf, pos, max_bytes, end=None):
    v = shift = 0
    end = len(buf) if end is None else end
    for i in range(max_bytes):
        if pos >= end:
            raise Inconsistent("varint runs past the end of the records")
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if not b & 0x80:
            return (v >> 1) ^ -(v & 1), pos
        shift += 7
    raise Inconsistent("varint longer than %d bytes" % max_bytes)


def write_varint(v):
    z = (v << 1) ^ (v >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


# ---- batches ---------------------------------------------------------------------------

BATCH_HEADER_BYTES = 61      # baseOffset .. recordsCount
LOG_OVERHEAD = 12            # baseOffset + batchLength
HDR = struct.Struct(">qiibIhiqqqhii")


def parse_records(data, count):
    """Parses count records from data; must consume it exactly."""
    recs, pos = [], 0
    for i in range(count):
        length, pos = read_varint(data, pos, 5)
        if length < 0 or pos + length > len(data):
            raise Inconsistent("record %d: length %d past the records' end" % (i, length))
        end = pos + length
        body = data
        if length < 1:
            raise Inconsistent("record %d: length %d" % (i, length))
        attrs = body[pos]
        pos += 1
        ts_delta, pos = read_varint(body, pos, 10, end)
        off_delta, pos = read_varint(body, pos, 5, end)
        klen, pos = read_varint(body, pos, 5, end)
        if klen < -1 or pos + max(klen, 0) > end:
            raise Inconsistent("record %d: key length %d" % (i, klen))
        key = None if klen < 0 else bytes(body[pos:pos + klen])
        pos += max(klen, 0)
        vlen, pos = read_varint(body, pos, 5, end)
        if vlen < -1 or pos + max(vlen, 0) > end:
            raise Inconsistent("record %d: value length %d" % (i, vlen))
        value = None if vlen < 0 else bytes(body[pos:pos + vlen])
        pos += max(vlen, 0)
        nh, pos = read_varint(body, pos, 5, end)
        if nh < 0:
            raise Inconsistent("record %d: header count %d" % (i, nh))
        headers = []
        for _ in range(nh):
            hk, pos = read_varint(body, pos, 5, end)
            if hk < 0 or pos + hk > end:
                raise Inconsistent("record %d: header key length %d" % (i, hk))
            hkey = bytes(body[pos:pos + hk])
            pos += hk
            hv, pos = read_varint(body, pos, 5, end)
            if hv < -1 or pos + max(hv, 0) > end:
                raise Inconsistent("record %d: header value length %d" % (i, hv))
            hval = None if hv < 0 else bytes(body[pos:pos + hv])
            pos += max(hv, 0)
            headers.append((hkey, hval))
        if pos != end:
            raise Inconsistent("record %d: %d bytes declared, %d parsed" % (i, length, length - (end - pos)))
        recs.append({"attrs": attrs, "ts_delta": ts_delta, "off_delta": off_delta,
                     "key": key, "value": value, "headers": headers})
    if pos != len(data):
        raise Inconsistent("%d bytes after the last of %d records" % (len(data) - pos, count))
    return recs


def parse_batch(buf, pos, file_size):
    """Parses the batch at pos. Returns a dict; raises Inconsistent."""
    if file_size - pos < LOG_OVERHEAD:
        raise Inconsistent("%d trailing bytes: not a whole batch header" % (file_size - pos))
    base_offset, batch_len = struct.unpack_from(">qi", buf, pos)
    if batch_len < BATCH_HEADER_BYTES - LOG_OVERHEAD:
        raise Inconsistent("batchLength %d < %d" % (batch_len, BATCH_HEADER_BYTES - LOG_OVERHEAD))
    size = LOG_OVERHEAD + batch_len
    if pos + size > file_size:
        raise Inconsistent("batch at base offset %d: %d bytes, only %d left (torn tail)"
                           % (base_offset, size, file_size - pos))
    (_, _, leader_epoch, magic, crc, attrs, last_delta, base_ts, max_ts, pid, pepoch, bseq,
     count) = HDR.unpack_from(buf, pos)
    if magic != 2:
        raise Inconsistent("batch at base offset %d: magic %d (only v2 is written)" % (base_offset, magic))
    calc = crc32c(memoryview(buf)[pos + 21:pos + size])
    b = {"pos": pos, "size": size, "base_offset": base_offset, "last_offset": base_offset + last_delta,
         "leader_epoch": leader_epoch, "crc": crc, "crc_ok": calc == crc, "attributes": attrs,
         "codec": attrs & 7, "log_append_time": bool(attrs & 8), "transactional": bool(attrs & 16),
         "control": bool(attrs & 32), "last_offset_delta": last_delta, "base_timestamp": base_ts,
         "max_timestamp": max_ts, "producer_id": pid, "producer_epoch": pepoch,
         "base_sequence": bseq, "count": count, "records": None, "raw": bytes(buf[pos:pos + size])}
    if calc != crc:
        raise Inconsistent("batch at base offset %d (file position %d): CRC-32C stored %08x computed %08x"
                           % (base_offset, pos, crc, calc))
    if last_delta < 0 or count < 0 or count > last_delta + 1:
        raise Inconsistent("batch at base offset %d: %d records, lastOffsetDelta %d"
                           % (base_offset, count, last_delta))
    if b["codec"] not in CODEC_NAMES:
        raise Inconsistent("batch at base offset %d: compression codec %d" % (base_offset, b["codec"]))
    payload = bytes(buf[pos + BATCH_HEADER_BYTES:pos + size])
    dec = DECODERS.get(b["codec"])
    if dec is None:
        return b  # CRC checked; records stay opaque without the codec
    try:
        data = dec(payload)
    except Inconsistent:
        raise
    except Exception as e:  # the codec libraries' own errors
        raise Inconsistent("batch at base offset %d: %s payload does not decode: %s"
                           % (base_offset, CODEC_NAMES[b["codec"]], e))
    recs = parse_records(data, count)
    prev = -1
    for r in recs:
        if r["off_delta"] <= prev or r["off_delta"] > last_delta:
            raise Inconsistent("batch at base offset %d: record offsetDelta %d out of order or past %d"
                               % (base_offset, r["off_delta"], last_delta))
        prev = r["off_delta"]
        r["offset"] = base_offset + r["off_delta"]
        r["timestamp"] = max_ts if b["log_append_time"] else base_ts + r["ts_delta"]
    if count and not b["log_append_time"] and not b["control"]:
        want = max(base_ts + r["ts_delta"] for r in recs)
        if want != max_ts:
            raise Inconsistent("batch at base offset %d: maxTimestamp %d, records' largest %d"
                               % (base_offset, max_ts, want))
    if count and recs[-1]["off_delta"] != last_delta and count == last_delta + 1:
        raise Inconsistent("batch at base offset %d: last record delta %d, lastOffsetDelta %d"
                           % (base_offset, recs[-1]["off_delta"], last_delta))
    b["records"] = recs
    return b


def stored_codecs(log_dir, topic):
    """{codec name: record count} of every whole batch in <log_dir>/<topic>-*/*.log (a broker may
    be writing: a torn tail is not counted). Tests use it to check what was really stored."""
    import glob
    seen = {}
    for path in glob.glob(os.path.join(log_dir, glob.escape(topic) + "-*", "*.log")):
        with open(path, "rb") as f:
            buf = f.read()
        pos = 0
        while len(buf) - pos >= LOG_OVERHEAD:
            _, batch_len = struct.unpack_from(">qi", buf, pos)
            if batch_len <= 0 or pos + LOG_OVERHEAD + batch_len > len(buf):
                break
            name = CODEC_NAMES.get(struct.unpack_from(">h", buf, pos + 21)[0] & 7, "?")
            seen[name] = seen.get(name, 0) + struct.unpack_from(">i", buf, pos + 57)[0]
            pos += LOG_OVERHEAD + batch_len
    return seen


def stored_codec_ok(log_dir, topic, codec):
    """(ok, {codec name: record count}): whether topic's records are stored in codec, so that a
    client that quietly falls back to uncompressed batches (librdkafka's version-based feature
    checks) fails a test. librdkafka sends a batch uncompressed when compressing does not make
    it smaller (small tail batches): at least 90% of the records, not all, must be in codec,
    the rest uncompressed."""
    seen = stored_codecs(log_dir, topic)
    n = sum(seen.values())
    return seen.get(codec, 0) >= 0.9 * n > 0 and set(seen) <= {codec, "none"}, seen


# ---- segments and indexes ----------------------------------------------------------------

SEG_RE = re.compile(r"^(\d{20})\.(log|index|timeindex)$")


def read_index(path, entry_size, allow_prealloc):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) % entry_size:
        raise Inconsistent("%s: %d bytes, not a multiple of %d" % (path, len(data), entry_size))
    entries = [data[i:i + entry_size] for i in range(0, len(data), entry_size)]
    zero_tail = 0
    if allow_prealloc:
        # a live Kafka index is preallocated with zeros; the first entry may be all zeros
        # legitimately (offset 0 at position 0), so keep that one
        while len(entries) > 1 and entries[-1] == b"\0" * entry_size:
            entries.pop()
            zero_tail += 1
    return entries, zero_tail


def check_segment(d, name_base, args, errors):
    seg = {"base_offset": name_base, "batches": 0, "records": 0, "first_offset": None,
           "last_offset": None, "log_bytes": 0, "index_entries": 0, "timeindex_entries": 0,
           "max_timestamp": -1, "codecs": {}, "records_decoded": True}
    log_path = os.path.join(d, "%020d.log" % name_base)
    with open(log_path, "rb") as f:
        buf = f.read()
    seg["log_bytes"] = len(buf)
    batches = []
    pos = 0
    try:
        while pos < len(buf):
            b = parse_batch(buf, pos, len(buf))
            if batches and b["base_offset"] <= batches[-1]["last_offset"]:
                raise Inconsistent("batch at position %d: base offset %d not after previous last %d"
                                   % (pos, b["base_offset"], batches[-1]["last_offset"]))
            if not batches and b["base_offset"] < name_base:
                raise Inconsistent("first batch base offset %d below the segment's %d"
                                   % (b["base_offset"], name_base))
            batches.append(b)
            pos += b["size"]
    except Inconsistent as e:
        errors.append("%s: %s" % (log_path, e))
    seg["batches"] = len(batches)
    seg["gaps"] = sum(1 for a, b in zip(batches, batches[1:]) if b["base_offset"] != a["last_offset"] + 1)
    for b in batches:
        seg["records"] += b["count"]
        seg["codecs"][CODEC_NAMES[b["codec"]]] = seg["codecs"].get(CODEC_NAMES[b["codec"]], 0) + 1
        if b["records"] is None:
            seg["records_decoded"] = False
        seg["max_timestamp"] = max(seg["max_timestamp"], b["max_timestamp"])
    if batches:
        seg["first_offset"] = batches[0]["base_offset"]
        seg["last_offset"] = batches[-1]["last_offset"]
        seg["first_batch_is_base"] = batches[0]["base_offset"] == name_base

    by_pos = {b["pos"]: b for b in batches}

    # offset index: [int32 relative offset][int32 position], both strictly increasing;
    # each position is a batch start, and the offset lies in that batch
    idx_path = os.path.join(d, "%020d.index" % name_base)
    if os.path.exists(idx_path):
        try:
            entries, zt = read_index(idx_path, 8, args.allow_preallocated_index)
            seg["index_entries"], seg["index_zero_tail"] = len(entries), zt
            prev_off = prev_pos = -1
            indexed_positions = [0]
            for i, e in enumerate(entries):
                rel, p = struct.unpack(">iI", e)
                off = name_base + rel
                if rel < 0 or rel <= prev_off or p <= prev_pos and i:
                    raise Inconsistent("entry %d (%d, %d) not increasing" % (i, rel, p))
                b = by_pos.get(p)
                if b is None:
                    raise Inconsistent("entry %d: position %d is not a batch boundary" % (i, p))
                if not (b["base_offset"] <= off <= b["last_offset"]):
                    raise Inconsistent("entry %d: offset %d not in the batch at %d (%d..%d)"
                                       % (i, off, p, b["base_offset"], b["last_offset"]))
                prev_off, prev_pos = rel, p
                indexed_positions.append(p)
            indexed_positions.append(len(buf))
            # a lookup scans from an entry to the next: those bytes, less the last batch
            # (which pushed the count over the interval), stay within index.interval.bytes
            worst = 0
            for a, z in zip(indexed_positions, indexed_positions[1:]):
                if z > a:
                    last = max((b for b in batches if a <= b["pos"] < z), key=lambda b: b["pos"])
                    worst = max(worst, last["pos"] - a)
            seg["index_max_scan_bytes"] = worst
            if args.index_interval and worst > args.index_interval:
                raise Inconsistent("%d bytes of log before the last batch between index entries "
                                   "(index.interval.bytes %d)" % (worst, args.index_interval))
        except Inconsistent as e:
            errors.append("%s: %s" % (idx_path, e))
    else:
        errors.append("%s: missing" % idx_path)

    # time index: [int64 timestamp][int32 relative offset]; timestamps strictly increasing,
    # offsets non-decreasing; an entry (ts, off) promises that no batch before the one
    # holding off has a larger timestamp, and that ts occurs up to that batch
    tidx_path = os.path.join(d, "%020d.timeindex" % name_base)
    if os.path.exists(tidx_path):
        try:
            entries, zt = read_index(tidx_path, 12, args.allow_preallocated_index)
            seg["timeindex_entries"], seg["timeindex_zero_tail"] = len(entries), zt
            prev_ts, prev_rel = None, -1
            bases = [b["base_offset"] for b in batches]
            for i, e in enumerate(entries):
                ts, rel = struct.unpack(">qi", e)
                off = name_base + rel
                if prev_ts is not None and ts <= prev_ts:
                    raise Inconsistent("entry %d: timestamp %d not after %d" % (i, ts, prev_ts))
                if rel < prev_rel:
                    raise Inconsistent("entry %d: offset %d before %d" % (i, rel, prev_rel))
                k = bisect.bisect_right(bases, off) - 1
                if k < 0 or off > batches[k]["last_offset"]:
                    raise Inconsistent("entry %d: offset %d in no batch" % (i, off))
                before = max((b["max_timestamp"] for b in batches[:k]), default=-1)
                upto = max(before, batches[k]["max_timestamp"])
                if not (before <= ts <= upto):
                    raise Inconsistent("entry %d (%d, offset %d): batches before reach %d, up to it %d"
                                       % (i, ts, off, before, upto))
                prev_ts, prev_rel = ts, rel
        except Inconsistent as e:
            errors.append("%s: %s" % (tidx_path, e))
    else:
        errors.append("%s: missing" % tidx_path)
    return seg, batches


def hx(b):
    return "-" if b is None else b.hex() if b else "="


def unhx(s):
    return None if s == "-" else b"" if s == "=" else bytes.fromhex(s)


def read_manifest(path):
    batches, records = {}, []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "B":
                batches[int(parts[1])] = bytes.fromhex(parts[2])
            elif parts[0] == "R":
                nh = int(parts[5]) if len(parts) >= 6 else -1
                if nh < 0 or len(parts) != 6 + 2 * nh:
                    raise SystemExit("%s:%d: bad R line" % (path, ln))
                hdrs = [(unhx(parts[6 + 2 * i]), unhx(parts[7 + 2 * i])) for i in range(nh)]
                records.append({"offset": int(parts[1]), "timestamp": int(parts[2]),
                                "key": unhx(parts[3]), "value": unhx(parts[4]), "headers": hdrs})
            else:
                raise SystemExit("%s:%d: unknown line type %r" % (path, ln, parts[0]))
    return batches, records


def compare_manifest(path, all_batches, errors):
    want_batches, want_records = read_manifest(path)
    by_base = {b["base_offset"]: b for b in all_batches}
    n_batch_ok = 0
    for base, raw in sorted(want_batches.items()):
        b = by_base.get(base)
        if b is None:
            errors.append("manifest: batch %d missing from the log" % base)
        elif b["raw"] != raw:
            diff = next((i for i in range(min(len(raw), len(b["raw"]))) if raw[i] != b["raw"][i]), None)
            errors.append("manifest: batch %d differs (%d vs %d bytes, first difference at byte %s)"
                          % (base, len(b["raw"]), len(raw), diff))
        else:
            n_batch_ok += 1
    got, opaque = {}, []
    for b in all_batches:
        if b["records"] is None:  # no python codec for it: its bytes were compared above
            opaque.append((b["base_offset"], b["last_offset"]))
        for r in b["records"] or []:
            got[r["offset"]] = r
    n_rec_ok = n_skipped = 0
    for w in want_records:
        if any(lo <= w["offset"] <= hi for lo, hi in opaque):
            n_skipped += 1
            continue
        g = got.get(w["offset"])
        if g is None:
            errors.append("manifest: record %d missing (or its batch was not decoded)" % w["offset"])
            continue
        for k in ("timestamp", "key", "value", "headers"):
            if g[k] != w[k]:
                errors.append("manifest: record %d: %s is %r, want %r" % (w["offset"], k, g[k], w[k]))
                break
        else:
            n_rec_ok += 1
    if len(got) + n_skipped != len(want_records):
        errors.append("manifest: %d records in the log, %d in the manifest" % (len(got) + n_skipped, len(want_records)))
    return {"batches_matched": n_batch_ok, "batches_expected": len(want_batches),
            "records_matched": n_rec_ok, "records_expected": len(want_records),
            "records_not_decoded": n_skipped}


def cmd_read(args):
    d = args.dir
    errors = []
    bases, other = set(), []
    for name in sorted(os.listdir(d)):
        m = SEG_RE.match(name)
        if m:
            bases.add(int(m.group(1)))
        else:
            other.append(name)
    for base in sorted(bases):
        if not os.path.exists(os.path.join(d, "%020d.log" % base)):
            errors.append("%020d: index files without a .log" % base)
    segs, all_batches = [], []
    for base in sorted(bases):
        if not os.path.exists(os.path.join(d, "%020d.log" % base)):
            continue
        seg, batches = check_segment(d, base, args, errors)
        if all_batches and batches and batches[0]["base_offset"] <= all_batches[-1]["last_offset"]:
            errors.append("segment %d: first offset %d not after the previous segment's last %d"
                          % (base, batches[0]["base_offset"], all_batches[-1]["last_offset"]))
        if all_batches and base <= all_batches[-1]["last_offset"]:
            errors.append("segment %d: base offset not after the previous segment's last %d"
                          % (base, all_batches[-1]["last_offset"]))
        segs.append(seg)
        all_batches.extend(batches)
    total = {"segments": len(segs), "batches": len(all_batches),
             "records": sum(b["count"] for b in all_batches),
             "log_bytes": sum(s["log_bytes"] for s in segs),
             "first_offset": all_batches[0]["base_offset"] if all_batches else None,
             "last_offset": all_batches[-1]["last_offset"] if all_batches else None,
             "gaps": sum(1 for a, b in zip(all_batches, all_batches[1:])
                         if b["base_offset"] != a["last_offset"] + 1),
             "log_append_time_batches": sum(1 for b in all_batches if b["log_append_time"]),
             "codecs": {}}
    for b in all_batches:
        n = CODEC_NAMES[b["codec"]]
        total["codecs"][n] = total["codecs"].get(n, 0) + 1
    out = {"dir": d, "ok": True, "segments": segs, "total": total, "other_files": other,
           "codecs_available": sorted(CODEC_NAMES[c] for c in DECODERS)}
    if args.expect:
        out["manifest"] = compare_manifest(args.expect, all_batches, errors)
    if args.dump_records:
        out["records"] = [{"offset": r["offset"], "timestamp": r["timestamp"], "key": hx(r["key"]),
                           "value": hx(r["value"]), "headers": [[hx(k), hx(v)] for k, v in r["headers"]]}
                          for b in all_batches for r in (b["records"] or [])]
    out["errors"] = errors
    out["ok"] = not errors
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0 if not errors else 1


# ---- writer ------------------------------------------------------------------------------

def build_batch(base_offset, records, codec, base_ts, log_append_time_ms=None,
                producer_id=-1, producer_epoch=-1, base_sequence=-1, leader_epoch=0):
    """records: list of (ts, key, value, headers). Returns the batch bytes."""
    body = bytearray()
    for i, (ts, key, value, headers) in enumerate(records):
        r = bytearray(b"\x00")
        r += write_varint(ts - base_ts)
        r += write_varint(i)
        r += write_varint(-1 if key is None else len(key)) + (key or b"")
        r += write_varint(-1 if value is None else len(value)) + (value or b"")
        r += write_varint(len(headers))
        for hk, hv in headers:
            r += write_varint(len(hk)) + hk
            r += write_varint(-1 if hv is None else len(hv)) + (hv or b"")
        body += write_varint(len(r)) + r
    payload = ENCODERS[codec](bytes(body))
    attrs = codec | (8 if log_append_time_ms is not None else 0)
    max_ts = log_append_time_ms if log_append_time_ms is not None else max(r[0] for r in records)
    after_crc = struct.pack(">hiqqqhii", attrs, len(records) - 1, base_ts, max_ts, producer_id,
                            producer_epoch, base_sequence, len(records)) + payload
    crc = crc32c(after_crc)
    batch_len = 4 + 1 + 4 + len(after_crc)
    return struct.pack(">qiibI", base_offset, batch_len, leader_epoch, 2, crc) + after_crc


def random_records(rng, n, ts0):
    recs = []
    for i in range(n):
        # mostly increasing, sometimes older than its predecessors (CreateTime allows it)
        ts = ts0 + i * rng.randint(0, 3) - (rng.randint(0, 5000) if rng.random() < 0.1 else 0)
        key = None if rng.random() < 0.3 else bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 24)))
        r = rng.random()
        if r < 0.1:
            value = None
        elif r < 0.15:
            value = b""
        else:
            size = rng.choice([rng.randint(1, 100), rng.randint(100, 1500), rng.randint(1500, 6000)])
            # half random (incompressible), half text
            if rng.random() < 0.5:
                value = bytes(rng.getrandbits(8) for _ in range(size))
            else:
                value = (b"value-%d-" % i) * (size // 8 + 1)
                value = value[:size]
        headers = []
        for h in range(rng.choice([0, 0, 0, 1, 2, 3])):
            hk = b"h%d" % h
            hv = None if rng.random() < 0.2 else bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 10)))
            headers.append((hk, hv))
        recs.append((ts, key, value, headers))
    return recs


class SegmentWriter:
    """Lays out segments as a Kafka broker does: a roll when the next batch would pass
    segment.bytes; an index entry (batch last offset, batch position) and a time index
    entry (max timestamp so far, its offset) once more than index.interval.bytes were
    written since the last entry; a last time index entry when a segment is closed."""

    def __init__(self, d, segment_bytes, index_interval):
        self.d, self.segment_bytes, self.index_interval = d, segment_bytes, index_interval
        self.f = None

    def _open(self, base):
        self.base = base
        self.f = open(os.path.join(self.d, "%020d.log" % base), "wb")
        self.idx = open(os.path.join(self.d, "%020d.index" % base), "wb")
        self.tidx = open(os.path.join(self.d, "%020d.timeindex" % base), "wb")
        self.size = 0
        self.since_index = 0
        self.max_ts, self.max_ts_off = -1, base
        self.last_tidx_ts = None

    def _time_entry(self):
        if self.max_ts >= 0 and (self.last_tidx_ts is None or self.max_ts > self.last_tidx_ts):
            self.tidx.write(struct.pack(">qi", self.max_ts, self.max_ts_off - self.base))
            self.last_tidx_ts = self.max_ts

    def _close(self):
        if self.f:
            self._time_entry()
            for fh in (self.f, self.idx, self.tidx):
                fh.flush()
                os.fsync(fh.fileno())
                fh.close()
            self.f = None

    def append(self, batch, base_offset, last_offset, max_ts):
        if self.f is None or (self.size > 0 and self.size + len(batch) > self.segment_bytes):
            self._close()
            self._open(base_offset)
        if self.since_index > self.index_interval:
            self.idx.write(struct.pack(">iI", last_offset - self.base, self.size))
            if max_ts > self.max_ts:  # include this batch, as Kafka updates before indexing
                self.max_ts, self.max_ts_off = max_ts, last_offset
            self._time_entry()
            self.since_index = 0
        if max_ts > self.max_ts:
            self.max_ts, self.max_ts_off = max_ts, last_offset
        self.f.write(batch)
        self.size += len(batch)
        self.since_index += len(batch)

    def close(self):
        self._close()


def cmd_write(args):
    rng = random.Random(args.seed)
    os.makedirs(args.dir, exist_ok=True)
    codecs = [CODEC_IDS[c] for c in args.codecs.split(",")]
    missing = [CODEC_NAMES[c] for c in codecs if c not in ENCODERS]
    if missing:
        print("codecs not available in this python: %s" % ",".join(missing), file=sys.stderr)
        return 2
    w = SegmentWriter(args.dir, args.segment_bytes, args.index_interval)
    offset = args.base_offset
    ts0 = 1700000000000
    lines = []
    for i in range(args.batches):
        n = rng.choice([1, 1, 2, 5, 10, rng.randint(1, 60)])
        recs = random_records(rng, n, ts0)
        ts0 += rng.randint(1, 50)
        codec = codecs[i % len(codecs)]
        lat = ts0 + 1000000 if args.log_append_time else None
        base_ts = recs[0][0]
        batch = build_batch(offset, recs, codec, base_ts, log_append_time_ms=lat)
        max_ts = lat if lat is not None else max(r[0] for r in recs)
        w.append(batch, offset, offset + n - 1, max_ts)
        lines.append("B %d %s" % (offset, batch.hex()))
        for j, (ts, key, value, headers) in enumerate(recs):
            h = " ".join("%s %s" % (hx(k), hx(v)) for k, v in headers)
            lines.append(("R %d %d %s %s %d %s" % (offset + j, lat if lat is not None else ts,
                                                    hx(key), hx(value), len(headers), h)).rstrip())
        offset += n
    w.close()
    with open(args.manifest, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.dump({"dir": args.dir, "batches": args.batches, "next_offset": offset}, sys.stdout)
    sys.stdout.write("\n")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("read")
    r.add_argument("dir")
    r.add_argument("--expect", help="manifest to compare with")
    r.add_argument("--dump-records", action="store_true")
    r.add_argument("--index-interval", type=int, default=0,
                   help="fail when more log bytes than this plus one batch lie between index entries")
    r.add_argument("--allow-preallocated-index", action="store_true",
                   help="ignore zero entries at the end of an index (a live, not trimmed, index)")
    w = sub.add_parser("write")
    w.add_argument("dir")
    w.add_argument("--manifest", required=True)
    w.add_argument("--seed", type=int, default=1)
    w.add_argument("--batches", type=int, default=200)
    w.add_argument("--base-offset", type=int, default=0)
    w.add_argument("--segment-bytes", type=int, default=64 * 1024)
    w.add_argument("--index-interval", type=int, default=4096)
    w.add_argument("--log-append-time", action="store_true")
    w.add_argument("--codecs", default="none")
    args = ap.parse_args()
    return cmd_read(args) if args.cmd == "read" else cmd_write(args)


if __name__ == "__main__":
    sys.exit(main())
