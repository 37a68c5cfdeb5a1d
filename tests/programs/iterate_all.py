"""Export every row with the query iterator, and walk the nearest rows with the search iterator.

Reads MILVUS_URI (and MILVUS_TOKEN if set); prints the results as JSON."""

import json
import os
import random

from pymilvus import DataType, MilvusClient

client = MilvusClient(uri=os.environ["MILVUS_URI"], token=os.environ.get("MILVUS_TOKEN", ""))
name = "prog_iterate_all"
if client.has_collection(name):
    client.drop_collection(name)
schema = client.create_schema(auto_id=False)
schema.add_field("id", DataType.INT64, is_primary=True)
schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
schema.add_field("tag", DataType.VARCHAR, max_length=8)
idx = client.prepare_index_params()
idx.add_index("vector", index_type="FLAT", metric_type="L2")
client.create_collection(name, schema=schema, index_params=idx)
random.seed(3)
client.insert(name, [{"id": i, "vector": [random.random() for _ in range(4)], "tag": f"t{i % 3}"} for i in range(1000)])

exported = []
it = client.query_iterator(name, batch_size=128, filter='tag != "t1"', output_fields=["tag"])
while True:
    batch = it.next()
    if not batch:
        it.close()
        break
    exported.extend(r["id"] for r in batch)

walked = []
it = client.search_iterator(name, data=[[0.5, 0.5, 0.5, 0.5]], batch_size=50, limit=300, anns_field="vector")
while True:
    batch = it.next()
    if not batch:
        it.close()
        break
    walked.extend((h["id"], round(h["distance"], 5)) for h in batch)
client.drop_collection(name)
print(json.dumps({"exported": exported, "walked": walked}))
