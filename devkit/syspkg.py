"""Debian packages the dev tooling needs (Chromium for the browser test, Prometheus for
``dev up --observability``), installed on demand with apt-get when missing."""

from __future__ import annotations

import os
import shutil
import subprocess


class PackageUnavailable(RuntimeError):
    """The program is not on PATH and could not be installed (the message says why)."""


def _apt(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    prefix: list[str] = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else [])
    return subprocess.run([*prefix, "apt-get", "-o", "DPkg::Lock::Timeout=600", *args],
                          capture_output=True, text=True, timeout=timeout, env=env)


def ensure_program(names: tuple[str, ...], package: str, timeout: float = 900.0) -> str:
    """Path of the first of ``names`` on PATH; installs Debian's ``package`` first when none is.
    Raises PackageUnavailable with the reason when it cannot be installed."""
    for name in names:
        if found := shutil.which(name):
            return found
    if not shutil.which("apt-get"):
        raise PackageUnavailable(f"{'/'.join(names)} not found and no apt-get to install Debian's {package!r}")
    if os.geteuid() != 0 and not shutil.which("sudo"):
        raise PackageUnavailable(f"{'/'.join(names)} not found; installing Debian's {package!r} needs root "
                                 f"(run `apt-get install -y {package}` as root)")
    try:
        res = _apt("install", "-y", "--no-install-recommends", package, timeout=timeout)
        if res.returncode != 0:  # package lists may be missing or stale: update once, retry
            _apt("update", timeout=timeout)
            res = _apt("install", "-y", "--no-install-recommends", package, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackageUnavailable(f"apt-get install {package} failed: {exc}") from exc
    if res.returncode != 0:
        raise PackageUnavailable(f"apt-get install {package} failed (exit {res.returncode}): "
                                 f"{(res.stderr or res.stdout).strip()[-500:]}")
    for name in names:
        if found := shutil.which(name):
            return found
    raise PackageUnavailable(f"installed {package!r} but none of {names} is on PATH")


def chromium() -> str:
    return ensure_program(("chromium", "chromium-browser"), "chromium")


def prometheus() -> str:
    return ensure_program(("prometheus",), "prometheus")
