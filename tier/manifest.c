/* manifest.c -- bucket keys and the text form of partition and topic manifests (manifest.h).
 * Pure: no I/O. Decoding trusts nothing: checksum first, then every field, order and bound. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/common.h"
#include "strata/crc32c.h"
#include "manifest.h"

#define PMAGIC "strata-partition-manifest 1"
#define TMAGIC "strata-topic-manifest 1"
#define LINE_MAX_BYTES 4096

/* --- keys ------------------------------------------------------------------------------------ */

static void id8(const uint8_t id[16], char out[9])
{
	snprintf(out, 9, "%02x%02x%02x%02x", id[0], id[1], id[2], id[3]);
}

/* "<crc32c of rest, 8 hex>/<rest>" */
static int hashed_key(char *buf, size_t len, const char *rest)
{
	uint32_t h = crc32c(0, rest, strlen(rest));
	int n = snprintf(buf, len, "%08x/%s", h, rest);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int manifest_key_stem(char *buf, size_t len, const char *topic, const uint8_t id[16],
		      int32_t partition, int64_t base_offset)
{
	char rest[MANIFEST_KEY_MAX], hid[9];
	id8(id, hid);
	int n = snprintf(rest, sizeof rest, "%s/%d_%s/%020" PRId64, topic, partition, hid, base_offset);
	if (n < 0 || (size_t)n >= sizeof rest)
		return -ENAMETOOLONG;
	return hashed_key(buf, len, rest);
}

int manifest_key_object(char *buf, size_t len, const char *stem, const char *ext)
{
	int n = snprintf(buf, len, "%s.%s", stem, ext);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

int manifest_key_partition(char *buf, size_t len, const char *topic, const uint8_t id[16],
			   int32_t partition)
{
	char rest[MANIFEST_KEY_MAX], hid[9];
	id8(id, hid);
	int n = snprintf(rest, sizeof rest, "%s/%d_%s/manifest", topic, partition, hid);
	if (n < 0 || (size_t)n >= sizeof rest)
		return -ENAMETOOLONG;
	return hashed_key(buf, len, rest);
}

int manifest_key_topic(char *buf, size_t len, const char *topic)
{
	char rest[MANIFEST_KEY_MAX];
	int n = snprintf(rest, sizeof rest, "%s/topic_manifest", topic);
	if (n < 0 || (size_t)n >= sizeof rest)
		return -ENAMETOOLONG;
	return hashed_key(buf, len, rest);
}

/* --- in memory ------------------------------------------------------------------------------- */

void manifest_init(struct manifest *m, const char *topic, const uint8_t id[16], int32_t partition)
{
	memset(m, 0, sizeof *m);
	if (topic)
		snprintf(m->topic, sizeof m->topic, "%s", topic);
	if (id)
		memcpy(m->topic_id, id, 16);
	m->partition = partition;
}

void manifest_free(struct manifest *m)
{
	free(m->segs);
	m->segs = NULL;
	m->n_segs = m->cap_segs = 0;
}

int manifest_copy(struct manifest *dst, const struct manifest *src)
{
	*dst = *src;
	dst->segs = NULL;
	dst->cap_segs = 0;
	if (src->n_segs) {
		dst->segs = malloc((size_t)src->n_segs * sizeof *dst->segs);
		if (!dst->segs) {
			dst->n_segs = 0;
			return -ENOMEM;
		}
		memcpy(dst->segs, src->segs, (size_t)src->n_segs * sizeof *dst->segs);
		dst->cap_segs = src->n_segs;
	}
	return 0;
}

int manifest_append(struct manifest *m, const struct manifest_seg *s)
{
	if (s->last_offset < s->base_offset || s->size_bytes <= 0)
		return -EINVAL;
	if (m->n_segs && s->base_offset <= m->segs[m->n_segs - 1].last_offset)
		return -EINVAL;
	if (m->n_segs >= MANIFEST_MAX_SEGMENTS)
		return -EINVAL;
	if (m->n_segs == m->cap_segs) {
		int32_t nc = m->cap_segs ? m->cap_segs * 2 : 16;
		struct manifest_seg *ns = realloc(m->segs, (size_t)nc * sizeof *ns);
		if (!ns)
			return -ENOMEM;
		m->segs = ns;
		m->cap_segs = nc;
	}
	/* The first segment of an empty manifest: nothing below it is remote. */
	if (m->n_segs == 0 && m->start_offset < s->base_offset)
		m->start_offset = s->base_offset;
	m->segs[m->n_segs++] = *s;
	return 0;
}

void manifest_drop_front(struct manifest *m, int32_t n)
{
	if (n <= 0)
		return;
	if (n > m->n_segs)
		n = m->n_segs;
	int64_t next = m->segs[n - 1].last_offset + 1;
	memmove(m->segs, m->segs + n, (size_t)(m->n_segs - n) * sizeof *m->segs);
	m->n_segs -= n;
	if (m->start_offset < next)
		m->start_offset = next;
	if (m->n_segs && m->start_offset < m->segs[0].base_offset)
		m->start_offset = m->segs[0].base_offset;
}

int32_t manifest_find(const struct manifest *m, int64_t offset)
{
	int32_t lo = 0, hi = m->n_segs;
	while (lo < hi) {
		int32_t mid = lo + (hi - lo) / 2;
		if (m->segs[mid].last_offset < offset)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int64_t manifest_end_offset(const struct manifest *m)
{
	return m->n_segs ? m->segs[m->n_segs - 1].last_offset + 1 : m->start_offset;
}

int64_t manifest_bytes(const struct manifest *m)
{
	int64_t b = 0;
	for (int32_t i = 0; i < m->n_segs; i++)
		b += m->segs[i].size_bytes;
	return b;
}

/* --- encoding -------------------------------------------------------------------------------- */

struct sbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
	if (b->oom)
		return;
	for (int tries = 0; tries < 2; tries++) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->p && b->len + (size_t)n < b->cap) {
			b->len += (size_t)n;
			return;
		}
		size_t nc = b->cap ? b->cap : 1024;
		while (nc <= b->len + (size_t)n)
			nc *= 2;
		char *np = realloc(b->p, nc);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = nc;
	}
	b->oom = true;
}

static void hex16(const uint8_t id[16], char out[33])
{
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static int sb_finish(struct sbuf *b, char **out, size_t *out_len)
{
	uint32_t crc = b->p ? crc32c(0, b->p, b->len) : 0;
	sb_printf(b, "end crc32c=%08x\n", crc);
	if (b->oom) {
		free(b->p);
		return -ENOMEM;
	}
	*out = b->p;
	*out_len = b->len;
	return 0;
}

int manifest_encode(const struct manifest *m, char **out, size_t *out_len)
{
	struct sbuf b = { 0 };
	char id[33];
	hex16(m->topic_id, id);
	sb_printf(&b, PMAGIC "\ntopic=%s\ntopic_id=%s\npartition=%d\nversion=%" PRId64
		  "\nupdated_ms=%" PRId64 "\nstart_offset=%" PRId64 "\nsegments=%d\n",
		  m->topic, id, m->partition, m->version, m->updated_ms, m->start_offset, m->n_segs);
	for (int32_t i = 0; i < m->n_segs; i++) {
		const struct manifest_seg *s = &m->segs[i];
		sb_printf(&b, "seg base=%" PRId64 " last=%" PRId64 " size=%" PRId64 " first_ts=%" PRId64
			  " max_ts=%" PRId64 " uploaded_ms=%" PRId64 " crc=%08x index_bytes=%" PRId64
			  " index_crc=%08x timeindex_bytes=%" PRId64 " timeindex_crc=%08x key=%s\n",
			  s->base_offset, s->last_offset, s->size_bytes, s->first_ts_ms, s->max_ts_ms,
			  s->uploaded_ms, s->log_crc, s->index_bytes, s->index_crc, s->timeindex_bytes,
			  s->timeindex_crc, s->key);
	}
	return sb_finish(&b, out, out_len);
}

int topic_manifest_encode(const struct topic_manifest *tm, char **out, size_t *out_len)
{
	struct sbuf b = { 0 };
	char id[33];
	hex16(tm->topic_id, id);
	sb_printf(&b, TMAGIC "\ntopic=%s\ntopic_id=%s\npartitions=%d\nversion=%" PRId64
		  "\nupdated_ms=%" PRId64 "\n", tm->topic, id, tm->partitions, tm->version,
		  tm->updated_ms);
	/* Settings one per line, prefixed so a value can never be read as a manifest field. */
	const char *c = tm->config ? tm->config : "";
	while (*c) {
		size_t n = strcspn(c, "\n");
		if (n)
			sb_printf(&b, "config %.*s\n", (int)n, c);
		c += n;
		if (*c == '\n')
			c++;
	}
	return sb_finish(&b, out, out_len);
}

/* --- decoding -------------------------------------------------------------------------------- */

struct lines {
	const char *p, *end;
};

/* Next line without its '\n' into buf; returns 1, 0 at the end, -1 when too long/unterminated. */
static int next_line(struct lines *l, char *buf, size_t buf_len)
{
	if (l->p >= l->end)
		return 0;
	const char *nl = memchr(l->p, '\n', (size_t)(l->end - l->p));
	if (!nl)
		return -1;
	size_t n = (size_t)(nl - l->p);
	if (n >= buf_len || memchr(l->p, 0, n))
		return -1;
	memcpy(buf, l->p, n);
	buf[n] = 0;
	l->p = nl + 1;
	return 1;
}

static int parse_i64(const char *s, int64_t *out)
{
	if (!*s)
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_hex32(const char *s, uint32_t *out)
{
	if (strlen(s) != 8)
		return -1;
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 16);
	if (errno || *end)
		return -1;
	*out = (uint32_t)v;
	return 0;
}

static int parse_id(const char *s, uint8_t id[16])
{
	if (strlen(s) != 32)
		return -1;
	for (int i = 0; i < 16; i++) {
		unsigned v;
		char two[3] = { s[2 * i], s[2 * i + 1], 0 };
		char *end;
		v = (unsigned)strtoul(two, &end, 16);
		if (*end)
			return -1;
		id[i] = (uint8_t)v;
	}
	return 0;
}

/* Checks the trailer and returns the body length (bytes covered by the checksum), or -1. */
static ssize_t verify_trailer(const char *buf, size_t len, char *why, size_t why_len)
{
	if (len < 2 || buf[len - 1] != '\n') {
		snprintf(why, why_len, "manifest is truncated (no final newline)");
		return -1;
	}
	size_t i = len - 1;
	while (i > 0 && buf[i - 1] != '\n')
		i--;
	const char *last = buf + i;
	size_t ll = len - 1 - i;
	uint32_t want;
	char tmp[64];
	if (ll >= sizeof tmp || ll < 12 || memcmp(last, "end crc32c=", 11) != 0) {
		snprintf(why, why_len, "manifest has no checksum trailer (truncated?)");
		return -1;
	}
	memcpy(tmp, last + 11, ll - 11);
	tmp[ll - 11] = 0;
	if (parse_hex32(tmp, &want) < 0) {
		snprintf(why, why_len, "manifest checksum trailer is malformed");
		return -1;
	}
	uint32_t got = crc32c(0, buf, i);
	if (got != want) {
		snprintf(why, why_len, "manifest checksum mismatch: stored %08x, computed %08x", want, got);
		return -1;
	}
	return (ssize_t)i;
}

/* "name=value" at s: returns value when the name matches, else NULL. */
static const char *field(const char *s, const char *name)
{
	size_t n = strlen(name);
	return strncmp(s, name, n) == 0 && s[n] == '=' ? s + n + 1 : NULL;
}

static int parse_seg_line(char *line, struct manifest_seg *s)
{
	memset(s, 0, sizeof *s);
	/* Fixed order: the encoder writes exactly this, anything else is damage. */
	static const char *const names[] = { "base", "last", "size", "first_ts", "max_ts",
					     "uploaded_ms", "crc", "index_bytes", "index_crc",
					     "timeindex_bytes", "timeindex_crc", "key" };
	char *save = NULL, *tok = strtok_r(line, " ", &save);
	if (!tok || strcmp(tok, "seg") != 0)
		return -1;
	for (size_t i = 0; i < ST_ARRAY_LEN(names); i++) {
		tok = strtok_r(NULL, " ", &save);
		const char *v = tok ? field(tok, names[i]) : NULL;
		if (!v)
			return -1;
		int rc = 0;
		switch (i) {
		case 0: rc = parse_i64(v, &s->base_offset); break;
		case 1: rc = parse_i64(v, &s->last_offset); break;
		case 2: rc = parse_i64(v, &s->size_bytes); break;
		case 3: rc = parse_i64(v, &s->first_ts_ms); break;
		case 4: rc = parse_i64(v, &s->max_ts_ms); break;
		case 5: rc = parse_i64(v, &s->uploaded_ms); break;
		case 6: rc = parse_hex32(v, &s->log_crc); break;
		case 7: rc = parse_i64(v, &s->index_bytes); break;
		case 8: rc = parse_hex32(v, &s->index_crc); break;
		case 9: rc = parse_i64(v, &s->timeindex_bytes); break;
		case 10: rc = parse_hex32(v, &s->timeindex_crc); break;
		case 11:
			if (!*v || strlen(v) >= sizeof s->key)
				rc = -1;
			else
				snprintf(s->key, sizeof s->key, "%s", v);
			break;
		}
		if (rc < 0)
			return -1;
	}
	if (strtok_r(NULL, " ", &save))
		return -1;
	if (s->base_offset < 0 || s->last_offset < s->base_offset || s->size_bytes <= 0 ||
	    s->index_bytes < 0 || s->timeindex_bytes < 0 || s->index_bytes % 8 ||
	    s->timeindex_bytes % 12)
		return -1;
	return 0;
}

int manifest_decode(const char *buf, size_t len, struct manifest *m, char *why, size_t why_len)
{
	manifest_init(m, NULL, NULL, -1);
	ssize_t body = verify_trailer(buf, len, why, why_len);
	if (body < 0)
		return -EBADMSG;
	struct lines l = { buf, buf + body };
	char line[LINE_MAX_BYTES];
	int lineno = 0, rc;
	int64_t n_declared = -1, v;
	bool have_topic = false, have_id = false, have_part = false, have_ver = false, have_start = false;
	while ((rc = next_line(&l, line, sizeof line)) == 1) {
		lineno++;
		const char *val;
		if (lineno == 1) {
			if (strcmp(line, PMAGIC) != 0) {
				snprintf(why, why_len, "not a strata partition manifest (first line '%.40s')", line);
				goto bad;
			}
			continue;
		}
		if (strncmp(line, "seg ", 4) == 0) {
			struct manifest_seg s;
			if (parse_seg_line(line, &s) < 0) {
				snprintf(why, why_len, "manifest line %d: malformed segment", lineno);
				goto bad;
			}
			int64_t start = m->start_offset;
			int arc = manifest_append(m, &s);
			m->start_offset = start;
			if (arc == -ENOMEM) {
				manifest_free(m);
				return -ENOMEM;
			}
			if (arc < 0) {
				snprintf(why, why_len, "manifest line %d: segment %" PRId64 " out of order",
					 lineno, s.base_offset);
				goto bad;
			}
		} else if ((val = field(line, "topic"))) {
			if (!*val || strlen(val) > MANIFEST_TOPIC_MAX)
				goto badfield;
			snprintf(m->topic, sizeof m->topic, "%s", val);
			have_topic = true;
		} else if ((val = field(line, "topic_id"))) {
			if (parse_id(val, m->topic_id) < 0)
				goto badfield;
			have_id = true;
		} else if ((val = field(line, "partition"))) {
			if (parse_i64(val, &v) < 0 || v < 0 || v > INT32_MAX)
				goto badfield;
			m->partition = (int32_t)v;
			have_part = true;
		} else if ((val = field(line, "version"))) {
			if (parse_i64(val, &m->version) < 0 || m->version < 0)
				goto badfield;
			have_ver = true;
		} else if ((val = field(line, "updated_ms"))) {
			if (parse_i64(val, &m->updated_ms) < 0)
				goto badfield;
		} else if ((val = field(line, "start_offset"))) {
			if (parse_i64(val, &m->start_offset) < 0 || m->start_offset < 0)
				goto badfield;
			have_start = true;
		} else if ((val = field(line, "segments"))) {
			if (parse_i64(val, &n_declared) < 0 || n_declared < 0 ||
			    n_declared > MANIFEST_MAX_SEGMENTS)
				goto badfield;
		} else {
			/* Unknown header fields of a later minor revision are skipped. */
			if (!strchr(line, '=') || m->n_segs) {
				snprintf(why, why_len, "manifest line %d: unexpected '%.40s'", lineno, line);
				goto bad;
			}
		}
	}
	if (rc < 0) {
		snprintf(why, why_len, "manifest line %d: too long or unterminated", lineno + 1);
		goto bad;
	}
	if (!have_topic || !have_id || !have_part || !have_ver || !have_start || n_declared < 0) {
		snprintf(why, why_len, "manifest lacks a required field");
		goto bad;
	}
	if (n_declared != m->n_segs) {
		snprintf(why, why_len, "manifest declares %" PRId64 " segments, holds %d", n_declared,
			 m->n_segs);
		goto bad;
	}
	if (m->n_segs && (m->start_offset < m->segs[0].base_offset ||
			  m->start_offset > m->segs[0].last_offset + 1)) {
		snprintf(why, why_len, "manifest start_offset %" PRId64 " outside its first segment",
			 m->start_offset);
		goto bad;
	}
	return 0;
badfield:
	snprintf(why, why_len, "manifest line %d: bad value in '%.60s'", lineno, line);
bad:
	manifest_free(m);
	return -EBADMSG;
}

void topic_manifest_free(struct topic_manifest *tm)
{
	free(tm->config);
	tm->config = NULL;
}

int topic_manifest_decode(const char *buf, size_t len, struct topic_manifest *tm, char *why,
			  size_t why_len)
{
	memset(tm, 0, sizeof *tm);
	ssize_t body = verify_trailer(buf, len, why, why_len);
	if (body < 0)
		return -EBADMSG;
	struct lines l = { buf, buf + body };
	char line[LINE_MAX_BYTES];
	int lineno = 0, rc;
	struct sbuf cfg = { 0 };
	bool have_topic = false, have_id = false, have_parts = false;
	while ((rc = next_line(&l, line, sizeof line)) == 1) {
		lineno++;
		const char *val;
		int64_t v;
		if (lineno == 1) {
			if (strcmp(line, TMAGIC) != 0) {
				snprintf(why, why_len, "not a strata topic manifest");
				goto bad;
			}
		} else if (strncmp(line, "config ", 7) == 0) {
			if (!strchr(line + 7, '='))
				goto badfield;
			sb_printf(&cfg, "%s\n", line + 7);
		} else if ((val = field(line, "topic"))) {
			if (!*val || strlen(val) > MANIFEST_TOPIC_MAX)
				goto badfield;
			snprintf(tm->topic, sizeof tm->topic, "%s", val);
			have_topic = true;
		} else if ((val = field(line, "topic_id"))) {
			if (parse_id(val, tm->topic_id) < 0)
				goto badfield;
			have_id = true;
		} else if ((val = field(line, "partitions"))) {
			if (parse_i64(val, &v) < 0 || v < 1 || v > 1000000)
				goto badfield;
			tm->partitions = (int32_t)v;
			have_parts = true;
		} else if ((val = field(line, "version"))) {
			if (parse_i64(val, &tm->version) < 0)
				goto badfield;
		} else if ((val = field(line, "updated_ms"))) {
			if (parse_i64(val, &tm->updated_ms) < 0)
				goto badfield;
		} else if (!strchr(line, '=')) {
			snprintf(why, why_len, "topic manifest line %d: unexpected '%.40s'", lineno, line);
			goto bad;
		}
	}
	if (rc < 0) {
		snprintf(why, why_len, "topic manifest line %d: too long or unterminated", lineno + 1);
		goto bad;
	}
	if (!have_topic || !have_id || !have_parts) {
		snprintf(why, why_len, "topic manifest lacks a required field");
		goto bad;
	}
	if (cfg.oom) {
		free(cfg.p);
		return -ENOMEM;
	}
	tm->config = cfg.p ? cfg.p : strdup("");
	return tm->config ? 0 : -ENOMEM;
badfield:
	snprintf(why, why_len, "topic manifest line %d: bad value in '%.60s'", lineno, line);
bad:
	free(cfg.p);
	return -EBADMSG;
}
