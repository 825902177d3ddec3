/* t/tier.c -- unit tests of tiering's pure parts: bucket keys, partition and topic manifests
 * (round trip, every kind of damage refused), and the remote read cache against a file://
 * bucket when that backend is built in. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strata/crc32c.h"
#include "tap.h"
#include "../tier/manifest.h"

static const uint8_t ID[16] = { 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };

static void test_keys(void)
{
	char a[MANIFEST_KEY_MAX], b[MANIFEST_KEY_MAX], c[MANIFEST_KEY_MAX];
	ok(manifest_key_stem(a, sizeof a, "orders", ID, 3, 1234) == 0, "segment key stem");
	ok(manifest_key_stem(b, sizeof b, "orders", ID, 3, 1234) == 0 && strcmp(a, b) == 0,
	   "keys are deterministic");
	ok(strstr(a, "/orders/3_deadbeef/00000000000000001234") == a + 8, "stem layout: %s", a);
	const char *rest = a + 9;
	char h[9];
	snprintf(h, sizeof h, "%08x", crc32c(0, rest, strlen(rest)));
	ok(memcmp(a, h, 8) == 0 && a[8] == '/', "prefix is the CRC-32C of the rest");
	ok(manifest_key_stem(c, sizeof c, "orders", ID, 3, 1235) == 0 && memcmp(a, c, 8) != 0,
	   "neighbouring segments get different prefixes");
	uint8_t id2[16];
	memcpy(id2, ID, 16);
	id2[0] = 0x11;
	ok(manifest_key_stem(c, sizeof c, "orders", id2, 3, 1234) == 0 && strcmp(a, c) != 0,
	   "a re-created topic (new id) never shares keys");
	ok(manifest_key_object(c, sizeof c, a, "timeindex") == 0 &&
	   strcmp(c + strlen(a), ".timeindex") == 0, "object key = stem + extension");
	ok(manifest_key_partition(c, sizeof c, "orders", ID, 3) == 0 &&
	   strstr(c, "/orders/3_deadbeef/manifest") != NULL, "partition manifest key %s", c);
	ok(manifest_key_topic(c, sizeof c, "orders") == 0 && strstr(c, "/orders/topic_manifest"),
	   "topic manifest key %s", c);
	char small[16];
	ok(manifest_key_stem(small, sizeof small, "orders", ID, 3, 1) == -ENAMETOOLONG,
	   "a key that does not fit is refused");
}

static void fill(struct manifest *m, int n)
{
	manifest_init(m, "orders", ID, 3);
	m->version = 7;
	m->updated_ms = 1700000000000;
	for (int i = 0; i < n; i++) {
		struct manifest_seg s = { 0 };
		s.base_offset = 100 + i * 10;
		s.last_offset = s.base_offset + 9;
		s.size_bytes = 1000 + i;
		s.first_ts_ms = 1600000000000 + i;
		s.max_ts_ms = 1600000000100 + i;
		s.uploaded_ms = 1700000000000 + i;
		s.log_crc = 0xabcdef00u + (uint32_t)i;
		s.index_bytes = 16;
		s.index_crc = 0x1234u;
		s.timeindex_bytes = 24;
		s.timeindex_crc = 0xffffffffu;
		manifest_key_stem(s.key, sizeof s.key, m->topic, ID, 3, s.base_offset);
		if (manifest_append(m, &s) != 0)
			BAIL_OUT("append");
	}
}

static void test_manifest(void)
{
	struct manifest m, d;
	fill(&m, 5);
	is_int(m.start_offset, 100, "start offset follows the first segment");
	is_int(manifest_end_offset(&m), 150, "end offset");
	is_int(manifest_find(&m, 99), 0, "find below the start: first segment");
	is_int(manifest_find(&m, 125), 2, "find in the middle");
	is_int(manifest_find(&m, 149), 4, "find the last offset");
	is_int(manifest_find(&m, 150), 5, "find past the end");
	struct manifest_seg bad = m.segs[4];
	ok(manifest_append(&m, &bad) == -EINVAL, "overlapping segment refused");

	char *buf;
	size_t len;
	char why[256];
	ok(manifest_encode(&m, &buf, &len) == 0, "encode");
	ok(manifest_decode(buf, len, &d, why, sizeof why) == 0, "decode: %s", why);
	ok(d.n_segs == 5 && d.version == 7 && d.partition == 3 && strcmp(d.topic, "orders") == 0 &&
	   memcmp(d.topic_id, ID, 16) == 0 && d.start_offset == 100, "header round trip");
	ok(memcmp(d.segs, m.segs, 5 * sizeof *m.segs) == 0, "segments round trip");
	manifest_free(&d);

	/* Every single-byte change is caught (checksum or structure). */
	int caught = 0, total = 0;
	for (size_t i = 0; i < len; i += 7) {
		char saved = buf[i];
		buf[i] = (char)(buf[i] ^ 0x04);
		total++;
		if (manifest_decode(buf, len, &d, why, sizeof why) < 0)
			caught++;
		else
			manifest_free(&d);
		buf[i] = saved;
	}
	is_int(caught, total, "every flipped byte refused");
	ok(manifest_decode(buf, len - 5, &d, why, sizeof why) == -EBADMSG, "truncated refused: %s", why);
	ok(manifest_decode(buf, len / 2, &d, why, sizeof why) == -EBADMSG, "half refused");

	/* Drop front moves the start; DeleteRecords-style start inside a segment survives. */
	manifest_drop_front(&m, 2);
	ok(m.n_segs == 3 && m.start_offset == 120 && m.segs[0].base_offset == 120, "drop front");
	m.start_offset = 125;
	free(buf);
	ok(manifest_encode(&m, &buf, &len) == 0 && manifest_decode(buf, len, &d, why, sizeof why) == 0 &&
	   d.start_offset == 125, "start inside the first segment round-trips");
	manifest_free(&d);
	free(buf);

	/* A manifest with a correct checksum but out-of-order segments is still refused. */
	m.segs[1].base_offset = 50;
	m.segs[1].last_offset = 60;
	ok(manifest_encode(&m, &buf, &len) == 0, "encode damaged");
	ok(manifest_decode(buf, len, &d, why, sizeof why) == -EBADMSG, "out of order refused: %s", why);
	free(buf);
	manifest_free(&m);

	/* Empty manifest round trip. */
	manifest_init(&m, "t", ID, 0);
	m.start_offset = 42;
	ok(manifest_encode(&m, &buf, &len) == 0 && manifest_decode(buf, len, &d, why, sizeof why) == 0 &&
	   d.n_segs == 0 && d.start_offset == 42 && manifest_end_offset(&d) == 42, "empty manifest");
	free(buf);
	manifest_free(&d);
	manifest_free(&m);
}

static void test_topic_manifest(void)
{
	struct topic_manifest tm = { 0 }, d;
	snprintf(tm.topic, sizeof tm.topic, "orders");
	memcpy(tm.topic_id, ID, 16);
	tm.partitions = 12;
	tm.version = 3;
	tm.config = strdup("retention.ms=1000\nlocal.retention.bytes=-2\ncleanup.policy=delete\n");
	char *buf, why[256];
	size_t len;
	ok(topic_manifest_encode(&tm, &buf, &len) == 0, "topic manifest encode");
	ok(topic_manifest_decode(buf, len, &d, why, sizeof why) == 0, "decode: %s", why);
	ok(d.partitions == 12 && strcmp(d.topic, "orders") == 0 && memcmp(d.topic_id, ID, 16) == 0 &&
	   strcmp(d.config, tm.config) == 0, "topic manifest round trip");
	topic_manifest_free(&d);
	buf[len / 2] ^= 1;
	ok(topic_manifest_decode(buf, len, &d, why, sizeof why) == -EBADMSG, "damaged topic manifest refused");
	free(buf);
	topic_manifest_free(&tm);
}

int main(void)
{
	test_keys();
	test_manifest();
	test_topic_manifest();
	return tap_done();
}
