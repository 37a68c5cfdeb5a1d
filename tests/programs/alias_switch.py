"""Blue/green re-index: readers query an alias while it is switched to a new collection.
Every read answers from exactly one version, and after the switch only from the new one.
Usage: python alias_switch.py URI"""

import json
import os
import sys
import threading
import time

from pymilvus import MilvusClient

TOKEN = os.environ.get("MILVUS_TOKEN", "")  # user:password when the server requires auth
uri = sys.argv[1]
admin = MilvusClient(uri=uri, token=TOKEN)
for name in ("prog_catalog_v1", "prog_catalog_v2"):
    if admin.has_collection(name):
        admin.drop_collection(name)
if "prog_catalog" in admin.list_aliases().get("aliases", []):
    admin.drop_alias("prog_catalog")
for name, version in (("prog_catalog_v1", 1), ("prog_catalog_v2", 2)):
    admin.create_collection(name, dimension=4, consistency_level="Strong")
    admin.insert(name, [{"id": i, "vector": [float(i), 1.0, 0.0, 0.0], "version": version} for i in range(50)])
admin.create_alias(collection_name="prog_catalog_v1", alias="prog_catalog")

seen: list[set] = []
errors: list[str] = []
stop = threading.Event()
switched = threading.Event()
after_switch: list[set] = []


def reader() -> None:
    client = MilvusClient(uri=uri, token=TOKEN)
    while not stop.is_set():
        try:
            rows = client.query("prog_catalog", filter="id < 10", output_fields=["version"])
            versions = {r["version"] for r in rows}
            (after_switch if switched.is_set() else seen).append(versions)
        except Exception as exc:  # noqa: BLE001 - count every failed read
            errors.append(str(exc))
    client.close()


threads = [threading.Thread(target=reader) for _ in range(3)]
for t in threads:
    t.start()
while len(seen) < 6 and not errors:
    time.sleep(0.05)
admin.alter_alias(collection_name="prog_catalog_v2", alias="prog_catalog")
switched.set()
while len(after_switch) < 6 and not errors:
    time.sleep(0.05)
stop.set()
for t in threads:
    t.join()
final = {r["version"] for r in admin.query("prog_catalog", filter="id < 10", output_fields=["version"])}
out = {
    "mixed_reads": sum(1 for v in seen + after_switch if len(v) != 1),
    "errors": len(errors),
    "final_version": sorted(final),
    "described": admin.describe_alias("prog_catalog")["collection_name"],
}
admin.drop_alias("prog_catalog")
for name in ("prog_catalog_v1", "prog_catalog_v2"):
    admin.drop_collection(name)
print(json.dumps(out, sort_keys=True))
