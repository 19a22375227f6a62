import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from wsss.algorithms.crf import probability_crf
from wsss.data.datasets import check_label_folder
from wsss.data.transforms import normalize
from wsss.data.voc import voc_palette
from wsss.stages.segmentation import predict_probabilities, predict_split, segmentation_loss, write_prediction
from wsss.utils.errors import StageError
from wsss.utils.files import load_label_png


class TinySegmenter(torch.nn.Module):
    """A deterministic stand-in: 4×4 pooling, a fixed (left-right asymmetric) 3×3 conv to 21 classes,
    bilinear upsampling to the input size; records the input sizes."""

    def __init__(self):
        super().__init__()
        self.weight = torch.randn(21, 3, 3, 3, generator=torch.Generator().manual_seed(0))
        self.sizes = []

    def forward(self, images):
        self.sizes.append(tuple(images.shape[2:]))
        x = F.conv2d(F.avg_pool2d(images, 4, ceil_mode=True), self.weight, padding=1)
        return F.interpolate(x, size=images.shape[2:], mode="bilinear", align_corners=True)


def noisy_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    return Image.fromarray(np.clip(ramp + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8))


def test_loss_ignores_void_pixels():
    logits = torch.tensor([[0.0, 5.0, 0.0], [math.log(2), 0.0, 0.0], [0.0, 0.0, 0.0]])[None, :, None, :]
    logits.requires_grad_(True)
    labels = torch.tensor([[[1, 255, 0]]])
    loss = segmentation_loss(logits, labels)
    # pixel 0: −log(2/(1+2+1)) = log 2; pixel 2: −log(1/3) = log 3; pixel 1 (255) does not count
    assert loss.item() == pytest.approx((math.log(2) + math.log(3)) / 2, abs=1e-6)
    loss.backward()
    assert torch.all(logits.grad[0, :, 0, 1] == 0) and torch.any(logits.grad[0, :, 0, 0] != 0)


def test_multiscale_flip_fusion_matches_a_direct_computation():
    image = noisy_image(45, 37)
    scales = [0.5, 1.0, 1.5]
    model = TinySegmenter()
    probabilities = predict_probabilities(model, image, scales, torch.device("cpu"))
    # Python's round sends halves to even: 18.5 → 18, 22.5 → 22; 55.5 → 56, 67.5 → 68
    assert model.sizes == [(22, 18), (45, 37), (68, 56)]

    reference = TinySegmenter()
    total = 0
    for scale in scales:  # the published order: resize both passes to the image size, then fuse
        resized = image.resize((round(37 * scale), round(45 * scale)), Image.BICUBIC)
        x = torch.from_numpy(normalize(resized).transpose(2, 0, 1))
        logits = reference(torch.stack([x, x.flip(-1)]))
        logits = F.interpolate(logits, size=(45, 37), mode="bilinear", align_corners=False)
        total = total + logits[0] + logits[1].flip(-1)
    expected = torch.softmax(total, dim=0).numpy()
    assert probabilities.shape == (21, 45, 37) and probabilities.dtype == np.float32
    assert np.allclose(probabilities, expected, atol=1e-6)
    assert np.allclose(probabilities.sum(axis=0), 1, atol=1e-5)


def two_region_case():
    """Black left half, white right half; class 3 likely on the left, class 7 on the right, except
    one left pixel where class 7 narrowly wins: the CRF should give it back to class 3."""
    image = np.zeros((20, 24, 3), np.uint8)
    image[:, 12:] = 255
    scores = np.full((21, 20, 24), 0.1, np.float32)
    scores[3, :, :12] = 6.0
    scores[7, :, 12:] = 6.0
    scores[7, 10, 5] = 6.5
    return image, scores / scores.sum(axis=0, keepdims=True)


def test_crf_iterations_refine_the_probabilities_before_the_argmax(tmp_path):
    image, probabilities = two_region_case()
    write_prediction(tmp_path / "plain.png", image, probabilities, iteration=0)
    write_prediction(tmp_path / "crf.png", image, probabilities, iteration=3)
    plain, refined = load_label_png(tmp_path / "plain.png"), load_label_png(tmp_path / "crf.png")
    assert np.array_equal(plain, np.argmax(probabilities, axis=0))
    assert np.array_equal(refined, np.argmax(probability_crf(image, probabilities, 3), axis=0))
    assert plain[10, 5] == 7 and refined[10, 5] == 3
    assert np.array_equal(np.unique(refined[:, :12]), [3]) and np.array_equal(np.unique(refined[:, 12:]), [7])


def test_test_split_predictions_are_voc_colour_pngs(tmp_path):
    image, probabilities = two_region_case()
    write_prediction(tmp_path / "c.png", image, probabilities, iteration=0, palette=voc_palette())
    with Image.open(tmp_path / "c.png") as written:
        assert written.mode == "P"
        assert written.getpalette()[:24] == voc_palette()[:24]
        assert np.array_equal(np.array(written), np.argmax(probabilities, axis=0))


def test_outputs_do_not_depend_on_the_worker_count(tmp_path):
    images = [(f"img{index}", noisy_image(30 + 3 * index, 41, seed=index)) for index in range(3)]
    results = []
    for workers in (0, 2):
        out_dir = tmp_path / f"workers{workers}"
        predict_split(TinySegmenter(), images, out_dir, [0.5, 1.0], 2, torch.device("cpu"),
                      num_workers=workers, progress=False)
        results.append({path.name: load_label_png(path) for path in sorted(out_dir.iterdir())})
    assert sorted(results[0]) == ["img0.png", "img1.png", "img2.png"]
    assert all(np.array_equal(results[0][name], results[1][name]) for name in results[0])
    assert results[0]["img2.png"].shape == (36, 41)


def check_pseudo_labels(folder, ids):
    check_label_folder(folder, ids, "pseudo label", "make_pseudo_labels.py")


def test_missing_pseudo_labels_are_named(tmp_path):
    with pytest.raises(StageError, match="pseudo label folder not found"):
        check_pseudo_labels(tmp_path / "absent", ["a"])
    for image_id in ("a", "c"):
        Image.new("L", (4, 4)).save(tmp_path / f"{image_id}.png")
    with pytest.raises(StageError, match=r"b\.png: pseudo label missing \(2 of 4 train_aug images"):
        check_pseudo_labels(tmp_path, ["a", "b", "c", "d"])
    check_pseudo_labels(tmp_path, ["a", "c"])
