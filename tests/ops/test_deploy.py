"""deploy/: compose, Kubernetes (kustomize), Dockerfile. The files parse, every image is pinned,
every SHARDPROXY_/EMBED_ variable is a real pydantic-settings field (one source of truth), ports
agree with the settings and with each other. No Docker engine here: checked by parsing."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from pydantic_settings import BaseSettings

from shardproxy.config import ProxySettings
from tests.ops.deployfiles import (
    COMPOSE,
    DEPLOY,
    DOCKERFILE,
    K8S,
    PROM,
    ROOT,
    by_name,
    compose,
    compose_env,
    containers,
    dockerfile_env,
    dockerfile_lines,
    k8s_docs,
    k8s_env_files,
    pod_specs,
)

# ---------------------------------------------------------------- settings classes (one source of truth)
# Variables the deploy files may set for a field its owner still has to add (none pending now).
PENDING_FIELDS: dict[str, set[str]] = {}


def settings_classes() -> dict[str, type[BaseSettings]]:
    """env prefix -> the pydantic-settings class that reads it."""
    from embed.config import EmbedSettings

    return {"SHARDPROXY_": ProxySettings, "EMBED_": EmbedSettings}


def field_names(cls: type[BaseSettings]) -> set[str]:
    return set(cls.model_fields)


def all_deploy_env() -> list[tuple[str, str, str]]:
    """(where, NAME, value) for every environment variable the deploy files set."""
    out: list[tuple[str, str, str]] = []
    for name, svc in compose()["services"].items():
        out += [(f"compose:{name}", k, v) for k, v in compose_env(svc).items()]
    for cm, env in k8s_env_files().items():
        out += [(f"k8s configmap {cm}", k, v) for k, v in env.items()]
    for obj, c in containers(k8s_docs()):
        out += [(f"k8s {obj['kind']}/{obj['metadata']['name']}", e["name"], str(e.get("value", "")))
                for e in c.get("env", [])]
    out += [("Dockerfile", k, v) for k, v in dockerfile_env().items()]
    return out


def test_settings_prefixes_are_what_the_classes_read() -> None:
    assert ProxySettings.model_config["env_prefix"] == "SHARDPROXY_"
    for prefix, cls in settings_classes().items():
        assert cls.model_config["env_prefix"] == prefix


def test_every_env_name_is_a_settings_field() -> None:
    classes = settings_classes()
    env = all_deploy_env()
    assert any(k.startswith("SHARDPROXY_") for _, k, _ in env)
    assert any(k.startswith("EMBED_") for _, k, _ in env)
    bad = []
    for where, key, _ in env:
        if re.match(r"(?i)^(shard|embed)", key) and not any(key.startswith(p) for p in classes):
            bad.append(f"{where}: {key} (prefix is not one the code reads)")
        for prefix, cls in classes.items():
            name = key[len(prefix):].lower()
            if key.startswith(prefix) and name not in field_names(cls) | PENDING_FIELDS.get(prefix, set()):
                bad.append(f"{where}: {key} is not a field of {cls.__name__}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source", ["compose:proxy-1", "compose:proxy-2", "k8s configmap shardproxy-config"])
def test_proxy_settings_load_from_deploy_env(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values parse too (types, bools), through the same pydantic-settings path the proxy uses."""
    env = {k: v for where, k, v in all_deploy_env() if where == source and k.startswith("SHARDPROXY_")}
    assert env
    for k in list(ProxySettings.model_fields):
        monkeypatch.delenv(f"SHARDPROXY_{k.upper()}", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = ProxySettings()
    assert s.port == ProxySettings.model_fields["port"].default == 19530
    assert s.metrics_port == 9100
    assert s.host == "0.0.0.0"
    assert s.redis_url.startswith("redis://redis:6379")


@pytest.mark.parametrize("source", ["compose:embed-worker", "k8s configmap embed-config", "compose:proxy-1"])
def test_embed_settings_load_from_deploy_env(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = settings_classes()["EMBED_"]
    env = {k: v for where, k, v in all_deploy_env() if where == source and k.startswith("EMBED_")}
    assert env
    for k in list(cls.model_fields):
        monkeypatch.delenv(f"EMBED_{k.upper()}", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = cls()
    assert str(s.weights).startswith("/models/")  # weights mounted, not baked in
    assert str(s.cache_dir) == "/var/cache/shop-by-image"
    if source != "compose:proxy-1":
        assert s.redis_url == "redis://redis:6379/0" and s.proxy.endswith(":19530")


# ---------------------------------------------------------------- images pinned
def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    return bool(tag) and tag != "latest" and re.search(r"\d", tag) is not None


def test_compose_images_pinned() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        assert "image" in svc, f"{name}: no image (a built service still names its tag)"
        assert _pinned(svc["image"]), f"{name}: image {svc['image']} is not pinned"


def test_k8s_images_pinned() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    overrides = {i["name"]: i for i in kust.get("images", [])}
    for obj, c in containers(k8s_docs()):
        image = c["image"]
        if image in overrides:
            o = overrides[image]
            image = f"{o.get('newName', image)}:{o['newTag']}" if "newTag" in o else f"{o.get('newName', image)}@{o['digest']}"
        assert _pinned(image), f"{obj['metadata']['name']}/{c['name']}: {image} is not pinned"


def test_dockerfile_base_images_pinned() -> None:
    args = {m.group(1): m.group(2) for instr, a in dockerfile_lines() if instr == "ARG"
            for m in [re.match(r"(\w+)=(\S+)", a)] if m}
    froms = [a for instr, a in dockerfile_lines() if instr == "FROM"]
    for f in froms:
        image = f.split()[0]
        image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), image)
        assert _pinned(image), f"FROM {image} is not pinned"


def test_kustomize_builds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed (the parse checks above still ran)")
    # the secret files are never committed: build a copy with throwaway ones, as an operator would
    k8s = tmp_path / "k8s"
    shutil.copytree(K8S, k8s)
    for name, value in (("root_password", "pw-for-test"), ("node_token", "root:Milvus"),
                        ("client_token", "root:pw-for-test")):
        (k8s / "secrets" / name).write_text(value)
    for base in (k8s, k8s / "monitoring"):
        out = subprocess.run([kubectl, "kustomize", str(base)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        docs = [d for d in yaml.safe_load_all(out.stdout) if d]
        assert docs
        if base == k8s:
            assert any(d["kind"] == "Secret" and d["metadata"]["name"].startswith("shardproxy-auth") for d in docs)
            assert any(d["kind"] == "NetworkPolicy" for d in docs)
            assert all(d["metadata"].get("namespace") == "shop-by-image" for d in docs if d["kind"] != "Namespace")
            images = re.findall(r"image:\s*(\S+)", out.stdout)
            assert images and all(_pinned(i) for i in images), images


# ---------------------------------------------------------------- compose
def test_compose_shape() -> None:
    services = compose()["services"]
    milvus = [n for n, s in services.items() if s["image"].startswith("milvusdb/milvus:")]
    assert len(milvus) == 3
    proxies = [n for n, s in services.items() if "serve" in (s.get("command") or [])]
    assert len(proxies) == 2
    for name in milvus:
        env = compose_env(services[name])
        assert env["ETCD_USE_EMBED"] == "true" and env["COMMON_STORAGETYPE"] == "local"
        assert any(str(v).endswith(":/var/lib/milvus") for v in services[name]["volumes"]), name
    worker = services["embed-worker"]
    assert worker["entrypoint"] == ["embed"] and worker["command"] == ["worker"]
    assert any(v.endswith(":/models:ro") for v in worker["volumes"])
    for name in ("prometheus", "grafana"):
        assert name in services
    # every long-running service has a health check
    for name, svc in services.items():
        if svc.get("restart") != "no":
            assert "healthcheck" in svc, f"{name} has no health check"


def test_compose_redis_persistent() -> None:
    redis = compose()["services"]["redis"]
    cmd = " ".join(redis["command"])
    assert "--appendonly yes" in cmd
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])
    assert redis["volumes"][0].split(":")[0] in compose()["volumes"]


def test_compose_ports_agree() -> None:
    services = compose()["services"]
    prom = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    proxy_targets = set(jobs["shardproxy"]["static_configs"][0]["targets"])
    for name in ("proxy-1", "proxy-2"):
        svc = services[name]
        env = compose_env(svc)
        port = int(env.get("SHARDPROXY_PORT", ProxySettings.model_fields["port"].default))
        assert all(p.split(":")[-1] == str(port) for p in svc["ports"])
        assert f"127.0.0.1:{port}" in " ".join(svc["healthcheck"]["test"])
        assert f"{name}:{env['SHARDPROXY_METRICS_PORT']}" in proxy_targets
    worker_env = compose_env(services["embed-worker"])
    assert jobs["embed-worker"]["dns_sd_configs"][0]["port"] == int(worker_env["EMBED_METRICS_PORT"])
    assert f":{worker_env['EMBED_METRICS_PORT']}/metrics" in " ".join(services["embed-worker"]["healthcheck"]["test"])
    assert worker_env["EMBED_PROXY"].endswith(":19530")
    milvus_targets = set(jobs["milvus"]["static_configs"][0]["targets"])
    assert milvus_targets == {f"milvus-{i}:9091" for i in (1, 2, 3)}


def test_compose_register_nodes_names_real_services() -> None:
    services = compose()["services"]
    script = services["register-nodes"]["command"][0]
    assert "shardproxy node add milvus-$$n:19530" in script and "for n in 1 2 3" in script
    assert "--proxy proxy-1:19530" in script
    for n in (1, 2, 3):
        assert f"milvus-{n}" in services
    assert set(services["register-nodes"]["depends_on"]) == {"proxy-1", "milvus-1", "milvus-2", "milvus-3"}


def test_compose_mounts_exist() -> None:
    base = COMPOSE.parent
    for name, svc in compose()["services"].items():
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith(".") and name != "embed-worker" and "models" not in src:
                assert (base / src).exists(), f"{name}: {src} does not exist"


def test_milvus_config_same_in_compose_and_k8s() -> None:
    for f in ("embedEtcd.yaml", "user.yaml"):
        assert (DEPLOY / "compose" / "milvus" / f).read_text() == (K8S / "milvus" / f).read_text()


# ---------------------------------------------------------------- kubernetes
def _port(container: dict[str, Any], name: str) -> int:
    return next(p["containerPort"] for p in container["ports"] if p["name"] == name)


def test_k8s_proxy_ports_probes_and_settings_agree() -> None:
    docs = k8s_docs()
    env = k8s_env_files()["shardproxy-config"]
    dep = by_name(docs, "Deployment", "shardproxy")
    tmpl = dep["spec"]["template"]
    (c,) = tmpl["spec"]["containers"]
    grpc_port = int(env["SHARDPROXY_PORT"])
    metrics_port = int(env["SHARDPROXY_METRICS_PORT"])
    assert grpc_port == ProxySettings.model_fields["port"].default
    assert _port(c, "grpc") == grpc_port and _port(c, "metrics") == metrics_port
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["grpc"]["port"] == grpc_port, probe  # native gRPC probes: the standard health service
    assert tmpl["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)
    assert c["envFrom"][0]["configMapRef"]["name"] == "shardproxy-config"
    assert tmpl["spec"]["securityContext"]["runAsNonRoot"] is True
    svc = by_name(docs, "Service", "shardproxy")
    assert {p["name"]: p["port"] for p in svc["spec"]["ports"]} == {"grpc": grpc_port, "metrics": metrics_port}
    assert c["resources"]["requests"]["cpu"], "the HPA needs a CPU request"


def test_k8s_hpa_scales_the_proxy() -> None:
    hpa = by_name(k8s_docs(), "HorizontalPodAutoscaler", "shardproxy")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shardproxy"}
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


def test_k8s_milvus_statefulset_and_registration() -> None:
    docs = k8s_docs()
    sts = by_name(docs, "StatefulSet", "milvus")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["serviceName"] == "milvus"
    assert by_name(docs, "Service", "milvus")["spec"]["clusterIP"] == "None"
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["ETCD_USE_EMBED"] == "true" and env["COMMON_STORAGETYPE"] == "local"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert any(m["mountPath"] == "/var/lib/milvus" for m in c["volumeMounts"])
    assert _port(c, "grpc") == 19530
    job = by_name(docs, "Job", "register-nodes")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "for i in 0 1 2" in script and "milvus-$i.milvus:19530" in script
    assert "--proxy shardproxy:19530" in script


def test_k8s_redis_persistent() -> None:
    docs = k8s_docs()
    sts = by_name(docs, "StatefulSet", "redis")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert "--appendonly yes" in " ".join(c["args"])
    assert any(m["mountPath"] == "/data" for m in c["volumeMounts"])
    assert sts["spec"]["volumeClaimTemplates"]


def test_k8s_worker() -> None:
    docs = k8s_docs()
    dep = by_name(docs, "Deployment", "embed-worker")
    tmpl = dep["spec"]["template"]
    (c,) = tmpl["spec"]["containers"]
    env = k8s_env_files()["embed-config"]
    assert c["command"] == ["embed"] and c["args"] == ["worker"]
    assert _port(c, "metrics") == int(env["EMBED_METRICS_PORT"])
    assert tmpl["metadata"]["annotations"]["prometheus.io/port"] == env["EMBED_METRICS_PORT"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert env["EMBED_WEIGHTS"].startswith("/models/")
    assert env["EMBED_PROXY"] == "http://shardproxy:19530"


def test_k8s_every_pod_scraped_or_not_a_server() -> None:
    for obj, tmpl in pod_specs(k8s_docs()):
        ann = tmpl["metadata"].get("annotations", {})
        if obj["kind"] == "Job" or obj["metadata"]["name"] == "redis":
            continue
        assert ann.get("prometheus.io/scrape") == "true", obj["metadata"]["name"]
        ports = {p["containerPort"] for c in tmpl["spec"]["containers"] for p in c.get("ports", [])}
        assert int(ann["prometheus.io/port"]) in ports


# ---------------------------------------------------------------- Dockerfile
def test_dockerfile() -> None:
    lines = dockerfile_lines()
    froms = [a for i, a in lines if i == "FROM"]
    assert len(froms) >= 2 and re.search(r"\bAS\s+builder\b", froms[0], re.I), "multi-stage build"
    runtime_start = max(n for n, (i, _) in enumerate(lines) if i == "FROM")
    runtime = lines[runtime_start:]
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert any(i == "COPY" and "--from=builder" in a for i, a in runtime)
    for i, a in lines:
        if i in ("COPY", "ADD"):
            assert not re.search(r"\.(pt|pth|onnx|safetensors|bin)\b|models?/", a), f"weights baked in: {i} {a}"
    run = " ".join(a for i, a in lines if i == "RUN")
    assert "torch==2.13.0" in run and "download.pytorch.org/whl/cpu" in run
    expose = " ".join(a for i, a in runtime if i == "EXPOSE").split()
    env = dockerfile_env()
    assert env["SHARDPROXY_PORT"] in expose and env["SHARDPROXY_METRICS_PORT"] in expose
    assert "9101" in expose
    assert dict(runtime)["ENTRYPOINT"] == '["shardproxy"]'
    assert "/models" in dict(runtime)["VOLUME"]
    ignore = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".venv", "**/*.pt", "**/*.onnx", "models", ".data"):
        assert pattern in ignore


def test_healthcheck_command_is_importable() -> None:
    """The compose/Dockerfile health checks run `python -m shardproxy.healthcheck`: it must exist."""
    from shardproxy import healthcheck

    assert healthcheck.main(["--grpc", "127.0.0.1:1", "--timeout", "0.5"]) == 1
    assert healthcheck.main(["--http", "http://127.0.0.1:1/metrics", "--timeout", "0.5"]) == 1
