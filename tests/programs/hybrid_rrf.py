"""A dense+dense hybrid search with RRF, written the way pymilvus's docs show it.

Reads MILVUS_URI (and MILVUS_TOKEN if set); prints the results as JSON."""

import json
import os
import random

from pymilvus import AnnSearchRequest, DataType, MilvusClient, RRFRanker, WeightedRanker

client = MilvusClient(uri=os.environ["MILVUS_URI"], token=os.environ.get("MILVUS_TOKEN", ""))
name = "prog_hybrid_rrf"
if client.has_collection(name):
    client.drop_collection(name)

schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=True)
schema.add_field(field_name="id", datatype=DataType.INT64, is_primary=True)
schema.add_field(field_name="text_dense", datatype=DataType.FLOAT_VECTOR, dim=16)
schema.add_field(field_name="image_dense", datatype=DataType.FLOAT_VECTOR, dim=8)
schema.add_field(field_name="title", datatype=DataType.VARCHAR, max_length=64)
index_params = client.prepare_index_params()
index_params.add_index(field_name="text_dense", index_type="FLAT", metric_type="IP")
index_params.add_index(field_name="image_dense", index_type="FLAT", metric_type="L2")
client.create_collection(collection_name=name, schema=schema, index_params=index_params)

random.seed(42)
data = [{"id": i, "text_dense": [random.random() for _ in range(16)],
         "image_dense": [random.random() for _ in range(8)], "title": f"item {i}", "color": ["red", "blue"][i % 2]}
        for i in range(500)]
client.insert(collection_name=name, data=data)

text_q = [[random.random() for _ in range(16)]]
image_q = [[random.random() for _ in range(8)]]
reqs = [
    AnnSearchRequest(data=text_q, anns_field="text_dense", param={"metric_type": "IP"}, limit=20),
    AnnSearchRequest(data=image_q, anns_field="image_dense", param={"metric_type": "L2"}, limit=20,
                     expr='color == "red"'),
]
out = {}
res = client.hybrid_search(collection_name=name, reqs=reqs, ranker=RRFRanker(60), limit=10, output_fields=["title"])
out["rrf"] = [[(h["id"], round(h["distance"], 5), h["entity"]["title"]) for h in hits] for hits in res]
res = client.hybrid_search(collection_name=name, reqs=reqs, ranker=WeightedRanker(0.8, 0.3), limit=5, offset=2)
out["weighted"] = [[(h["id"], round(h["distance"], 5)) for h in hits] for hits in res]
client.drop_collection(name)
print(json.dumps(out))
