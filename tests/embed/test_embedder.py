from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from embed.artifacts import ModelFileError
from embed.embedder import Embedder, EmbedderSpec, letterbox_square
from embed.resnet import resnet


def _shape(kind: int, color: tuple[int, int, int], size: int = 96) -> Image.Image:
    img = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(img)
    if kind == 0:
        d.ellipse([10, 10, size - 10, size - 10], fill=color)
    elif kind == 1:
        d.rectangle([15, 25, size - 15, size - 25], fill=color)
    else:
        d.polygon([(size // 2, 5), (5, size - 5), (size - 5, size - 5)], fill=color)
    return img


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_resnet_state_dict_keys_match_torchvision_names(arch: str) -> None:
    sd = resnet(arch).state_dict()
    assert "conv1.weight" in sd and "fc.weight" in sd and "layer4.1.bn2.running_var" in sd
    assert "layer2.0.downsample.0.weight" in sd and "layer2.0.downsample.1.weight" in sd
    if arch == "resnet50":
        assert "layer1.0.conv3.weight" in sd and sd["fc.weight"].shape == (1000, 2048)
        assert len([k for k in sd if k.endswith(".conv1.weight") and k.startswith("layer")]) == 16
    else:
        assert "layer1.0.conv3.weight" not in sd and sd["fc.weight"].shape == (1000, 512)


def test_resnet_loads_through_real_path_and_embeds(tmp_path) -> None:
    torch.manual_seed(1)
    net = resnet("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    emb = Embedder(EmbedderSpec(arch="resnet18", weights=str(path), input_size=64), batch_size=2)
    # the loaded weights are exactly the saved ones
    for k, v in net.state_dict().items():
        assert torch.equal(emb.backbone.net.state_dict()[k], v), k
    imgs = [_shape(i % 3, (200, 30 * i, 40)) for i in range(5)]
    vec = emb.embed(imgs)
    assert vec.shape == (5, 256) and vec.dtype == np.float32
    assert np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)
    # batching does not change the result
    one = np.concatenate([emb.embed([im]) for im in imgs])
    assert np.allclose(vec, one, atol=1e-4)
    assert emb.model_id.startswith("resnet18-256-")


def test_resnet_wrong_arch_state_dict_is_clear_error(tmp_path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(resnet("resnet18").state_dict(), path)
    with pytest.raises(ModelFileError) as e:
        Embedder(EmbedderSpec(arch="resnet34", weights=str(path)))
    assert str(path) in str(e.value) and "does not fit" in str(e.value)


def test_missing_and_corrupt_weight_files_name_the_path(tmp_path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ModelFileError) as e:
        Embedder(EmbedderSpec(arch="resnet18", weights=str(missing)))
    assert str(missing) in str(e.value) and "not found" in str(e.value)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ModelFileError) as e2:
        Embedder(EmbedderSpec(arch="resnet18", weights=str(bad)))
    assert str(bad) in str(e2.value) and "corrupt" in str(e2.value)


def test_model_id_changes_with_content_and_config(tmp_path) -> None:
    p1, p2 = tmp_path / "a.pth", tmp_path / "b.pth"
    torch.manual_seed(0)
    torch.save(resnet("resnet18").state_dict(), p1)
    torch.save(resnet("resnet18").state_dict(), p2)
    a = EmbedderSpec(arch="resnet18", weights=str(p1))
    assert a.model_id() == EmbedderSpec(arch="resnet18", weights=str(p1)).model_id()
    assert a.model_id() != EmbedderSpec(arch="resnet18", weights=str(p2)).model_id()
    assert a.model_id() != EmbedderSpec(arch="resnet18", weights=str(p1), input_size=192).model_id()


def test_lite0_default_retrieves_same_shape(lite0: Embedder) -> None:
    from tests.embed.synth import product_image

    cat = [product_image(i, size=128) for i in range(8)]
    # queries: rotated, shrunk, JPEG-ish colour jitter of the catalog images
    queries = [im.rotate(12, fillcolor=(255, 255, 255)).resize((70, 70)) for im in cat]
    c, q = lite0.embed(cat), lite0.embed(queries)
    sims = q @ c.T
    assert (sims.argmax(axis=1) == np.arange(len(cat))).mean() >= 7 / 8
    assert lite0.model_id.startswith("efficientnet-lite0-256-")


def test_letterbox_square_pads_white() -> None:
    img = Image.new("RGB", (100, 50), (0, 0, 0))
    sq = letterbox_square(img, 32)
    assert sq.size == (32, 32)
    assert sq.getpixel((16, 1)) == (255, 255, 255) and sq.getpixel((16, 16)) == (0, 0, 0)


def test_projection_file_shape_checked(tmp_path) -> None:
    p = tmp_path / "proj.pt"
    torch.save({"weight": torch.zeros(256, 10)}, p)
    with pytest.raises(ModelFileError) as e:
        Embedder(EmbedderSpec(projection=str(p)))
    assert str(p) in str(e.value)
