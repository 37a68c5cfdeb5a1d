"""Image search with one hit per product (grouping search), as a shop would write it.

Reads MILVUS_URI (and MILVUS_TOKEN if set); prints the results as JSON."""

import json
import os

import numpy as np
from pymilvus import DataType, MilvusClient

client = MilvusClient(uri=os.environ["MILVUS_URI"], token=os.environ.get("MILVUS_TOKEN", ""))
name = "prog_group_by_product"
if client.has_collection(name):
    client.drop_collection(name)

schema = client.create_schema(auto_id=False)
schema.add_field("image_id", DataType.VARCHAR, is_primary=True, max_length=32)
schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=32)
schema.add_field("product_id", DataType.VARCHAR, max_length=32)
schema.add_field("price", DataType.FLOAT)
idx = client.prepare_index_params()
idx.add_index("embedding", index_type="FLAT", metric_type="COSINE")
client.create_collection(name, schema=schema, index_params=idx)

rng = np.random.default_rng(1)
products = rng.standard_normal((60, 32))
rows = []
for p in range(60):  # 5 photos of each product, near the product's centre
    for k in range(5):
        rows.append({"image_id": f"img-{p}-{k}", "embedding": (products[p] + 0.3 * rng.standard_normal(32)).tolist(),
                     "product_id": f"prod-{p:03d}", "price": float(10 + p)})
client.insert(name, rows)

query = (products[7] + 0.5 * rng.standard_normal(32)).tolist()
out = {}
res = client.search(name, data=[query], anns_field="embedding", limit=10, group_by_field="product_id",
                    output_fields=["product_id", "price"])
out["one_per_product"] = [(h.id, round(h.distance, 4), h["entity"]["product_id"]) for h in res[0]]
res = client.search(name, data=[query], anns_field="embedding", limit=4, group_by_field="product_id",
                    filter="price < 50", output_fields=["product_id"])
out["filtered"] = [h["entity"]["product_id"] for h in res[0]]
client.drop_collection(name)
print(json.dumps(out))
