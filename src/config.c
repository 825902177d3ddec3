/* config.c -- parsing and validation of broker and topic settings against the tables in
 * config-broker.def / config-topic.def. Reads the config file; never applies settings itself. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "strata/common.h"
#include "strata/config.h"

static const char *const cfg_choices_ts_type[] = { "CreateTime", "LogAppendTime", NULL };
static const char *const cfg_choices_cleanup[] = { "delete", NULL };
static const char *const cfg_choices_compression[] = { "producer", "uncompressed", "none", "gzip",
						      "snappy", "lz4", "zstd", NULL };
static const char *const cfg_choices_level[] = { "debug", "info", "warn", "error", NULL };

static const struct cfg_def broker_defs[] = {
#define BC(id, name, type, def, min, max, choices, flags, alias_of, doc) \
	[id] = { name, type, def, min, max, choices, flags, NULL, alias_of, doc },
#include "strata/config-broker.def"
#undef BC
};
static const struct cfg_def topic_defs[] = {
#define TC(id, name, type, def, min, max, choices, flags, synonym, alias_of, doc) \
	[id] = { name, type, def, min, max, choices, flags, synonym, alias_of, doc },
#include "strata/config-topic.def"
#undef TC
};

const struct cfg_schema cfg_broker_schema = { "broker", broker_defs, ST_ARRAY_LEN(broker_defs) };
const struct cfg_schema cfg_topic_schema = { "topic", topic_defs, ST_ARRAY_LEN(topic_defs) };

int cfg_find(const struct cfg_schema *schema, const char *key)
{
	for (size_t i = 0; i < schema->n_defs; i++) {
		if (strcmp(schema->defs[i].name, key) != 0)
			continue;
		if (schema->defs[i].flags & CFG_ALIAS)
			return cfg_find(schema, schema->defs[i].alias_of);
		return (int)i;
	}
	return -1;
}

static int parse_int64(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	while (isspace((unsigned char)*s))
		s++;
	if (!*s)
		return -EINVAL;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s)
		return -EINVAL;
	while (isspace((unsigned char)*end))
		end++;
	if (*end)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Parses value for def into v (not touching v on error). why names the problem. */
static int parse_value(const struct cfg_schema *schema, const struct cfg_def *def, const char *value,
		       struct cfg_val *v, char *why, size_t why_len)
{
	const char *shown = (def->flags & CFG_SENSITIVE) ? "(hidden)" : value;
	int64_t i = 0;
	double d = 0;
	switch (def->type) {
	case CFG_BOOL:
		if (strcasecmp(value, "true") == 0)
			i = 1;
		else if (strcasecmp(value, "false") == 0)
			i = 0;
		else {
			snprintf(why, why_len, "%s config %s=%s: not a boolean (true or false)",
				 schema->scope, def->name, shown);
			return -EINVAL;
		}
		break;
	case CFG_INT:
	case CFG_LONG:
		if (parse_int64(value, &i) < 0 ||
		    (def->type == CFG_INT && (i < INT32_MIN || i > INT32_MAX))) {
			snprintf(why, why_len, "%s config %s=%s: not a%s integer", schema->scope,
				 def->name, shown, def->type == CFG_INT ? " 32-bit" : "n");
			return -EINVAL;
		}
		if (i < def->min || i > def->max) {
			snprintf(why, why_len,
				 "%s config %s=%s: out of range [%" PRId64 ", %" PRId64 "]",
				 schema->scope, def->name, shown, def->min, def->max);
			return -EINVAL;
		}
		break;
	case CFG_DOUBLE: {
		char *end;
		errno = 0;
		d = strtod(value, &end);
		if (errno || end == value || *end) {
			snprintf(why, why_len, "%s config %s=%s: not a number", schema->scope,
				 def->name, shown);
			return -EINVAL;
		}
		break;
	}
	case CFG_STRING:
	case CFG_LIST:
	case CFG_PASSWORD:
		if (def->choices) {
			/* Lists are checked item by item: "delete" or "delete,compact". */
			char tmp[256];
			snprintf(tmp, sizeof tmp, "%s", value);
			char *save = NULL;
			int items = 0;
			for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
				while (isspace((unsigned char)*tok))
					tok++;
				size_t tl = strlen(tok);
				while (tl && isspace((unsigned char)tok[tl - 1]))
					tok[--tl] = 0;
				bool found = false;
				for (const char *const *c = def->choices; *c; c++)
					found = found || strcmp(*c, tok) == 0;
				if (!found || (def->type != CFG_LIST && items > 0)) {
					char allowed[256] = "";
					size_t al = 0;
					for (const char *const *c = def->choices; *c && al < sizeof allowed; c++)
						al += (size_t)snprintf(allowed + al, sizeof allowed - al, "%s%s",
								       c == def->choices ? "" : ", ", *c);
					snprintf(why, why_len, "%s config %s=%s: must be one of: %s",
						 schema->scope, def->name, shown, allowed);
					return -EINVAL;
				}
				items++;
			}
			if (!items) {
				snprintf(why, why_len, "%s config %s is empty", schema->scope, def->name);
				return -EINVAL;
			}
		}
		break;
	}
	char *s = NULL;
	if (def->type == CFG_STRING || def->type == CFG_LIST || def->type == CFG_PASSWORD) {
		s = strdup(value);
		if (!s)
			return -ENOMEM;
	}
	free(v->s);
	v->s = s;
	v->i = i;
	v->d = d;
	return 0;
}

int cfg_init(struct cfg *c, const struct cfg_schema *schema)
{
	c->schema = schema;
	c->vals = calloc(schema->n_defs, sizeof *c->vals);
	if (!c->vals)
		return -ENOMEM;
	for (size_t i = 0; i < schema->n_defs; i++) {
		const struct cfg_def *def = &schema->defs[i];
		if (!def->def)
			continue;
		char why[256];
		int rc = parse_value(schema, def, def->def, &c->vals[i], why, sizeof why);
		ST_ASSERT(rc == 0); /* a default that does not parse is a bug in the table */
	}
	return 0;
}

void cfg_free(struct cfg *c)
{
	if (!c->vals)
		return;
	for (size_t i = 0; i < c->schema->n_defs; i++)
		free(c->vals[i].s);
	free(c->vals);
	c->vals = NULL;
}

int cfg_copy(struct cfg *dst, const struct cfg *src)
{
	dst->schema = src->schema;
	dst->vals = calloc(src->schema->n_defs, sizeof *dst->vals);
	if (!dst->vals)
		return -ENOMEM;
	for (size_t i = 0; i < src->schema->n_defs; i++) {
		dst->vals[i] = src->vals[i];
		if (src->vals[i].s && !(dst->vals[i].s = strdup(src->vals[i].s))) {
			cfg_free(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

int cfg_set(struct cfg *c, const char *key, const char *value, char *why, size_t why_len)
{
	int id = cfg_find(c->schema, key);
	if (id < 0) {
		snprintf(why, why_len, "unknown %s config %s", c->schema->scope, key);
		return -ENOENT;
	}
	int rc = parse_value(c->schema, &c->schema->defs[id], value, &c->vals[id], why, why_len);
	if (rc == 0)
		c->vals[id].set = true;
	return rc;
}

int cfg_unset(struct cfg *c, const char *key)
{
	int id = cfg_find(c->schema, key);
	if (id < 0)
		return -ENOENT;
	struct cfg_val *v = &c->vals[id];
	free(v->s);
	memset(v, 0, sizeof *v);
	const struct cfg_def *def = &c->schema->defs[id];
	if (def->def) {
		char why[256];
		int rc = parse_value(c->schema, def, def->def, v, why, sizeof why);
		ST_ASSERT(rc == 0);
	}
	return 0;
}

static char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}

int cfg_set_kv(struct cfg *c, const char *kv, char *why, size_t why_len)
{
	char buf[4096];
	size_t n = strlen(kv);
	if (n >= sizeof buf) {
		snprintf(why, why_len, "setting too long (%zu bytes)", n);
		return -EINVAL;
	}
	memcpy(buf, kv, n + 1);
	char *eq = strchr(buf, '=');
	if (!eq) {
		snprintf(why, why_len, "'%s' is not key=value", kv);
		return -EINVAL;
	}
	*eq = 0;
	return cfg_set(c, trim(buf), trim(eq + 1), why, why_len);
}

int cfg_load_file(struct cfg *c, const char *path, char *why, size_t why_len)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		int e = errno;
		snprintf(why, why_len, "cannot open config file %s: %s", path, strerror(e));
		return -e;
	}
	char line[4096];
	int lineno = 0, rc = 0;
	while (fgets(line, sizeof line, f)) {
		lineno++;
		size_t n = strlen(line);
		if (n == sizeof line - 1 && line[n - 1] != '\n') {
			snprintf(why, why_len, "%s:%d: line too long", path, lineno);
			rc = -EINVAL;
			break;
		}
		char *s = trim(line);
		if (!*s || *s == '#')
			continue;
		char inner[3072];
		rc = cfg_set_kv(c, s, inner, sizeof inner);
		if (rc < 0) {
			snprintf(why, why_len, "%s:%d: %s", path, lineno, inner);
			break;
		}
	}
	fclose(f);
	return rc;
}

int64_t cfg_int(const struct cfg *c, int id)
{
	ST_ASSERT(id >= 0 && (size_t)id < c->schema->n_defs);
	return c->vals[id].i;
}
bool cfg_bool(const struct cfg *c, int id) { return cfg_int(c, id) != 0; }
double cfg_double(const struct cfg *c, int id)
{
	ST_ASSERT(id >= 0 && (size_t)id < c->schema->n_defs);
	return c->vals[id].d;
}
const char *cfg_str(const struct cfg *c, int id)
{
	ST_ASSERT(id >= 0 && (size_t)id < c->schema->n_defs);
	return c->vals[id].s;
}
bool cfg_is_set(const struct cfg *c, int id)
{
	ST_ASSERT(id >= 0 && (size_t)id < c->schema->n_defs);
	return c->vals[id].set;
}

const char *cfg_text(const struct cfg *c, int id, char *buf, size_t buf_len)
{
	const struct cfg_def *def = &c->schema->defs[id];
	const struct cfg_val *v = &c->vals[id];
	switch (def->type) {
	case CFG_BOOL:
		return v->i ? "true" : "false";
	case CFG_INT:
	case CFG_LONG:
		snprintf(buf, buf_len, "%" PRId64, v->i);
		return buf;
	case CFG_DOUBLE:
		snprintf(buf, buf_len, "%g", v->d);
		return buf;
	default:
		return v->s;
	}
}

int64_t cfg_broker_retention_ms(const struct cfg *b)
{
	if (cfg_is_set(b, BC_LOG_RETENTION_MS))
		return cfg_int(b, BC_LOG_RETENTION_MS);
	if (cfg_is_set(b, BC_LOG_RETENTION_MINUTES)) {
		int64_t m = cfg_int(b, BC_LOG_RETENTION_MINUTES);
		return m < 0 ? -1 : m * 60000;
	}
	int64_t h = cfg_int(b, BC_LOG_RETENTION_HOURS);
	return h < 0 ? -1 : h * 3600000;
}

int64_t cfg_broker_roll_ms(const struct cfg *b)
{
	if (cfg_is_set(b, BC_LOG_SEGMENT_MS))
		return cfg_int(b, BC_LOG_SEGMENT_MS);
	return cfg_int(b, BC_LOG_ROLL_HOURS) * 3600000;
}

/* The broker's effective value for a topic key's synonym, when the broker has that key. */
static bool broker_synonym_int(const struct cfg *broker, const char *synonym, int64_t *out)
{
	if (!broker || !synonym)
		return false;
	if (strcmp(synonym, "log.retention.ms") == 0) {
		*out = cfg_broker_retention_ms(broker);
		return true;
	}
	if (strcmp(synonym, "log.segment.ms") == 0) {
		*out = cfg_broker_roll_ms(broker);
		return true;
	}
	int bid = cfg_find(broker->schema, synonym);
	if (bid < 0)
		return false;
	if (broker->schema->defs[bid].type == CFG_STRING || broker->schema->defs[bid].type == CFG_LIST)
		return false;
	if (!broker->vals[bid].set && !broker->schema->defs[bid].def)
		return false;
	*out = broker->vals[bid].i;
	return true;
}

int64_t cfg_topic_int(const struct cfg *topic, const struct cfg *broker, int id)
{
	if (topic && cfg_is_set(topic, id))
		return cfg_int(topic, id);
	int64_t v;
	if (broker_synonym_int(broker, cfg_topic_schema.defs[id].synonym, &v))
		return v;
	return topic ? cfg_int(topic, id) : 0;
}

const char *cfg_topic_str(const struct cfg *topic, const struct cfg *broker, int id)
{
	if (topic && cfg_is_set(topic, id))
		return cfg_str(topic, id);
	const char *syn = cfg_topic_schema.defs[id].synonym;
	if (broker && syn) {
		int bid = cfg_find(broker->schema, syn);
		if (bid >= 0 && broker->vals[bid].s)
			return broker->vals[bid].s;
	}
	return topic ? cfg_str(topic, id) : cfg_topic_schema.defs[id].def;
}

int cfg_check(const struct cfg *c, char *why, size_t why_len)
{
	if (c->schema == &cfg_broker_schema) {
		const char *l = cfg_str(c, BC_LISTENERS);
		if (!l || strncmp(l, "PLAINTEXT://", 12) != 0 || !strrchr(l + 12, ':')) {
			snprintf(why, why_len,
				 "broker config listeners=%s: expected PLAINTEXT://host:port", l ? l : "");
			return -EINVAL;
		}
	}
	return 0;
}

/* Kafka's LogConfig.validateLocalRetention{Ms,Bytes}. */
static int check_local_retention(const struct cfg *topic, const struct cfg *broker, int local_id,
				 int total_id, char *why, size_t why_len)
{
	int64_t local = cfg_topic_int(topic, broker, local_id);
	int64_t total = cfg_topic_int(topic, broker, total_id);
	const char *ln = cfg_topic_schema.defs[local_id].name, *tn = cfg_topic_schema.defs[total_id].name;
	if (total == -1 || local == -2)
		return 0;
	if (local == -1) {
		snprintf(why, why_len, "Invalid value -1 for configuration %s: Value must not be -1 as "
			 "%s value is set as %" PRId64 ".", ln, tn, total);
		return -EINVAL;
	}
	if (local > total) {
		snprintf(why, why_len, "Invalid value %" PRId64 " for configuration %s: Value must not be "
			 "more than %s property value: %" PRId64, local, ln, tn, total);
		return -EINVAL;
	}
	return 0;
}

int cfg_check_topic(const struct cfg *topic, const struct cfg *broker, char *why, size_t why_len)
{
	if (check_local_retention(topic, broker, TC_LOCAL_RETENTION_MS, TC_RETENTION_MS, why, why_len) < 0)
		return -EINVAL;
	return check_local_retention(topic, broker, TC_LOCAL_RETENTION_BYTES, TC_RETENTION_BYTES, why,
				     why_len);
}
