"""Model artifacts: content-hashed ids, weight loading with clear errors, the artifact registry.

A model id is ``<arch>-<dim>-<12 hex>`` where the hex digits hash the weight files' contents and
the configuration that changes the vectors (architecture, projection, input size, pre-processing).
A collection records the id it was built with; a search with another id is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch


class ModelFileError(RuntimeError):
    """A weight file is missing, unreadable, corrupt, or does not fit the model. Names the path."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(f"{message}: {path}")
        self.path = Path(path)


@lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: Path | str) -> str:
    """sha256 of a file's content (cached by path, size and mtime)."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(p, "weight file not found")
    st = p.stat()
    return _file_sha256(str(p.resolve()), st.st_size, st.st_mtime_ns)


def model_id(arch: str, dim: int, config: Mapping[str, Any]) -> str:
    """Stable id from the architecture, the output dimension and a JSON-able config."""
    blob = json.dumps({"arch": arch, "dim": dim, **config}, sort_keys=True, default=str).encode()
    return f"{arch}-{dim}-{hashlib.sha256(blob).hexdigest()[:12]}"


def load_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """Load a state_dict (plain tensors only, ``weights_only``) with errors that name the path."""
    p = Path(path)
    if not p.is_file():
        raise ModelFileError(p, "weight file not found")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise ModelFileError(p, f"corrupt or unreadable weight file ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(p, "weight file does not hold a state_dict of tensors")
    return obj


def load_into(module: torch.nn.Module, path: Path | str, *, what: str) -> None:
    """Load a state_dict file into ``module`` strictly; a mismatch is a ModelFileError."""
    sd = load_state_dict(path)
    try:
        module.load_state_dict(sd, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise ModelFileError(path, f"weight file does not fit {what} ({' '.join(first)[:400]})") from e
