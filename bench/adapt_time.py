"""Time one uncached catalog adaptation (`embed train`'s projection) with and without the sixth round's
crowded views, on the sample catalog; writes bench/out/round6/adapt_time.json. Run: python bench/adapt_time.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from embed.catalog import read_catalog  # noqa: E402
from embed.config import EmbedSettings  # noqa: E402
from embed.sample_catalog import build_sample_catalog  # noqa: E402
from embed.train import adapt_to_catalog  # noqa: E402


def main() -> None:
    cat = read_catalog(build_sample_catalog(ROOT / ".cache" / "tuxpaint"))
    out = {}
    for name, upd in (("fifth round: 12 views / 900 steps, no crowded views", {"train_crowded": 0.0}),
                      ("sixth round default: 12 / 900, crowded share 0.5", {})):
        with tempfile.TemporaryDirectory() as d:
            # a fresh artifacts dir so nothing is cached; the backbone export is rebuilt too, timed apart
            s2 = EmbedSettings(cache_dir=Path(d)).model_copy(update=upd)
            adapt_to_catalog(cat, s2.model_copy(update={"train_steps": 1, "train_views": 1}), quiet=True)  # warm export
            t = time.monotonic()
            adapt_to_catalog(cat, s2, quiet=True, force=True)
            out[name] = {"s": round(time.monotonic() - t, 1), "load": [round(x, 1) for x in os.getloadavg()[:2]], "images": len(cat.items)}
            print(name, out[name], flush=True)
    Path(ROOT / "bench/out/round6/adapt_time.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
