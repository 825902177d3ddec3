/* kafka_admin.c -- the Kafka admin APIs (stub while being written). */
#include "kafka_int.h"

#define ADMIN_STUB(fn) void fn(struct kreq *q) { kafka_bad_request(q, "not implemented yet"); }
ADMIN_STUB(kafka_handle_create_topics)
ADMIN_STUB(kafka_handle_delete_topics)
ADMIN_STUB(kafka_handle_create_partitions)
ADMIN_STUB(kafka_handle_delete_records)
ADMIN_STUB(kafka_handle_describe_configs)
ADMIN_STUB(kafka_handle_alter_configs)
ADMIN_STUB(kafka_handle_incremental_alter_configs)
ADMIN_STUB(kafka_handle_offset_for_leader_epoch)
ADMIN_STUB(kafka_handle_init_producer_id)
