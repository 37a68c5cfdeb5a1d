"""Fine-tuning the backbone's upper half for the DETECTOR (issue #15, eighth round).

``bench/headft.py --upto 8`` showed that training Lite0's blocks 8-15 lifts the embedder's ceiling on
unseen backgrounds, and that through the pipeline the detector's boxes then lose more than the
embedder (cluttered det@0.5 0.75-0.84). The detector head trains on a frozen backbone. This script asks
the same question for it: starting from a trained head (``--head``), train the head together with
blocks 8-15 and ``conv_head`` on the detector's own training scenes (the strict training products on
the base pool's strict training textures, composed as ``embed.detrain`` does: with ``--scene-seed 0`` the
very scenes the head was trained on, with another seed new ones), and, as the baseline of the same run,
the head alone for as many steps on the frozen backbone.

The trunk below block ``--upto`` is frozen and its maps at the head's input size are cached (ONNX
Runtime); BatchNorm keeps its running statistics. Each variant is saved under ``--save`` as
``<name>-head.pt`` plus, for the fine-tuned backbone, ``<name>-lite0.pth``, for ``bench/detround.py``
(``HEAD+detbb=PATH``).
Run: EMBED_DET_TEXTURES=ukui-wallpapers,mate-backgrounds,gimp-data EMBED_THREADS=2 nice -n 5 \
     python bench/detft.py --head .cache/models/bench-head-strict-295bfd6441cca9c6.pt --save .cache/models/detft \
     [--scene-seed 1 --save .cache/models/detft-seed1]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from bench.headft import Trunk  # noqa: E402
from bench.relsetup import load_setup, strict_split  # noqa: E402
from embed.dethead import STRIDE, _head, detection_loss, encode_targets, letterbox  # noqa: E402
from embed.detrain import DetTrainConfig, compose_training_scenes, save_head, scene_boxes_in_input  # noqa: E402
from embed.productdet import load_head  # noqa: E402


class TopMaps(torch.nn.Module):
    """Blocks ``upto``.. and conv_head -> (last stride-16 map, stride-32 head map), as ``backbone_maps``."""

    def __init__(self, net, upto: int) -> None:
        super().__init__()
        self.net = copy.deepcopy(net)  # the whole net, so that the fine-tuned one saves as a Lite0 state_dict
        self.upto = upto

    def forward(self, x: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
        f16 = None
        for block in self.net._blocks[self.upto:]:
            x = block(x)
            if x.shape[-1] == grid:
                f16 = x
        assert f16 is not None, "the trunk must end at stride 16 or above"
        return f16, _head(self.net, x)


def main() -> None:  # noqa: C901 (a benchmark script reads top to bottom)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--head", type=Path, required=True, help="the trained head to start from")
    ap.add_argument("--upto", type=int, default=8)
    ap.add_argument("--scenes", type=int, default=900)
    ap.add_argument("--scene-seed", type=int, default=0,
                    help="seed of the composed scenes (0: the scenes the default head was trained on)")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr-head", type=float, default=1e-3)
    ap.add_argument("--lr-top", type=float, default=1e-4)
    ap.add_argument("--save", type=Path, default=ROOT / ".cache" / "models" / "detft")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "round8")
    args = ap.parse_args()
    t0 = time.monotonic()
    torch.set_num_threads(max(1, int(os.environ.get("EMBED_THREADS", "2"))))
    s = load_setup()
    net = s.emb.backbone.net.eval()
    fit_idx, fit_tex, _, _ = strict_split(s)
    base_fit = fit_tex[: len(fit_tex) - (len(s.tex_train) - len(s.tex_base_train or s.tex_train))]
    products = [(s.pids[i], s.images[i]) for i in fit_idx]
    cfg = DetTrainConfig()
    size, grid = cfg.size, cfg.size // STRIDE
    t = time.monotonic()
    images, boxes = compose_training_scenes(products, base_fit, args.scenes, args.scene_seed, cfg.styles)
    from embed.onnxrt import OrtRunner, export, tensor_digest

    trunk = Trunk(net, args.upto).eval()
    ort = OrtRunner(lambda: export(trunk, torch.zeros(2, 3, size, size),
                                   s.settings.artifacts_dir / f"lite0-trunk{args.upto}-{tensor_digest(trunk)}-{size}.onnx",
                                   output_names=["maps"], dynamic_batch=True), s.settings.threads)
    xs, hms, regs, masks = [], [], [], []
    for i in range(0, len(images), 16):
        batch = []
        for img, bx in zip(images[i: i + 16], boxes[i: i + 16]):
            x, lb = letterbox(img, size)
            batch.append(x)
            hm, reg, m = encode_targets(scene_boxes_in_input(bx, lb.scale), grid, STRIDE, 0.0)
            hms.append(hm)
            regs.append(reg)
            masks.append(m)
        xs.append(ort(np.concatenate(batch))[0].astype(np.float16))
    trunk_m = np.concatenate(xs)
    hm_t, reg_t, mask_t = (torch.from_numpy(np.stack(a)) for a in (hms, regs, masks))
    del images
    print(f"{args.scenes} scenes composed and mapped to block {args.upto}: {time.monotonic() - t:.0f} s "
          f"({len(products)} products, {len(base_fit)} textures)", flush=True)

    report: dict[str, dict] = {}

    def train(name: str, backbone: bool) -> None:
        torch.manual_seed(0)
        head, _ = load_head(args.head)
        top = TopMaps(net, args.upto).eval()
        for p in top.parameters():
            p.requires_grad_(backbone)
        if not backbone:  # frozen top: its maps once
            with torch.no_grad():
                frozen = [top(torch.from_numpy(trunk_m[i: i + 32].astype(np.float32)), grid)
                          for i in range(0, len(trunk_m), 32)]
            f16_all, f32_all = torch.cat([a for a, _ in frozen]), torch.cat([b for _, b in frozen])
        groups = [{"params": list(head.parameters()), "lr": args.lr_head}]
        if backbone:
            groups.append({"params": [p for p in top.parameters()], "lr": args.lr_top})
        opt = torch.optim.AdamW(groups, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
        g = torch.Generator().manual_seed(0)
        losses: list[float] = []
        t = time.monotonic()
        head.train()
        for step in range(args.steps):
            idx = torch.randint(0, len(trunk_m), (args.batch,), generator=g)
            if backbone:
                f16, f32 = top(torch.from_numpy(trunk_m[idx.numpy()].astype(np.float32)), grid)
            else:
                f16, f32 = f16_all[idx], f32_all[idx]
            loss = detection_loss(head(f16, f32), hm_t[idx], reg_t[idx], mask_t[idx], 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if (step + 1) % 100 == 0:
                print(f"  {name}: step {step + 1}, {time.monotonic() - t:.0f} s, loss {np.mean(losses[-20:]):.3f}",
                      flush=True)
        head.eval()
        args.save.mkdir(parents=True, exist_ok=True)
        save_head(head, args.save / f"{name}-head.pt", cfg)
        if backbone:
            torch.save(top.net.state_dict(), args.save / f"{name}-lite0.pth")
        report[name] = {"train_s": time.monotonic() - t, "loss_first": float(np.mean(losses[:20])),
                        "loss_last": float(np.mean(losses[-20:]))}
        print(f"{name}: {report[name]}; saved under {args.save}", flush=True)

    train("head", backbone=False)
    train(f"top{args.upto}", backbone=True)
    args.out.mkdir(parents=True, exist_ok=True)
    out = {"command": "python bench/detft.py " + " ".join(sys.argv[1:]), "scenes": args.scenes, "steps": args.steps,
           "batch": args.batch, "lr_head": args.lr_head, "lr_top": args.lr_top, "upto": args.upto,
           "load_average_at_start": s.load_start, "load_average_at_end": os.getloadavg(),
           "cpu_count": os.cpu_count(), "elapsed_s": time.monotonic() - t0, "variants": report}
    name = "detft.json" if args.scene_seed == 0 else f"detft-seed{args.scene_seed}.json"
    (args.out / name).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out / name}; evaluate with bench/detround.py "
          f"--variant h={args.save}/head-head.pt+proto8 --variant d={args.save}/top{args.upto}-head.pt+proto8"
          f"+detbb={args.save}/top{args.upto}-lite0.pth")


if __name__ == "__main__":
    main()
