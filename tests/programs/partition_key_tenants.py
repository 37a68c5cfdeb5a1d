"""Multi-tenancy with a partition key: one collection, tenants filtered by their key.
Usage: python partition_key_tenants.py URI"""

import json
import os
import random
import sys

from pymilvus import DataType, MilvusClient

TOKEN = os.environ.get("MILVUS_TOKEN", "")  # user:password when the server requires auth
client = MilvusClient(uri=sys.argv[1], token=TOKEN)
if client.has_collection("prog_docs"):
    client.drop_collection("prog_docs")
schema = MilvusClient.create_schema(auto_id=False)
schema.add_field("id", DataType.INT64, is_primary=True)
schema.add_field("tenant_id", DataType.VARCHAR, max_length=32, is_partition_key=True)
schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=8)
index = client.prepare_index_params()
index.add_index("embedding", index_type="FLAT", metric_type="IP")
client.create_collection("prog_docs", schema=schema, index_params=index, num_partitions=16)
random.seed(3)
rows = [{"id": i, "tenant_id": f"tenant_{i % 7}", "embedding": [random.uniform(-1, 1) for _ in range(8)]}
        for i in range(700)]
client.insert("prog_docs", rows)
out: dict = {"partitions": len(client.list_partitions("prog_docs"))}
q = [rows[10]["embedding"]]
for t in ("tenant_3", "tenant_5"):
    hits = client.search("prog_docs", q, limit=5, filter=f'tenant_id == "{t}"', output_fields=["tenant_id"])[0]
    out[t] = {"ids": [h["id"] for h in hits], "only_tenant": all(h["entity"]["tenant_id"] == t for h in hits),
              "count": client.query("prog_docs", filter=f'tenant_id == "{t}"', output_fields=["count(*)"])[0]["count(*)"]}
client.drop_collection("prog_docs")
print(json.dumps(out, sort_keys=True))
