"""Milvus quick start, as the pymilvus docs write it. Usage: python quick_start.py URI"""

import json
import os
import random
import sys

from pymilvus import MilvusClient

TOKEN = os.environ.get("MILVUS_TOKEN", "")  # user:password when the server requires auth
client = MilvusClient(uri=sys.argv[1], token=TOKEN)
if client.has_collection("prog_quick"):
    client.drop_collection("prog_quick")
client.create_collection(collection_name="prog_quick", dimension=5)
random.seed(7)
data = [{"id": i, "vector": [random.random() for _ in range(5)], "color": random.choice(["red", "blue", "green"])}
        for i in range(300)]
res = client.insert(collection_name="prog_quick", data=data)
out = {"inserted": res["insert_count"]}
hits = client.search(collection_name="prog_quick", data=[data[0]["vector"], data[1]["vector"]], limit=3,
                     output_fields=["color"])
out["search"] = [[(h["id"], round(h["distance"], 4), h["entity"]["color"]) for h in q] for q in hits]
out["filtered"] = [[h["id"] for h in q] for q in client.search(
    collection_name="prog_quick", data=[data[2]["vector"]], limit=5, filter='color == "red"')]
out["query"] = sorted(r["id"] for r in client.query(collection_name="prog_quick", filter="id in [1, 5, 9]"))
out["get"] = sorted(r["id"] for r in client.get(collection_name="prog_quick", ids=[0, 2, 4000]))
client.delete(collection_name="prog_quick", filter="id in [0, 1, 2]")
out["count"] = client.query(collection_name="prog_quick", filter="", output_fields=["count(*)"])[0]["count(*)"]
client.drop_collection("prog_quick")
print(json.dumps(out, sort_keys=True))
