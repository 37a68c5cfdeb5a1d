"""A database per tenant: the same collection name in each tenant's database, separate data.
Usage: python db_per_tenant.py URI"""

import json
import os
import sys

from pymilvus import MilvusClient

TOKEN = os.environ.get("MILVUS_TOKEN", "")  # user:password when the server requires auth
uri = sys.argv[1].rstrip("/")
admin = MilvusClient(uri=uri, token=TOKEN)
tenants = {"prog_tenant_a": 10, "prog_tenant_b": 25}
for db in tenants:
    if db in admin.list_databases():
        admin.use_database(db)
        for name in admin.list_collections():
            admin.drop_collection(name)
        admin.use_database("default")
        admin.drop_database(db)
    admin.create_database(db)
out: dict = {}
for db, n in tenants.items():
    client = MilvusClient(uri=f"{uri}/{db}", token=TOKEN)  # the tenant's database in the URI
    client.create_collection("orders", dimension=3)
    client.insert("orders", [{"id": i, "vector": [float(i), 0.0, 1.0], "tenant": db} for i in range(n)])
    out[db] = {
        "count": client.query("orders", filter="", output_fields=["count(*)"])[0]["count(*)"],
        "top": [h["id"] for h in client.search("orders", [[3.0, 0.0, 1.0]], limit=3)[0]],
        "tenants_seen": sorted({r["tenant"] for r in client.query("orders", filter="id >= 0", output_fields=["tenant"])}),
        "collections": client.list_collections(),
    }
    client.close()
admin.use_database("prog_tenant_b")  # switching databases on one client
out["switched_count"] = admin.query("orders", filter="", output_fields=["count(*)"])[0]["count(*)"]
admin.use_database("default")
out["default_has_orders"] = admin.has_collection("orders")
for db in tenants:
    admin.use_database(db)
    admin.drop_collection("orders")
    admin.use_database("default")
    admin.drop_database(db)
out["left"] = sorted(d for d in admin.list_databases() if d.startswith("prog_"))
print(json.dumps(out, sort_keys=True))
