"""Readers for the deploy files, shared by the ops tests: compose, kustomize manifests, env files,
Dockerfile, PromQL metric names."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose" / "docker-compose.yml"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DOCKERFILE = ROOT / "Dockerfile"


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def k8s_docs(base: Path = K8S) -> list[dict[str, Any]]:
    """Every object of the kustomization's resources (as written, before kustomize)."""
    kust = yaml.safe_load((base / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for res in kust["resources"]:
        path = base / res
        if path.is_dir():
            docs.extend(k8s_docs(path))
            continue
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def k8s_env_files() -> dict[str, dict[str, str]]:
    """configMapGenerator name -> its env file's variables."""
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    out: dict[str, dict[str, str]] = {}
    for gen in kust.get("configMapGenerator", []):
        env: dict[str, str] = {}
        for f in gen.get("envs", []):
            env.update(parse_env_file(K8S / f))
        if env:
            out[gen["name"]] = env
    return out


def parse_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: not KEY=VALUE: {line!r}"
        env[key.strip()] = value.strip()
    return env


def pod_specs(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload object, pod template) for every Deployment, StatefulSet, Job."""
    for d in docs:
        if d.get("kind") in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield d, d["spec"]["template"]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for d, tmpl in pod_specs(docs):
        for c in [*tmpl["spec"].get("initContainers", []), *tmpl["spec"]["containers"]]:
            yield d, c


def by_name(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    raise KeyError(f"{kind}/{name}")


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def dockerfile_lines() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        instr, _, args = buf.partition(" ")
        out.append((instr.upper(), args.strip()))
        buf = ""
    return out


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in dockerfile_lines():
        if instr == "ENV":
            for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args):
                env[m.group(1)] = m.group(2)
    return env


# ---------------------------------------------------------------- PromQL
_FUNCS_WITH_LABEL_LISTS = r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)"
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "inf", "nan", "atan2",
    # aggregation operators: "sum by (x) (...)" puts the name before a keyword, not a parenthesis
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
    "group", "limitk", "limit_ratio",
}


def promql_metrics(expr: str) -> set[str]:
    """Metric names an expression selects (functions, keywords, labels, durations, strings and
    Grafana variables left out)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    s = re.sub(r"'(?:[^'\\]|\\.)*'", "''", s)
    s = re.sub(r"\{[^}]*\}", "", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", "", s)  # ranges and subqueries
    s = re.sub(_FUNCS_WITH_LABEL_LISTS, r"\1", s)
    s = re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", "", s)  # $__rate_interval, $job
    names: set[str] = set()
    for m in re.finditer(r"(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS or re.fullmatch(r"\d+(e\d+)?", name):
            continue
        names.add(name)
    return names
