/* config.h -- broker and topic settings: one table per scope (Kafka property names), parsing
 * and validation of `key = value` files and overrides, typed getters, and what DescribeConfigs
 * needs (source, type, default, doc). Owns no I/O beyond reading the config file. */
#ifndef STRATA_CONFIG_H
#define STRATA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cfg_type { CFG_BOOL, CFG_INT, CFG_LONG, CFG_DOUBLE, CFG_STRING, CFG_LIST, CFG_PASSWORD };

enum cfg_flags {
	CFG_DYNAMIC = 1 << 0,   /* applied by SIGHUP reload (broker) or AlterConfigs (topic) */
	CFG_READONLY = 1 << 1,  /* reported read-only by DescribeConfigs */
	CFG_SENSITIVE = 1 << 2, /* value never logged nor described */
	CFG_ALIAS = 1 << 3,     /* another name for `alias_of` (Redpanda names, unit variants) */
};

struct cfg_def {
	const char *name;
	enum cfg_type type;
	const char *def;              /* default as text; NULL = no value unless set */
	int64_t min, max;             /* numeric bounds (inclusive) */
	const char *const *choices;   /* allowed values (NULL-terminated), or NULL */
	unsigned flags;
	const char *synonym;          /* topic key: the broker key that supplies its default */
	const char *alias_of;         /* CFG_ALIAS: the canonical key */
	const char *doc;
};

struct cfg_schema {
	const char *scope;            /* "broker" or "topic", for messages */
	const struct cfg_def *defs;
	size_t n_defs;
};

struct cfg_val {
	bool set;
	int64_t i;                    /* bool, int, long */
	double d;
	char *s;                      /* string, list, password (owned) */
};

struct cfg {
	const struct cfg_schema *schema;
	struct cfg_val *vals;         /* n_defs entries, defaults parsed in */
};

/* Broker keys, indexes into cfg_broker_schema. */
enum {
#define BC(id, ...) id,
#include "strata/config-broker.def"
#undef BC
	BC__COUNT
};
/* Topic keys, indexes into cfg_topic_schema. */
enum {
#define TC(id, ...) id,
#include "strata/config-topic.def"
#undef TC
	TC__COUNT
};

extern const struct cfg_schema cfg_broker_schema;
extern const struct cfg_schema cfg_topic_schema;

/* Makes c hold every default of schema. Returns 0 or -ENOMEM. */
int cfg_init(struct cfg *c, const struct cfg_schema *schema);
void cfg_free(struct cfg *c);
int cfg_copy(struct cfg *dst, const struct cfg *src);

/* Index of key in the schema (aliases resolve to their canonical key), or -1. */
int cfg_find(const struct cfg_schema *schema, const char *key);
/* Validates and sets key. Returns 0, -ENOENT (unknown key) or -EINVAL (bad value); why gets
 * a message naming the key, the value and the reason. */
int cfg_set(struct cfg *c, const char *key, const char *value, char *why, size_t why_len);
/* Back to the default (IncrementalAlterConfigs DELETE). */
int cfg_unset(struct cfg *c, const char *key);
/* Parses "key = value" lines ('#' comments, blank lines); stops at the first bad line with
 * why naming file, line, key, value and reason. Returns 0 or -errno. */
int cfg_load_file(struct cfg *c, const char *path, char *why, size_t why_len);
/* "key=value" (from --set). */
int cfg_set_kv(struct cfg *c, const char *kv, char *why, size_t why_len);
/* Checks constraints between keys (after all sets). Returns 0 or -EINVAL with why. */
int cfg_check(const struct cfg *c, char *why, size_t why_len);
/* Cross-key checks of a topic's settings over the broker defaults (CreateTopics, AlterConfigs):
 * local.retention.ms/bytes may not exceed retention.ms/bytes when both are finite, nor be -1
 * (forever) under a finite total (Kafka's rule). Returns 0 or -EINVAL with why. */
int cfg_check_topic(const struct cfg *topic, const struct cfg *broker, char *why, size_t why_len);

int64_t cfg_int(const struct cfg *c, int id);
bool cfg_bool(const struct cfg *c, int id);
double cfg_double(const struct cfg *c, int id);
const char *cfg_str(const struct cfg *c, int id); /* NULL when unset with no default */
bool cfg_is_set(const struct cfg *c, int id);
/* The value as text (what DescribeConfigs reports); buf is used for numbers. */
const char *cfg_text(const struct cfg *c, int id, char *buf, size_t buf_len);

/* Effective broker values that Kafka derives from several keys (ms > minutes > hours). */
int64_t cfg_broker_retention_ms(const struct cfg *broker);
int64_t cfg_broker_roll_ms(const struct cfg *broker);

/* Effective topic value: the topic's own when set, else the broker synonym's, else default. */
int64_t cfg_topic_int(const struct cfg *topic, const struct cfg *broker, int id);
const char *cfg_topic_str(const struct cfg *topic, const struct cfg *broker, int id);

#endif
