#!/usr/bin/python3
"""kgen.py -- generates Strata's Kafka message codecs from the Kafka JSON schemas.

Outputs (all committed; rerun with `make regen`):
  include/strata/kmsg.h   structs, decode/encode/init prototypes, API table
  src/kmsg.c              codecs on top of kio (struct kr / struct kw) and arena
  t/kmsg_roundtrip.h/.c   test-only fillers and deep comparisons for every message

Owns the mapping schema -> C; must not be edited by hand downstream. Standard library only.

Usage: kgen.py --schemas DIR --out REPO_ROOT
"""
import argparse
import json
import os
import re
import sys

# The APIs Strata serves: (name, api key). The one list; everything else derives from it.
APIS = [
    ("Produce", 0), ("Fetch", 1), ("ListOffsets", 2), ("Metadata", 3),
    ("OffsetCommit", 8), ("OffsetFetch", 9), ("FindCoordinator", 10), ("JoinGroup", 11),
    ("Heartbeat", 12), ("LeaveGroup", 13), ("SyncGroup", 14), ("DescribeGroups", 15),
    ("ListGroups", 16), ("SaslHandshake", 17), ("ApiVersions", 18), ("CreateTopics", 19),
    ("DeleteTopics", 20), ("DeleteRecords", 21), ("InitProducerId", 22),
    ("OffsetForLeaderEpoch", 23), ("AddPartitionsToTxn", 24), ("AddOffsetsToTxn", 25),
    ("EndTxn", 26), ("TxnOffsetCommit", 28), ("DescribeAcls", 29), ("CreateAcls", 30),
    ("DeleteAcls", 31), ("DescribeConfigs", 32), ("AlterConfigs", 33), ("DescribeLogDirs", 35),
    ("SaslAuthenticate", 36), ("CreatePartitions", 37), ("DeleteGroups", 42),
    ("IncrementalAlterConfigs", 44), ("OffsetDelete", 47), ("DescribeCluster", 60),
    ("DescribeProducers", 61), ("DescribeTransactions", 65), ("ListTransactions", 66),
]
HEADERS = ["RequestHeader", "ResponseHeader"]
DATA = ["ConsumerProtocolSubscription", "ConsumerProtocolAssignment"]

PRIM = {
    # kind: (C type, kr reader, kw writer, fixed wire size)
    "int8": ("int8_t", "kr_i8", "kw_i8", 1),
    "int16": ("int16_t", "kr_i16", "kw_i16", 2),
    "uint16": ("uint16_t", "kr_u16", "kw_u16", 2),
    "int32": ("int32_t", "kr_i32", "kw_i32", 4),
    "int64": ("int64_t", "kr_i64", "kw_i64", 8),
    "float64": ("double", "kr_f64", "kw_f64", 8),
    "bool": ("bool", "kr_bool", "kw_bool", 1),
}
VARLEN = ("string", "bytes", "records")
# Named array types for arrays of primitives (struct arrays are anonymous structs in their parent).
PRIM_ARRAY = {
    "int8": "kmsg_i8_array", "int16": "kmsg_i16_array", "uint16": "kmsg_u16_array",
    "int32": "kmsg_i32_array", "int64": "kmsg_i64_array", "float64": "kmsg_f64_array",
    "bool": "kmsg_bool_array", "string": "kmsg_str_array", "bytes": "kmsg_bytes_array",
    "records": "kmsg_bytes_array", "uuid": "kmsg_uuid_array",
}
C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float for goto
if inline int long register restrict return short signed sizeof static struct switch typedef union
unsigned void volatile while bool true false errno""".split())


def die(msg):
    sys.stderr.write("kgen: %s\n" % msg)
    sys.exit(1)


def strip_comments(text):
    """Drops // comments outside string literals (the schemas are JSON plus comments)."""
    out, i, n, in_str = [], 0, len(text), False
    while i < n:
        c = text[i]
        if in_str:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
            out.append(c)
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


def load_schema(schema_dir, name):
    path = os.path.join(schema_dir, name + ".json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.loads(strip_comments(f.read()))
    except (OSError, ValueError) as e:
        die("%s: %s" % (path, e))


def parse_versions(spec, valid=None):
    """'3+', '0-4', '5', 'none' -> set of ints (open ranges end at max(valid))."""
    spec = str(spec).strip()
    top = max(valid) if valid else 0
    if spec == "none" or spec == "":
        vs = set()
    elif spec.endswith("+"):
        vs = set(range(int(spec[:-1]), max(top, int(spec[:-1])) + 1))
    elif "-" in spec:
        a, b = spec.split("-")
        vs = set(range(int(a), int(b) + 1))
    else:
        vs = {int(spec)}
    return vs & valid if valid is not None else vs


def snake(name):
    s = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    s = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", "_", s)
    return s.lower()


def cident(name):
    s = snake(name)
    return s + "_" if s in C_KEYWORDS else s


class Field:
    pass


class Struct:
    def __init__(self, msg, name, cname):
        self.msg, self.name, self.cname = msg, name, cname
        self.fields = []
        self.reach = set()
        self.raw_fields = None


class Message:
    pass


def intervals(vs):
    out, cur = [], None
    for v in sorted(vs):
        if cur and v == cur[1] + 1:
            cur[1] = v
        else:
            cur = [v, v]
            out.append(cur)
    return out


def cond(vs, reach, var="v"):
    """C condition that is true for versions in vs, given the version is known to be in reach."""
    vs = vs & reach
    if vs == reach:
        return "1"
    if not vs:
        return "0"
    lo, hi = min(reach), max(reach)
    parts = []
    for a, b in intervals(vs):
        terms = []
        if a == b and a != lo and b != hi:
            terms.append("%s == %d" % (var, a))
        else:
            if a > lo:
                terms.append("%s >= %d" % (var, a))
            if b < hi:
                terms.append("%s <= %d" % (var, b))
        parts.append(" && ".join(terms) if terms else "1")
    if len(parts) == 1:
        return parts[0]
    return " || ".join("(%s)" % p for p in parts)


def vdesc(vs):
    """Human version set for comments: 'v3+', 'v0-4', 'v2'."""
    if not vs:
        return "never"
    return ",".join(("v%d" % a) if a == b else ("v%d-%d" % (a, b)) for a, b in intervals(vs))


class Gen:
    def __init__(self, schema_dir):
        self.schema_dir = schema_dir
        self.messages = []
        self.idents = {}

    def claim(self, ident, what):
        if ident in self.idents:
            die("identifier %s for %s collides with %s" % (ident, what, self.idents[ident]))
        self.idents[ident] = what

    # ---- model --------------------------------------------------------------------------------

    def load_message(self, name, api=None):
        js = load_schema(self.schema_dir, name)
        if js.get("name") != name:
            die("%s.json names itself %s" % (name, js.get("name")))
        m = Message()
        m.name, m.js, m.api = name, js, api
        m.kind = js["type"]
        m.cname = "kmsg_" + snake(name)
        m.valid = parse_versions(js["validVersions"])
        if not m.valid:
            die("%s: empty validVersions" % name)
        m.flex = parse_versions(js.get("flexibleVersions", "none"), m.valid)
        m.unstable = bool(js.get("latestVersionUnstable", False))
        m.structs = {}      # schema type name -> Struct
        m.order = []        # structs, children before parents
        self.claim(m.cname, name)
        # Pass 1: every struct definition (commonStructs and inline "fields"), by type name.
        for cs in js.get("commonStructs", []):
            self.define_struct(m, cs["name"], cs["fields"])

        def collect(fields):
            for f in fields:
                if "fields" in f:
                    t = f["type"][2:] if f["type"].startswith("[]") else f["type"]
                    self.define_struct(m, t, f["fields"])
                    collect(f["fields"])
        collect(js["fields"])
        for cs in js.get("commonStructs", []):
            collect(cs["fields"])
        top = Struct(m, name, m.cname)
        top.raw_fields = js["fields"]
        m.top = top
        # Pass 2: fields and reachable versions, top down.
        for s in list(m.structs.values()) + [top]:
            s.fields = [self.parse_field(m, s, f) for f in s.raw_fields]
            seen = set()
            for f in s.fields:
                if f.cname in seen:
                    die("%s: duplicate field %s" % (s.name, f.cname))
                seen.add(f.cname)
            tags = [f.tag for f in s.fields if f.tag is not None]
            if len(tags) != len(set(tags)):
                die("%s: duplicate tags" % s.name)
        self.mark_reach(top, m.valid)
        self.order_structs(m, top, set())
        for s in m.structs.values():
            if not s.reach:
                die("%s: struct %s is never reachable" % (name, s.name))
        self.messages.append(m)
        return m

    def define_struct(self, m, tname, fields):
        if tname in m.structs:
            if m.structs[tname].raw_fields is not fields and m.structs[tname].raw_fields != fields:
                die("%s: struct %s defined twice differently" % (m.name, tname))
            return
        short = tname[len(m.name):] if tname.startswith(m.name) and len(tname) > len(m.name) else tname
        cname = "%s_%s" % (m.cname, snake(short))
        self.claim(cname, "%s.%s" % (m.name, tname))
        s = Struct(m, tname, cname)
        s.raw_fields = fields
        m.structs[tname] = s

    def parse_field(self, m, s, js):
        f = Field()
        f.name = js["name"]
        f.cname = cident(f.name)
        f.js = js
        f.about = js.get("about", "")
        t = js["type"]
        f.is_array = t.startswith("[]")
        base = t[2:] if f.is_array else t
        if base in PRIM or base in VARLEN or base == "uuid":
            f.kind = base
            f.struct = None
        else:
            if base not in m.structs:
                die("%s: field %s has unknown type %s" % (m.name, f.name, t))
            f.kind = "struct"
            f.struct = m.structs[base]
        f.versions = parse_versions(js["versions"], m.valid)
        f.nullable = parse_versions(js.get("nullableVersions", "none"), m.valid)
        if f.nullable and not (f.is_array or f.kind in VARLEN):
            die("%s.%s: only strings, bytes, records and arrays can be nullable" % (m.name, f.name))
        f.tagged = parse_versions(js.get("taggedVersions", "none"), m.valid)
        f.tag = js.get("tag")
        if (f.tag is None) != (not js.get("taggedVersions")):
            die("%s.%s: tag and taggedVersions go together" % (m.name, f.name))
        if f.tagged - m.flex:
            die("%s.%s: tagged in non-flexible versions" % (m.name, f.name))
        f.ignorable = bool(js.get("ignorable", False))
        f.flex_override = parse_versions(js["flexibleVersions"], m.valid) if "flexibleVersions" in js else None
        if f.flex_override is not None and (f.is_array or f.kind not in VARLEN):
            die("%s.%s: field flexibleVersions only supported for strings/bytes" % (m.name, f.name))
        f.default = self.parse_default(m, f, js.get("default"))
        return f

    def parse_default(self, m, f, d):
        where = "%s.%s" % (m.name, f.name)
        if f.is_array:
            if d is not None and d != "null":
                die("%s: array default %r" % (where, d))
            if d == "null" and not f.nullable:
                die("%s: null default for non-nullable array" % where)
            return "null" if d == "null" else None
        if f.kind == "struct":
            if d is not None:
                die("%s: struct default" % where)
            return None
        if f.kind in ("string",):
            if d == "null":
                if not f.nullable:
                    die("%s: null default for non-nullable string" % where)
                return None
            return "" if d is None else str(d)
        if f.kind in ("bytes", "records"):
            # Kafka's records fields default to null (MemoryRecords null), bytes to empty.
            if d == "null" or (d is None and f.kind == "records" and f.nullable):
                return None
            if d not in (None, ""):
                die("%s: bytes default %r" % (where, d))
            return ""
        if f.kind == "uuid":
            if d not in (None, "", "AAAAAAAAAAAAAAAAAAAAAA"):
                die("%s: uuid default %r" % (where, d))
            return None
        if f.kind == "bool":
            if d in (None, "false", False):
                return False
            if d in ("true", True):
                return True
            die("%s: bool default %r" % (where, d))
        if f.kind == "float64":
            return float(d) if d is not None else 0.0
        # integers
        if d is None:
            return 0
        v = int(d, 0) if isinstance(d, str) else int(d)
        bits = {"int8": 8, "int16": 16, "int32": 32, "int64": 64}.get(f.kind)
        if bits and not (-(1 << (bits - 1)) <= v < (1 << (bits - 1))):
            die("%s: default %d out of range" % (where, v))
        if f.kind == "uint16" and not (0 <= v <= 0xffff):
            die("%s: default %d out of range" % (where, v))
        return v

    def mark_reach(self, s, vs):
        new = vs - s.reach
        if not new:
            return
        s.reach |= new
        for f in s.fields:
            if f.struct:
                self.mark_reach(f.struct, f.versions & vs)

    def order_structs(self, m, s, seen):
        if s.name in seen:
            return
        seen.add(s.name)
        for f in s.fields:
            if f.struct:
                self.order_structs(m, f.struct, seen)
        m.order.append(s)

    # ---- per-field version sets, relative to the struct's reachable versions ---------------------

    @staticmethod
    def present(s, f):
        return f.versions & s.reach

    @staticmethod
    def tagged_in(s, f):
        return f.tagged & f.versions & s.reach & s.msg.flex

    def regular_in(self, s, f):
        return self.present(s, f) - self.tagged_in(s, f)

    @staticmethod
    def compact_in(s, f):
        return (f.flex_override if f.flex_override is not None else s.msg.flex) & s.reach

    # ---- C helpers ----------------------------------------------------------------------------

    def ctype(self, f):
        if f.is_array:
            if f.kind == "struct":
                return None  # anonymous, written inline
            return "struct " + PRIM_ARRAY[f.kind]
        if f.kind in PRIM:
            return PRIM[f.kind][0]
        if f.kind == "string":
            return "struct kstr"
        if f.kind in ("bytes", "records"):
            return "struct kbytes"
        if f.kind == "uuid":
            return "uint8_t"
        return "struct " + f.struct.cname

    def default_literal(self, f):
        """C expression of a scalar field's default value."""
        if f.kind == "bool":
            return "true" if f.default else "false"
        if f.kind == "float64":
            return repr(float(f.default))
        if f.kind == "int64":
            if f.default == -(1 << 63):
                return "INT64_MIN"
            return "INT64_C(%d)" % f.default
        if f.kind == "int32" and f.default == -(1 << 31):
            return "INT32_MIN"
        return str(f.default)

    def nondefault(self, f, e):
        """C expression: field value e differs from the field's default."""
        if f.is_array:
            if f.default == "null":
                return "%s.len >= 0" % e
            return "%s.len != 0" % e
        if f.kind == "struct":
            f.struct.need_nd = True
            return "%s_nondefault(&%s)" % (f.struct.cname, e)
        if f.kind == "string":
            if f.default is None:
                return "%s.len >= 0" % e
            if f.default == "":
                return "%s.len != 0" % e
            return "!kstr_eq(%s, KSTR_LIT(%s))" % (e, cstr(f.default))
        if f.kind in ("bytes", "records"):
            if f.default is None:
                return "%s.len >= 0" % e
            return "%s.len != 0" % e
        if f.kind == "uuid":
            return "!kmsg_uuid_is_zero(%s)" % e
        if f.kind == "bool":
            return "!%s" % e if f.default else e
        return "%s != %s" % (e, self.default_literal(f))

    def min_size(self, s, v):
        """Fewest bytes struct s can take on the wire at version v."""
        n = 0
        for f in s.fields:
            if v not in self.regular_in(s, f):
                continue
            n += self.field_min_size(s, f, v)
        if v in s.msg.flex:
            n += 1
        return n

    def field_min_size(self, s, f, v):
        compact = v in self.compact_in(s, f)
        if f.is_array:
            return 1 if compact else 4
        return self.scalar_min_size(f, v, compact)

    def scalar_min_size(self, f, v, compact):
        if f.kind in PRIM:
            return PRIM[f.kind][3]
        if f.kind == "uuid":
            return 16
        if f.kind == "string":
            return 1 if compact else 2
        if f.kind in ("bytes", "records"):
            return 1 if compact else 4
        return self.min_size(f.struct, v)

    def elem_min(self, s, f):
        vs = self.present(s, f)
        best = None
        for v in vs:
            compact = v in self.compact_in(s, f)
            n = self.scalar_min_size(f, v, compact)
            best = n if best is None else min(best, n)
        return max(1, best or 1)


def cstr(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def short_about(text, limit=110):
    t = " ".join(text.split())
    t = t.replace("*/", "* /")
    m = re.match(r"(.+?\.)(\s|$)", t)
    if m:
        t = m.group(1)
    if len(t) > limit:
        t = t[: limit - 3].rstrip() + "..."
    return t


# ==== header =========================================================================================

def gen_header(g):
    o = []
    w = o.append
    w("/* kmsg.h -- generated by tools/kgen.py from the Kafka JSON schemas, do not edit (make regen). */")
    w("/* Kafka request/response structs and their codecs for every API Strata serves.")
    w(" *")
    w(" * Every struct carries each field of every version. Strings (struct kstr) and bytes/records (struct")
    w(" * kbytes) are zero-copy views into the decoded buffer; arrays are { items; len } with len -1 = null")
    w(" * and items allocated from the arena passed to decode. Fields absent from a version keep their")
    w(" * schema default after decode.")
    w(" *")
    w(" *   int kmsg_X_decode(struct kr *r, int16_t version, struct kmsg_X *out, struct arena *a);")
    w(" *     0, -EBADMSG (malformed/truncated input, or null in a non-nullable field), -ENOMEM (arena),")
    w(" *     -EINVAL (version outside the schema's validVersions). Trailing bytes after the message are")
    w(" *     left unread in r (the caller decides whether they are an error). On error out is partly")
    w(" *     filled: do not use it.")
    w(" *   int kmsg_X_encode(struct kw *w, int16_t version, const struct kmsg_X *in);")
    w(" *     0, -EINVAL (version outside validVersions; null in a non-nullable field; or, as Kafka does,")
    w(" *     a non-default value in a non-ignorable field the version does not have -- ignorable ones are")
    w(" *     silently dropped), or w->err (-ENOMEM). Tagged fields are written only when non-default.")
    w(" *   void kmsg_X_init(struct kmsg_X *m);  all fields to schema defaults, arrays empty. Nested structs")
    w(" *     have one too: init every array item you fill in an outgoing message.")
    w(" *")
    w(" * Every function takes the version from the caller: pick it with the API table below and the")
    w(" * request header. ConsumerProtocolSubscription/Assignment (group member metadata inside JoinGroup/")
    w(" * SyncGroup bytes) start with an int16 version the caller reads first (kr_i16); like Kafka, decode")
    w(" * a newer version with the newest known one (fields it appended are then trailing bytes).")
    w(" */")
    w("#ifndef STRATA_KMSG_H")
    w("#define STRATA_KMSG_H")
    w("")
    w("#include <stdbool.h>")
    w("#include <stddef.h>")
    w("#include <stdint.h>")
    w("")
    w('#include "strata/arena.h"')
    w('#include "strata/kio.h"')
    w("")
    w("/* Arrays of primitives. len -1 is a null array. */")
    seen = set()
    for kind, name in PRIM_ARRAY.items():
        if name in seen:
            continue
        seen.add(name)
        if kind == "uuid":
            w("struct %s { uint8_t (*items)[16]; int32_t len; };" % name)
        else:
            ct = PRIM[kind][0] if kind in PRIM else ("struct kstr" if kind == "string" else "struct kbytes")
            w("struct %s { %s *items; int32_t len; };" % (name, ct))
    w("")
    w("static inline bool kmsg_uuid_is_zero(const uint8_t u[16])")
    w("{")
    w("\tfor (int i = 0; i < 16; i++)")
    w("\t\tif (u[i])")
    w("\t\t\treturn false;")
    w("\treturn true;")
    w("}")
    w("")
    w("/* API keys. */")
    w("enum kmsg_api_key {")
    for name, key in sorted(APIS, key=lambda x: x[1]):
        w("\tKMSG_API_%s = %d," % (snake(name).upper(), key))
    w("};")
    w("")
    w("struct kmsg_api {")
    w("\tint16_t key;")
    w("\tconst char *name;        /* \"Produce\" */")
    w("\tint16_t min_version;     /* the schema's validVersions */")
    w("\tint16_t max_version;")
    w("\tint16_t flexible_min;    /* first flexible version, -1 if none */")
    w("\tbool latest_unstable;    /* max_version is still unstable upstream: do not advertise it */")
    w("};")
    w("/* Every API above, ascending key. */")
    w("extern const struct kmsg_api kmsg_apis[];")
    w("extern const size_t kmsg_apis_len;")
    w("/* The table entry for key, or NULL. */")
    w("const struct kmsg_api *kmsg_api_find(int16_t api_key);")
    w("/* Request header version (1 or 2; 0 only for ControlledShutdown v0) for a request of this key and")
    w(" * version, -1 for a key not in the table or a negative version. Versions above the schema's are")
    w(" * treated like the newest (Kafka does so for ApiVersions from newer clients). */")
    w("int kmsg_request_header_version(int16_t api_key, int16_t api_version);")
    w("/* Response header version (0 or 1); ApiVersions responses always use 0. -1 as above. */")
    w("int kmsg_response_header_version(int16_t api_key, int16_t api_version);")
    w("")
    for m in g.messages:
        w("/* ---- %s%s: versions %s, flexible %s%s ---- */" % (
            m.name, (" (key %d)" % m.api[1]) if m.api else "", vdesc(m.valid), vdesc(m.flex),
            ", latest unstable" if m.unstable else ""))
        for s in m.order:
            gen_struct_decl(g, s, w)
            if s is not m.top:
                w("void %s_init(struct %s *m);" % (s.cname, s.cname))
        w("void %s_init(struct %s *m);" % (m.cname, m.cname))
        w("int %s_decode(struct kr *r, int16_t version, struct %s *out, struct arena *a);" % (m.cname, m.cname))
        w("int %s_encode(struct kw *w, int16_t version, const struct %s *in);" % (m.cname, m.cname))
        w("")
    w("/* Request header: decodes api key, version, correlation id and client id, choosing the header")
    w(" * version from the key and version (unknown keys read as header v1). 0, -EBADMSG or -ENOMEM. */")
    w("int kmsg_request_header_read(struct kr *r, struct kmsg_request_header *out, struct arena *a);")
    w("")
    w("#endif")
    return "\n".join(o) + "\n"


def field_comment(g, s, f):
    parts = [vdesc(g.present(s, f))]
    nv = f.nullable & g.present(s, f)
    if nv:
        parts.append("nullable " + vdesc(nv))
    tv = g.tagged_in(s, f)
    if tv:
        parts.append("tag %d %s" % (f.tag, vdesc(tv)))
    if not f.is_array and f.kind not in ("struct", "uuid"):
        if f.kind == "string":
            d = "null" if f.default is None else cstr(f.default)
        elif f.kind in ("bytes", "records"):
            d = "null" if f.default is None else "empty"
        else:
            d = g.default_literal(f)
            if d.startswith("INT64_C("):
                d = d[8:-1]
        if d not in ("0", "false", '""', "empty", "0.0"):
            parts.append("default " + d)
    if f.ignorable:
        parts.append("ignorable")
    about = short_about(f.about)
    return "/* %s%s */" % (", ".join(parts), (": " + about) if about else "")


def gen_struct_decl(g, s, w):
    w("struct %s {" % s.cname)
    if not s.fields:
        w("\tchar unused_; /* no fields */")
    for f in s.fields:
        cm = field_comment(g, s, f)
        if f.is_array and f.kind == "struct":
            w("\tstruct { struct %s *items; int32_t len; } %s; %s" % (f.struct.cname, f.cname, cm))
        elif f.kind == "uuid" and not f.is_array:
            w("\tuint8_t %s[16]; %s" % (f.cname, cm))
        else:
            w("\t%s %s; %s" % (g.ctype(f), f.cname, cm))
    w("};")


# ==== codec source ====================================================================================

def gen_source(g):
    o = []
    w = o.append
    w("/* kmsg.c -- generated by tools/kgen.py from the Kafka JSON schemas, do not edit (make regen).")
    w(" * Decoders/encoders for every Strata API on top of kio; all bounds checks live in kio. */")
    w('#include "strata/kmsg.h"')
    w("")
    w("#include <errno.h>")
    w("#include <string.h>")
    w("")
    w("/* ---- shared helpers ---- */")
    w("""
static int rd_str(struct kr *r, bool compact, bool nullable, struct kstr *out)
{
	*out = compact ? kr_compact_string(r) : kr_string(r);
	if (!r->err && out->len < 0 && !nullable)
		kr_fail(r);
	return r->err ? -EBADMSG : 0;
}

static int rd_bytes(struct kr *r, bool compact, bool nullable, struct kbytes *out)
{
	*out = compact ? kr_compact_bytes(r) : kr_bytes(r);
	if (!r->err && out->len < 0 && !nullable)
		kr_fail(r);
	return r->err ? -EBADMSG : 0;
}

/* Reads an array length and allocates zeroed items; *len -1 for null. NULL items for 0/-1. */
static void *rd_arr(struct kr *r, bool compact, bool nullable, size_t min_elem, size_t elem_size,
		    struct arena *a, int32_t *len, int *rc)
{
	int32_t n = kr_array_len_min(r, compact, min_elem);
	*len = 0;
	*rc = 0;
	if (!r->err && n < 0 && !nullable)
		kr_fail(r);
	if (r->err) {
		*rc = -EBADMSG;
		return NULL;
	}
	*len = n;
	if (n <= 0)
		return NULL;
	void *p = arena_calloc(a, (size_t)n, elem_size);
	if (!p)
		*rc = -ENOMEM;
	return p;
}

static int wr_str(struct kw *w, bool compact, bool nullable, struct kstr s)
{
	if (s.len < 0 && !nullable)
		return kw_fail(w, -EINVAL);
	if (compact)
		kw_compact_string(w, s);
	else
		kw_string(w, s);
	return w->err;
}

static int wr_bytes(struct kw *w, bool compact, bool nullable, struct kbytes b)
{
	if (b.len < 0 && !nullable)
		return kw_fail(w, -EINVAL);
	if (compact)
		kw_compact_bytes(w, b);
	else
		kw_bytes(w, b);
	return w->err;
}

static int wr_arr(struct kw *w, bool compact, bool nullable, int32_t len, const void *items)
{
	if ((len < 0 && !nullable) || len < -1 || (len > 0 && !items))
		return kw_fail(w, -EINVAL);
	if (compact)
		kw_compact_array_len(w, len);
	else
		kw_array_len(w, len);
	return w->err;
}
""".strip("\n"))
    w("")
    # Prototypes of the static per-struct functions (nested structs; the top struct of each message is public).
    for m in g.messages:
        for s in m.order:
            s.need_nd = getattr(s, "need_nd", False)
    bodies = []
    for m in g.messages:
        for s in m.order:
            bodies.append(gen_struct_fns(g, s))
    # nondefault helpers are discovered while generating bodies; nested structs need theirs too.
    changed = True
    while changed:
        changed = False
        for m in g.messages:
            for s in m.order:
                if s.need_nd:
                    for f in s.fields:
                        if f.struct and not f.struct.need_nd:
                            f.struct.need_nd = changed = True
    w("/* ---- prototypes ---- */")
    for m in g.messages:
        for s in m.order:
            if s is not m.top:
                w("static int %s_decode(struct kr *r, int16_t v, struct %s *o, struct arena *a);" % (s.cname, s.cname))
                w("static int %s_encode(struct kw *w, int16_t v, const struct %s *o);" % (s.cname, s.cname))
            if s.need_nd:
                w("static bool %s_nondefault(const struct %s *o);" % (s.cname, s.cname))
    w("")
    for m in g.messages:
        for s in m.order:
            if s.need_nd:
                w(gen_nondefault(g, s))
    o.extend(bodies)
    o.append(gen_tables(g))
    return "\n".join(o) + "\n"


def gen_nondefault(g, s):
    lines = ["static bool %s_nondefault(const struct %s *o)" % (s.cname, s.cname), "{"]
    terms = [g.nondefault(f, "o->" + f.cname) for f in s.fields]
    if not terms:
        lines.append("\t(void)o;")
        lines.append("\treturn false;")
    else:
        lines.append("\treturn " + " ||\n\t       ".join("(%s)" % t for t in terms) + ";")
    lines.append("}")
    lines.append("")
    return "\n".join(lines)


def gen_init_body(g, s):
    L = ["\tmemset(o, 0, sizeof *o);"]
    for f in s.fields:
        e = "o->" + f.cname
        if f.is_array:
            if f.default == "null":
                L.append("\t%s.len = -1;" % e)
            continue
        if f.kind == "struct":
            L.append("\t%s_init(&%s);" % (f.struct.cname, e))
        elif f.kind == "string":
            if f.default is None:
                L.append("\t%s = KSTR_NULL;" % e)
            else:
                L.append("\t%s = KSTR_LIT(%s);" % (e, cstr(f.default)))
        elif f.kind in ("bytes", "records"):
            if f.default is None:
                L.append("\t%s = KBYTES_NULL;" % e)
        elif f.kind == "uuid":
            pass
        elif f.kind == "bool":
            if f.default:
                L.append("\t%s = true;" % e)
        elif f.kind == "float64":
            if f.default != 0.0:
                L.append("\t%s = %s;" % (e, g.default_literal(f)))
        elif f.default != 0:
            L.append("\t%s = %s;" % (e, g.default_literal(f)))
    return L


def read_scalar(g, s, f, e, R, compact, nullable):
    """Statements reading one value of f's element kind into lvalue e from reader R."""
    if f.kind in PRIM:
        return ["%s = %s(%s);" % (e, PRIM[f.kind][1], R)]
    if f.kind == "uuid":
        return ["kr_uuid(%s, %s);" % (R, e)]
    if f.kind == "string":
        return ["if ((rc = rd_str(%s, %s, %s, &%s)) < 0)" % (R, compact, nullable, e), "\treturn rc;"]
    if f.kind in ("bytes", "records"):
        return ["if ((rc = rd_bytes(%s, %s, %s, &%s)) < 0)" % (R, compact, nullable, e), "\treturn rc;"]
    return ["if ((rc = %s_decode(%s, v, &%s, a)) < 0)" % (f.struct.cname, R, e), "\treturn rc;"]


def read_field(g, s, f, R, vs, compact):
    """Statements reading field f (present in versions vs) from reader R."""
    e = "o->" + f.cname
    nullable = cbool(cond(f.nullable & vs, vs))  # evaluated only where v is in vs
    if not f.is_array:
        return read_scalar(g, s, f, e, R, compact, nullable)
    L = ["%s.items = rd_arr(%s, %s, %s, %d, sizeof *%s.items, a, &%s.len, &rc);" % (
        e, R, compact, nullable, g.elem_min(s, f), e, e),
        "if (rc < 0)", "\treturn rc;",
        "for (int32_t i = 0; i < %s.len; i++) {" % e]
    elem_null = "false"  # array elements are never nullable in the schemas Strata uses
    L += ["\t" + x for x in read_scalar(g, s, f, "%s.items[i]" % e, R, compact, elem_null)]
    L.append("}")
    return L


def write_scalar(g, s, f, e, compact, nullable):
    if f.kind in PRIM:
        return ["%s(w, %s);" % (PRIM[f.kind][2], e)]
    if f.kind == "uuid":
        return ["kw_uuid(w, %s);" % e]
    if f.kind == "string":
        return ["if ((rc = wr_str(w, %s, %s, %s)) < 0)" % (compact, nullable, e), "\treturn rc;"]
    if f.kind in ("bytes", "records"):
        return ["if ((rc = wr_bytes(w, %s, %s, %s)) < 0)" % (compact, nullable, e), "\treturn rc;"]
    return ["if ((rc = %s_encode(w, v, &%s)) < 0)" % (f.struct.cname, e), "\treturn rc;"]


def write_field(g, s, f, vs, compact):
    e = "o->" + f.cname
    nullable = cbool(cond(f.nullable & vs, vs))
    if not f.is_array:
        return write_scalar(g, s, f, e, compact, nullable)
    L = ["if ((rc = wr_arr(w, %s, %s, %s.len, %s.items)) < 0)" % (compact, nullable, e, e), "\treturn rc;",
         "for (int32_t i = 0; i < %s.len; i++) {" % e]
    L += ["\t" + x for x in write_scalar(g, s, f, "%s.items[i]" % e, compact, "false")]
    L.append("}")
    return L


def cbool(c):
    return {"1": "true", "0": "false"}.get(c, c)


def block(c, stmts, indent="\t"):
    if c == "0":
        return []
    if c == "1":
        return [indent + x for x in stmts]
    out = [indent + "if (%s) {" % c] if len(stmts) > 1 else [indent + "if (%s)" % c]
    out += [indent + "\t" + x for x in stmts]
    if len(stmts) > 1:
        out.append(indent + "}")
    return out


def gen_struct_fns(g, s):
    m = s.msg
    top = s is m.top
    L = []
    flexc = cond(m.flex, s.reach)
    tagged = sorted([f for f in s.fields if g.tagged_in(s, f)], key=lambda f: f.tag)

    # init
    L.append("void %s_init(struct %s *o)" % (s.cname, s.cname))
    L.append("{")
    L += gen_init_body(g, s)
    L.append("}")
    L.append("")

    # decode
    if top:
        L.append("int %s_decode(struct kr *r, int16_t v, struct %s *o, struct arena *a)" % (s.cname, s.cname))
    else:
        L.append("static int %s_decode(struct kr *r, int16_t v, struct %s *o, struct arena *a)" % (s.cname, s.cname))
    L.append("{")
    L.append("\tint rc = 0;")
    L.append("\tconst bool flex = %s;" % ({"1": "true", "0": "false"}.get(flexc, flexc)))
    L.append("\t(void)flex; (void)rc; (void)a;")
    if top:
        L.append("\tif (v < %d || v > %d)" % (min(m.valid), max(m.valid)))
        L.append("\t\treturn -EINVAL;")
    L.append("\t%s_init(o);" % s.cname)
    for f in s.fields:
        reg = g.regular_in(s, f)
        if not reg:
            continue
        compact = cbool(cond(g.compact_in(s, f) & reg, reg))
        stmts = read_field(g, s, f, "r", reg, compact)
        L += block(cond(reg, s.reach), stmts)
    if tagged:
        L.append("\tif (flex) {")
        L.append("\t\tuint32_t ntags = kr_tags_count(r);")
        L.append("\t\tfor (uint32_t ti = 0; ti < ntags && !r->err; ti++) {")
        L.append("\t\t\tuint32_t tag;")
        L.append("\t\t\tstruct kr tf;")
        L.append("\t\t\tkr_tag_next(r, &tag, &tf);")
        L.append("\t\t\tstruct kr *t = &tf;")
        L.append("\t\t\tswitch (tag) {")
        for f in tagged:
            tv = g.tagged_in(s, f)
            L.append("\t\t\tcase %d:" % f.tag)
            stmts = read_field(g, s, f, "t", tv, "true")
            L += block(cond(tv, s.reach), stmts, "\t\t\t\t")
            L.append("\t\t\t\tbreak;")
        L.append("\t\t\tdefault:")
        L.append("\t\t\t\tbreak;")
        L.append("\t\t\t}")
        L.append("\t\t\tif (tf.err) {")
        L.append("\t\t\t\tkr_fail(r); /* a known field overran its declared size */")
        L.append("\t\t\t\treturn -EBADMSG;")
        L.append("\t\t\t}")
        L.append("\t\t}")
        L.append("\t}")
    elif flexc != "0":
        L += block(flexc, ["kr_skip_tags(r);"])
    L.append("\treturn r->err ? -EBADMSG : 0;")
    L.append("}")
    L.append("")

    # encode
    if top:
        L.append("int %s_encode(struct kw *w, int16_t v, const struct %s *o)" % (s.cname, s.cname))
    else:
        L.append("static int %s_encode(struct kw *w, int16_t v, const struct %s *o)" % (s.cname, s.cname))
    L.append("{")
    L.append("\tint rc = 0;")
    L.append("\tconst bool flex = %s;" % ({"1": "true", "0": "false"}.get(flexc, flexc)))
    L.append("\t(void)flex; (void)rc;")
    if top:
        L.append("\tif (v < %d || v > %d)" % (min(m.valid), max(m.valid)))
        L.append("\t\treturn kw_fail(w, -EINVAL);")
    for f in s.fields:
        reg = g.regular_in(s, f)
        pres = reg | g.tagged_in(s, f)
        absent = s.reach - pres
        if reg:
            compact = cbool(cond(g.compact_in(s, f) & reg, reg))
            L += block(cond(reg, s.reach), write_field(g, s, f, reg, compact))
        if absent and not f.ignorable:
            c = cond(absent, s.reach)
            nd = g.nondefault(f, "o->" + f.cname)
            L.append("\tif (%s && (%s))" % (paren(c), nd) if c != "1" else "\tif (%s)" % nd)
            L.append("\t\treturn kw_fail(w, -EINVAL);")
    if tagged:
        L.append("\tif (flex) {")
        L.append("\t\tuint32_t ntags = 0;")
        conds = []
        for f in tagged:
            tv = g.tagged_in(s, f)
            c = cond(tv, s.reach)
            nd = g.nondefault(f, "o->" + f.cname)
            full = nd if c == "1" else "%s && (%s)" % (paren(c), nd)
            conds.append(full)
            L.append("\t\tif (%s)" % full)
            L.append("\t\t\tntags++;")
        L.append("\t\tkw_uvarint(w, ntags);")
        for f, full in zip(tagged, conds):
            tv = g.tagged_in(s, f)
            L.append("\t\tif (%s) {" % full)
            L.append("\t\t\tsize_t at = kw_tag_begin(w, %d);" % f.tag)
            L += ["\t\t\t" + x for x in write_field(g, s, f, tv, "true")]
            L.append("\t\t\tkw_tag_end(w, at);")
            L.append("\t\t}")
        L.append("\t}")
    elif flexc != "0":
        L += block(flexc, ["kw_tags_empty(w);"])
    L.append("\treturn w->err;")
    L.append("}")
    L.append("")
    return "\n".join(L)


def paren(c):
    return c if re.fullmatch(r"[\w ><=!]+", c) and "||" not in c else "(%s)" % c


def gen_tables(g):
    L = []
    L.append("/* ---- API table and header versions ---- */")
    L.append("const struct kmsg_api kmsg_apis[] = {")
    by_name = {m.name: m for m in g.messages}
    for name, key in sorted(APIS, key=lambda x: x[1]):
        rq, rs = by_name[name + "Request"], by_name[name + "Response"]
        if rq.valid != rs.valid or rq.flex != rs.flex:
            die("%s: request and response versions differ" % name)
        L.append('\t{ %d, "%s", %d, %d, %d, %s },' % (
            key, name, min(rq.valid), max(rq.valid), min(rq.flex) if rq.flex else -1,
            "true" if (rq.unstable or rs.unstable) else "false"))
    L.append("};")
    L.append("const size_t kmsg_apis_len = sizeof kmsg_apis / sizeof kmsg_apis[0];")
    L.append("")
    L.append("const struct kmsg_api *kmsg_api_find(int16_t api_key)")
    L.append("{")
    L.append("\tfor (size_t i = 0; i < kmsg_apis_len; i++)")
    L.append("\t\tif (kmsg_apis[i].key == api_key)")
    L.append("\t\t\treturn &kmsg_apis[i];")
    L.append("\treturn NULL;")
    L.append("}")
    L.append("""
int kmsg_request_header_version(int16_t api_key, int16_t api_version)
{
	if (api_key == 7 && api_version == 0)
		return 0; /* ControlledShutdown v0 predates client ids */
	const struct kmsg_api *api = kmsg_api_find(api_key);
	if (!api || api_version < 0)
		return -1;
	return api->flexible_min >= 0 && api_version >= api->flexible_min ? 2 : 1;
}

int kmsg_response_header_version(int16_t api_key, int16_t api_version)
{
	const struct kmsg_api *api = kmsg_api_find(api_key);
	if (!api || api_version < 0)
		return -1;
	/* ApiVersions responses keep header v0 so that any client can read the error code. */
	if (api_key == KMSG_API_API_VERSIONS)
		return 0;
	return api->flexible_min >= 0 && api_version >= api->flexible_min ? 1 : 0;
}

int kmsg_request_header_read(struct kr *r, struct kmsg_request_header *out, struct arena *a)
{
	struct kr peek = *r;
	int16_t key = kr_i16(&peek);
	int16_t ver = kr_i16(&peek);
	if (peek.err) {
		kr_fail(r);
		return -EBADMSG;
	}
	int hv = kmsg_request_header_version(key, ver);
	if (hv < 0)
		hv = 1;
	return kmsg_request_header_decode(r, (int16_t)hv, out, a);
}""")
    return "\n".join(L)


# ==== test fillers / comparisons =====================================================================

def gen_test_header(g):
    return """/* kmsg_roundtrip.h -- generated by tools/kgen.py, do not edit (make regen).
 * Test-only table: for every generated message, type-erased init/fill/encode/decode/compare. */
#ifndef STRATA_T_KMSG_ROUNDTRIP_H
#define STRATA_T_KMSG_ROUNDTRIP_H
#include <stdbool.h>
#include <stddef.h>
#include "strata/kmsg.h"

struct rt_msg {
	const char *name;
	int16_t min_version, max_version;
	size_t size;
	void (*init)(void *m);
	/* Sets every field present in version v to a value chosen by variant (0: small non-default
	 * values and 2-element arrays; 1: nulls where nullable, extreme integers; 2: long strings/bytes). */
	void (*fill)(void *m, int16_t v, int variant, struct arena *a);
	int (*encode)(struct kw *w, int16_t v, const void *m);
	int (*decode)(struct kr *r, int16_t v, void *m, struct arena *a);
	/* Deep equality of all fields; on a difference names it in rt_mismatch. */
	bool (*eq)(const void *x, const void *y);
};
#define RT_VARIANTS 3
extern const struct rt_msg rt_msgs[];
extern const size_t rt_msgs_len;
extern const char *rt_mismatch;
#endif
"""


def gen_test_source(g):
    L = []
    w = L.append
    w("/* kmsg_roundtrip.c -- generated by tools/kgen.py, do not edit (make regen).")
    w(" * Fillers and deep comparisons for every generated message (used by t/kmsg.c). */")
    w('#include "kmsg_roundtrip.h"')
    w("")
    w("#include <stdio.h>")
    w("#include <string.h>")
    w("")
    w("const char *rt_mismatch;")
    w("""
static unsigned rt_seed;

static int64_t rt_int(int variant, int64_t def, int64_t lo, int64_t hi)
{
	rt_seed++;
	int64_t v;
	if (variant == 1)
		v = (rt_seed & 1) ? hi : lo;
	else
		v = (int64_t)(rt_seed % 100) + 1;
	if (v == def)
		v = (v == hi) ? lo : hi;
	return v;
}

static struct kstr rt_str(int variant, bool nullable, struct arena *a)
{
	rt_seed++;
	if (variant == 1 && nullable)
		return KSTR_NULL;
	size_t n = variant == 2 ? 300 : 8;
	char *p = arena_alloc(a, n + 1);
	if (!p)
		return KSTR_NULL;
	for (size_t i = 0; i < n; i++)
		p[i] = (char)('a' + (rt_seed + i) % 26);
	return (struct kstr){ p, (int32_t)n };
}

static struct kbytes rt_bytes(int variant, bool nullable, struct arena *a)
{
	struct kstr s = rt_str(variant, nullable, a);
	return (struct kbytes){ (const uint8_t *)s.p, s.len };
}

static void rt_uuid(uint8_t u[16])
{
	rt_seed++;
	for (int i = 0; i < 16; i++)
		u[i] = (uint8_t)(rt_seed * 7 + (unsigned)i + 1);
}

static int32_t rt_len(int variant, bool nullable)
{
	if (variant == 0)
		return 2;
	if (variant == 1 && nullable)
		return -1;
	return 1;
}

static bool rt_fail(const char *what)
{
	rt_mismatch = what;
	return false;
}""")
    w("")
    lims = {"int8": ("INT8_MIN", "INT8_MAX"), "int16": ("INT16_MIN", "INT16_MAX"),
            "uint16": ("0", "UINT16_MAX"), "int32": ("INT32_MIN", "INT32_MAX"),
            "int64": ("INT64_MIN", "INT64_MAX")}
    for m in g.messages:
        for s in m.order:
            w("static void f_%s(struct %s *o, int16_t v, int variant, struct arena *a);" % (s.cname, s.cname))
            w("static bool eq_%s(const struct %s *x, const struct %s *y);" % (s.cname, s.cname, s.cname))
    w("")

    def fill_value(s, f, e, vs, in_array):
        nullable = "false" if in_array else cond(f.nullable & vs, s.reach)
        if f.kind in lims:
            lo, hi = lims[f.kind]
            d = "0" if f.default is None else g.default_literal(f)
            return ["%s = (%s)rt_int(variant, %s, %s, %s);" % (e, PRIM[f.kind][0], d, lo, hi)]
        if f.kind == "bool":
            return ["%s = %s;" % (e, "false" if f.default else "true")]
        if f.kind == "float64":
            return ["%s = 1.5 + (double)rt_int(variant, 0, -1000, 1000);" % e]
        if f.kind == "uuid":
            return ["rt_uuid(%s);" % e]
        if f.kind == "string":
            return ["%s = rt_str(variant, %s, a);" % (e, nullable)]
        if f.kind in ("bytes", "records"):
            return ["%s = rt_bytes(variant, %s, a);" % (e, nullable)]
        return ["f_%s(&%s, v, variant, a);" % (f.struct.cname, e)]

    for m in g.messages:
        for s in m.order:
            w("static void f_%s(struct %s *o, int16_t v, int variant, struct arena *a)" % (s.cname, s.cname))
            w("{")
            w("\t(void)o; (void)v; (void)variant; (void)a;")
            for f in s.fields:
                vs = g.present(s, f)
                if not vs:
                    continue
                e = "o->" + f.cname
                if f.is_array:
                    nullable = cond(f.nullable & vs, s.reach)
                    st = ["%s.len = rt_len(variant, %s);" % (e, nullable),
                          "%s.items = %s.len > 0 ? arena_calloc(a, (size_t)%s.len, sizeof *%s.items) : NULL;" % (e, e, e, e),
                          "if (!%s.items && %s.len > 0)" % (e, e), "\t%s.len = 0;" % e,
                          "for (int32_t i = 0; i < %s.len; i++) {" % e]
                    if f.kind == "struct":
                        st.append("\t%s_init(&%s.items[i]);" % (f.struct.cname, e))
                    st += ["\t" + x for x in fill_value(s, f, "%s.items[i]" % e, vs, True)]
                    st.append("}")
                else:
                    st = fill_value(s, f, e, vs, False)
                L.extend(block(cond(vs, s.reach), st))
            w("}")
            w("")
            # eq
            w("static bool eq_%s(const struct %s *x, const struct %s *y)" % (s.cname, s.cname, s.cname))
            w("{")
            w("\t(void)x; (void)y;")
            for f in s.fields:
                what = cstr("%s.%s" % (s.name, f.cname))

                def cmp(ex, ey):
                    if f.kind in PRIM:
                        return "%s == %s" % (ex, ey)
                    if f.kind == "uuid":
                        return "memcmp(%s, %s, 16) == 0" % (ex, ey)
                    if f.kind == "string":
                        return "kstr_eq(%s, %s)" % (ex, ey)
                    if f.kind in ("bytes", "records"):
                        return "kbytes_eq(%s, %s)" % (ex, ey)
                    return "eq_%s(&%s, &%s)" % (f.struct.cname, ex, ey)
                if f.is_array:
                    w("\tif (x->%s.len != y->%s.len)" % (f.cname, f.cname))
                    w("\t\treturn rt_fail(%s);" % what)
                    w("\tfor (int32_t i = 0; i < x->%s.len; i++)" % f.cname)
                    w("\t\tif (!(%s))" % cmp("x->%s.items[i]" % f.cname, "y->%s.items[i]" % f.cname))
                    w("\t\t\treturn rt_fail(%s);" % what)
                else:
                    w("\tif (!(%s))" % cmp("x->" + f.cname, "y->" + f.cname))
                    w("\t\treturn rt_fail(%s);" % what)
            w("\treturn true;")
            w("}")
            w("")
        c = m.cname
        w("static void i__%s(void *p) { %s_init(p); }" % (c, c))
        w("static void f__%s(void *p, int16_t v, int variant, struct arena *a) { f_%s(p, v, variant, a); }" % (c, c))
        w("static int e__%s(struct kw *w, int16_t v, const void *p) { return %s_encode(w, v, p); }" % (c, c))
        w("static int d__%s(struct kr *r, int16_t v, void *p, struct arena *a) { return %s_decode(r, v, p, a); }" % (c, c))
        w("static bool q__%s(const void *x, const void *y) { return eq_%s(x, y); }" % (c, c))
        w("")
    w("const struct rt_msg rt_msgs[] = {")
    for m in g.messages:
        c = m.cname
        w('\t{ "%s", %d, %d, sizeof(struct %s), i__%s, f__%s, e__%s, d__%s, q__%s },' % (
            m.name, min(m.valid), max(m.valid), c, c, c, c, c, c))
    w("};")
    w("const size_t rt_msgs_len = sizeof rt_msgs / sizeof rt_msgs[0];")
    return "\n".join(L) + "\n"


def write_if_changed(path, text):
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return False
    except OSError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--schemas", required=True, help="directory of Kafka *.json message schemas")
    ap.add_argument("--out", required=True, help="repository root to write the outputs under")
    args = ap.parse_args()
    g = Gen(args.schemas)
    for h in HEADERS:
        g.load_message(h)
    for name, key in sorted(APIS, key=lambda x: x[1]):
        for kind in ("Request", "Response"):
            m = g.load_message(name + kind, (name, key))
            if m.js.get("apiKey") != key:
                die("%s: apiKey %s, expected %d" % (m.name, m.js.get("apiKey"), key))
    for d in DATA:
        g.load_message(d)
    src = gen_source(g)  # first: marks which structs need nondefault helpers
    hdr = gen_header(g)
    outs = {
        "include/strata/kmsg.h": hdr,
        "src/kmsg.c": src,
        "t/kmsg_roundtrip.h": gen_test_header(g),
        "t/kmsg_roundtrip.c": gen_test_source(g),
    }
    for rel, text in outs.items():
        path = os.path.join(args.out, rel)
        if write_if_changed(path, text):
            print("kgen: wrote %s" % rel)


if __name__ == "__main__":
    main()
