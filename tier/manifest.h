/* manifest.h -- what the bucket says about a topic and its partitions: the object keys of
 * remote segments and the manifests that list them (encode, decode, verify). Pure functions over
 * memory: no I/O, no threads, no policy (tier.c decides what to upload, keep or delete).
 *
 * Bucket layout (see man/strata-bucket.5):
 *   <h8>/<topic>/topic_manifest                                    topic manifest
 *   <h8>/<topic>/<partition>_<id8>/manifest                        partition manifest
 *   <h8>/<topic>/<partition>_<id8>/<base, 20 digits>.log|.index|.timeindex   segment objects
 * where <id8> is the first 8 hex digits of the topic id (a re-created topic of the same name
 * never shares keys with the old one) and <h8> is the CRC-32C (8 lowercase hex) of the rest of
 * the key, which spreads keys over a store's index partitions. Every key is computed from
 * (topic, topic id, partition, base offset): reads never need LIST.
 *
 * Manifests are text, one record per line, ending with "end crc32c=<8 hex>" over every byte
 * before that line; a manifest whose checksum or structure is wrong is refused whole. */
#ifndef STRATA_TIER_MANIFEST_H
#define STRATA_TIER_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MANIFEST_KEY_MAX 512
#define MANIFEST_TOPIC_MAX 249
#define MANIFEST_MAX_SEGMENTS 10000000
#define MANIFEST_MAX_BYTES (1u << 30)      /* largest manifest object read back */

/* One remote segment: three objects (.log, .index, .timeindex) sharing a key stem. */
struct manifest_seg {
	int64_t base_offset;
	int64_t last_offset;            /* offset of the last record */
	int64_t size_bytes;             /* .log object size */
	int64_t first_ts_ms;            /* first batch's base timestamp (-1: none) */
	int64_t max_ts_ms;              /* largest timestamp (-1: none) */
	int64_t uploaded_ms;
	uint32_t log_crc;               /* CRC-32C of each whole object */
	int64_t index_bytes;
	uint32_t index_crc;
	int64_t timeindex_bytes;
	uint32_t timeindex_crc;
	char key[MANIFEST_KEY_MAX];     /* key stem: append ".log", ".index", ".timeindex" */
};

/* A partition manifest: every remote segment, in offset order, non-overlapping. */
struct manifest {
	char topic[MANIFEST_TOPIC_MAX + 1];
	uint8_t topic_id[16];
	int32_t partition;
	int64_t version;                /* +1 for every manifest published */
	int64_t updated_ms;
	int64_t start_offset;           /* remote log start (total retention, DeleteRecords) */
	struct manifest_seg *segs;
	int32_t n_segs, cap_segs;
};

void manifest_init(struct manifest *m, const char *topic, const uint8_t id[16], int32_t partition);
void manifest_free(struct manifest *m);
int manifest_copy(struct manifest *dst, const struct manifest *src);
/* Appends s (base must be past the last segment). Returns 0, -EINVAL or -ENOMEM. */
int manifest_append(struct manifest *m, const struct manifest_seg *s);
/* Removes the first n segments (start_offset moves to the next segment's base if below). */
void manifest_drop_front(struct manifest *m, int32_t n);
/* Index of the first segment whose last offset >= offset (the one holding it, or the next one
 * after a gap), or n_segs when none. */
int32_t manifest_find(const struct manifest *m, int64_t offset);
/* Offset after the last remote record (start_offset when empty). */
int64_t manifest_end_offset(const struct manifest *m);
int64_t manifest_bytes(const struct manifest *m);

/* Text form; *out is malloc'd. Returns 0 or -ENOMEM. */
int manifest_encode(const struct manifest *m, char **out, size_t *out_len);
/* Parses and verifies (checksum, fields, order, bounds). m is initialised by the call.
 * Returns 0 or -EBADMSG with why. */
int manifest_decode(const char *buf, size_t len, struct manifest *m, char *why, size_t why_len);

/* A topic manifest: enough to recreate the topic from the bucket alone. */
struct topic_manifest {
	char topic[MANIFEST_TOPIC_MAX + 1];
	uint8_t topic_id[16];
	int32_t partitions;
	int64_t version;
	int64_t updated_ms;
	char *config;                   /* "key=value\n" lines of the topic's own settings (malloc'd) */
};
int topic_manifest_encode(const struct topic_manifest *tm, char **out, size_t *out_len);
int topic_manifest_decode(const char *buf, size_t len, struct topic_manifest *tm, char *why,
			  size_t why_len);
void topic_manifest_free(struct topic_manifest *tm);

/* Keys. Each returns 0 or -ENAMETOOLONG. ext: "log", "index" or "timeindex". */
int manifest_key_stem(char *buf, size_t len, const char *topic, const uint8_t id[16],
		      int32_t partition, int64_t base_offset);
int manifest_key_object(char *buf, size_t len, const char *stem, const char *ext);
int manifest_key_partition(char *buf, size_t len, const char *topic, const uint8_t id[16],
			   int32_t partition);
int manifest_key_topic(char *buf, size_t len, const char *topic);

#endif
