/* t/config.c -- config parsing: defaults, files, overrides, aliases, bad keys and values. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include "strata/config.h"
#include "tap.h"

int main(void)
{
	struct cfg b, t;
	char why[512];
	ok(cfg_init(&b, &cfg_broker_schema) == 0, "broker defaults load");
	is_int(cfg_int(&b, BC_NODE_ID), 1, "node.id default");
	is_int(cfg_broker_retention_ms(&b), 168LL * 3600000, "retention defaults to 168 hours");
	ok(strcmp(cfg_str(&b, BC_LISTENERS), "PLAINTEXT://127.0.0.1:9092") == 0, "listeners default");

	char path[] = "/tmp/strata-cfg-XXXXXX";
	int fd = mkstemp(path);
	const char *text = "# comment\n\nnum.partitions = 3\nlog.retention.minutes=5\n"
			   "broker.id = 7\n  log.dirs =  /tmp/x y  \n";
	ok(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write config file");
	close(fd);
	ok(cfg_load_file(&b, path, why, sizeof why) == 0, "file loads (%s)", why);
	is_int(cfg_int(&b, BC_NUM_PARTITIONS), 3, "num.partitions from file");
	is_int(cfg_broker_retention_ms(&b), 5 * 60000, "minutes beat hours");
	is_int(cfg_int(&b, BC_NODE_ID), 7, "broker.id is an alias of node.id");
	ok(strcmp(cfg_str(&b, BC_LOG_DIRS), "/tmp/x y") == 0, "values are trimmed, inner spaces kept");
	ok(cfg_set_kv(&b, "log.retention.ms=1000", why, sizeof why) == 0, "--set style override");
	is_int(cfg_broker_retention_ms(&b), 1000, "ms beats minutes");

	int rc = cfg_set_kv(&b, "no.such.key=1", why, sizeof why);
	ok(rc == -ENOENT && strstr(why, "no.such.key"), "unknown key rejected, named: %s", why);
	rc = cfg_set_kv(&b, "num.partitions=abc", why, sizeof why);
	ok(rc == -EINVAL && strstr(why, "num.partitions") && strstr(why, "abc"),
	   "bad value names key and value: %s", why);
	rc = cfg_set_kv(&b, "num.partitions=0", why, sizeof why);
	ok(rc == -EINVAL && strstr(why, "range"), "out of range: %s", why);
	is_int(cfg_int(&b, BC_NUM_PARTITIONS), 3, "failed set leaves the old value");
	rc = cfg_set_kv(&b, "log.message.timestamp.type=Whenever", why, sizeof why);
	ok(rc == -EINVAL && strstr(why, "LogAppendTime"), "enum lists choices: %s", why);
	rc = cfg_set_kv(&b, "auto.create.topics.enable=yes", why, sizeof why);
	ok(rc == -EINVAL, "booleans are true/false: %s", why);
	rc = cfg_set_kv(&b, "novalue", why, sizeof why);
	ok(rc == -EINVAL, "missing '=' rejected: %s", why);

	fd = open(path, O_WRONLY | O_TRUNC);
	text = "num.partitions = 2\nlog.segment.bytes = huge\n";
	ok(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "rewrite config file");
	close(fd);
	rc = cfg_load_file(&b, path, why, sizeof why);
	ok(rc == -EINVAL && strstr(why, ":2:") && strstr(why, "log.segment.bytes"),
	   "file error names line and key: %s", why);
	unlink(path);
	rc = cfg_load_file(&b, path, why, sizeof why);
	ok(rc == -ENOENT && strstr(why, path), "missing file: %s", why);

	ok(cfg_init(&t, &cfg_topic_schema) == 0, "topic defaults");
	is_int(cfg_topic_int(&t, &b, TC_RETENTION_MS), 1000, "topic retention.ms follows broker");
	ok(cfg_set(&t, "retention.ms", "42", why, sizeof why) == 0, "topic override");
	is_int(cfg_topic_int(&t, &b, TC_RETENTION_MS), 42, "topic value wins");
	ok(cfg_unset(&t, "retention.ms") == 0 && !cfg_is_set(&t, TC_RETENTION_MS), "unset");
	is_int(cfg_topic_int(&t, &b, TC_RETENTION_MS), 1000, "back to the broker's");
	ok(cfg_set(&t, "cleanup.policy", "delete", why, sizeof why) == 0, "cleanup.policy=delete");
	ok(cfg_set(&t, "cleanup.policy", "shred", why, sizeof why) == -EINVAL, "bad cleanup.policy");
	ok(cfg_set(&t, "compression.type", "zstd", why, sizeof why) == 0, "compression.type=zstd");
	ok(strcmp(cfg_topic_str(&t, &b, TC_COMPRESSION_TYPE), "zstd") == 0, "topic string value");
	cfg_free(&t);
	cfg_free(&b);
	return tap_done();
}
