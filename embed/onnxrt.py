"""ONNX Runtime inference for the torch models: export once into the artifacts dir, run with onnxruntime.

Exports are keyed by the content hash of what they contain (backbone weights, head weights, input
size), written atomically, and re-used; a corrupt export is rebuilt. On 2 cores onnxruntime runs the
Lite0 backbone about 3x faster than eager torch with the same outputs (checked in the tests).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)
_export_lock = threading.Lock()


def _prepare(module: torch.nn.Module) -> None:
    """A memory-efficient swish is a custom autograd function: swap it for the exportable one (same
    values). Lite0 uses ReLU6 and is left as it is (``set_swish`` would turn its ReLU6 into swish)."""
    for m in module.modules():
        if type(getattr(m, "_swish", None)).__name__ == "MemoryEfficientSwish":
            from efficientnet_lite_pytorch.utils import Swish

            m._swish = Swish()


def export(module: torch.nn.Module, example: torch.Tensor, path: Path, *, output_names: list[str],
           dynamic_batch: bool = False) -> Path:
    """Export ``module`` (eval mode) to ``path`` unless it is already there."""
    if path.is_file():
        return path
    with _export_lock:
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        _prepare(module)
        module.eval()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        axes = {"input": {0: "batch"}, **{n: {0: "batch"} for n in output_names}} if dynamic_batch else None
        # the exporter's constant-folding and tracer warnings are about the export, not the model's
        # results (parity is tested in tests/embed/test_dethead.py): keep them out of the CLIs' output
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(module, (example,), str(tmp), input_names=["input"], output_names=output_names,
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        tmp.replace(path)
        log.info("exported %s", path)
    return path


def session(path: Path, threads: int = 0) -> object:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # no busy-waiting between ops: on shared cores spinning threads slow everyone down, this process too
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # a truncated or stale export: rebuild it once
        log.warning("rebuilding ONNX export %s (%s)", path, e)
        path.unlink(missing_ok=True)
        raise


def tensor_digest(module: torch.nn.Module, extra: str = "") -> str:
    """Content hash of a module's weights (and ``extra``): names an export."""
    h = hashlib.sha256(extra.encode())
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class OrtRunner:
    """Runs an exported module: ``runner(x)`` -> list of numpy outputs."""

    def __init__(self, build: Callable[[], Path], threads: int = 0) -> None:
        path = build()
        try:
            self.session = session(path, threads)
        except Exception:
            self.session = session(build(), threads)
        self.input = self.session.get_inputs()[0].name  # type: ignore[attr-defined]
        self.path = path

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})  # type: ignore[attr-defined]
