"""SILOP's per-image stages (wsss/stages/perimeter_fit.py) on toy images, each compared with the
published steps written out directly: OpenCV reading (BGR) and writing, the PIL flood fills of
bench/perimeter_fit_direct.py, and the combination in torch channel by channel. Also the readers and
writers of the new formats, sharding, worker processes, skipping and the published pickled CAMs."""
import pathlib
import shutil
import types

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import workspace
from PIL import Image

from bench.perimeter_fit_direct import perimeter_fit_direct
from wsss.algorithms.perimeter_fit import perimeter_map
from wsss.algorithms.uss import segment_image
from wsss.data.voc import read_image_ids
from wsss.stages import perimeter_fit as stages
from wsss.stages.report import perimeter_fit_overlap
from wsss.utils.errors import StageError
from wsss.utils.files import (
    find_picture,
    load_maps,
    load_perimeter_fit_masks,
    load_perimeter_map,
    load_segmentation_map,
    save_perimeter_fit_masks,
    save_perimeter_map,
    save_segmentation_map,
)

ITERATIONS = 2  # USS training steps: enough to exercise the stage, fast on CPU


def namespace(defaults, options):
    return types.SimpleNamespace(**{"dataset": "voc12", **defaults, **options})


def uss_args(data_dir, out_dir, segment, **options):
    return namespace({"segment": segment, "data_dir": str(data_dir), "image_dir": None, "uss_dir": str(out_dir),
                      "domain": "train_aug", "rgb": False, "lossless": False, "max_iterations": ITERATIONS,
                      "num_workers": 0, "device": "cpu", "shard": None}, options)


def edge_args(uss_dir, pm_dir, segment, **options):
    return namespace({"segment": segment, "uss_dir": str(uss_dir), "pm_dir": str(pm_dir), "data_dir": ".",
                      "domain": None, "lossless": False, "num_workers": 0, "shard": None}, options)


def fit_args(cam_dir, uss_dir, pm_dir, out_dir, segment, **options):
    return namespace({"segment": segment, "cam_path": str(cam_dir), "uss_dir": str(uss_dir), "pm_dir": str(pm_dir),
                      "perimeterfit_dir": str(out_dir), "data_dir": ".", "domain": None, "allow_pickle": False,
                      "num_workers": 0, "shard": None}, options)


def combine_args(data_dir, cam_dir, slic_dir, quick_dir, out_dir, **options):
    return namespace({"cam_dir": str(cam_dir), "slic_dir": str(slic_dir), "quick_dir": str(quick_dir),
                      "data_dir": str(data_dir), "domain": "train_aug", "output_dir": str(out_dir), "rebinarise": False,
                      "allow_pickle": False, "num_workers": 0, "shard": None}, options)


@pytest.fixture(scope="module")
def chain(toy_voc, tmp_path_factory):
    """The toy dataset, fabricated CAMs of its train_aug images, and the four stages run on them
    (torch on one thread for the module: on a busy 2-core machine two threads are much slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("silop")
    workspace.build(toy_voc, root)
    folders = types.SimpleNamespace(data=pathlib.Path(toy_voc), root=root,
                                    cams=root / "experiments" / "predictions" / workspace.CAMS,
                                    ids=read_image_ids("train_aug", toy_voc))
    for segment in ("slic", "quick"):
        uss, pm, fit = (root / f"{kind}_{segment}" for kind in ("USS", "PM", "PerimeterFit"))
        stages.segment_images(uss_args(toy_voc, uss, segment))
        stages.detect_edges(edge_args(uss, pm, segment))
        stages.fit_perimeters(fit_args(folders.cams, uss, pm, fit, segment))
        setattr(folders, segment, types.SimpleNamespace(uss=uss, pm=pm, fit=fit))
    folders.combined = root / "Combined_CAM"
    stages.combine(combine_args(toy_voc, folders.cams, folders.slic.fit, folders.quick.fit, folders.combined))
    yield folders
    torch.set_num_threads(threads)


def file_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(pathlib.Path(folder).iterdir())}


@pytest.mark.parametrize("segment", ["slic", "quick"])
def test_uss_maps_are_the_published_bgr_segmentation_as_opencv_jpeg(chain, segment):
    assert sorted(path.stem for path in chain.__dict__[segment].uss.iterdir()) == sorted(chain.ids)
    for image_id in chain.ids[:3]:
        bgr = cv2.imread(str(chain.data / "JPEGImages" / f"{image_id}.jpg"))
        painted = segment_image(bgr, segment, max_iterations=ITERATIONS).painted
        expected = cv2.imencode(".jpg", painted)[1].tobytes()
        assert (chain.__dict__[segment].uss / f"{image_id}.jpg").read_bytes() == expected


def test_uss_rgb_and_lossless_options(chain, tmp_path):
    out = tmp_path / "uss"
    stages.segment_images(uss_args(chain.data, out, "slic", rgb=True, lossless=True, domain="train"))
    differs = []
    for image_id in read_image_ids("train", chain.data):
        rgb = np.array(Image.open(chain.data / "JPEGImages" / f"{image_id}.jpg").convert("RGB"))
        painted = segment_image(rgb, "slic", max_iterations=ITERATIONS).painted
        np.testing.assert_array_equal(load_segmentation_map(out / f"{image_id}.png"), painted)  # lossless
        published = load_segmentation_map(chain.slic.uss / f"{image_id}.jpg")
        differs.append(not np.array_equal(published, painted))
    assert any(differs)  # the channel order and the JPEG change the maps


def test_uss_needs_a_list_where_the_images_are_kept_per_split(tmp_path):
    """COCO keeps train2014/ and val2014/: without --domain or --image_dir there is no folder to scan."""
    out = tmp_path / "uss"
    with pytest.raises(StageError, match=r"--dataset coco14: .*pass --domain \(train, .*\) or --image_dir"):
        stages.segment_images(uss_args(tmp_path, out, "slic", dataset="coco14", domain=None))
    assert not out.exists()


@pytest.mark.parametrize("segment", ["slic", "quick"])
def test_perimeter_maps_are_canny_of_the_decoded_jpeg(chain, segment):
    folders = chain.__dict__[segment]
    for image_id in chain.ids:
        decoded = cv2.imread(str(folders.uss / f"{image_id}.jpg"))
        expected = cv2.imencode(".jpg", perimeter_map(decoded))[1].tobytes()
        assert (folders.pm / f"{image_id}.jpg").read_bytes() == expected


@pytest.mark.parametrize("segment", ["slic", "quick"])
def test_perimeter_fit_equals_the_published_pil_loop(chain, segment):
    folders = chain.__dict__[segment]
    for image_id in chain.ids[:3]:
        picture = np.array(Image.open(folders.uss / f"{image_id}.jpg"))  # read as published: PIL, RGB
        perimeter = np.array(Image.open(folders.pm / f"{image_id}.jpg"))
        hr_cam = load_maps(chain.cams / f"{image_id}.npz")["hr_cam"]
        expected = perimeter_fit_direct(picture, perimeter, hr_cam, segment)
        masks = np.load(folders.fit / f"{image_id}.npy", allow_pickle=False)
        assert masks.dtype == np.uint8 and masks.shape == (len(hr_cam) + 1,) + hr_cam.shape[1:]
        np.testing.assert_array_equal(masks, expected)


def published_combination(hr_cam, cam, slic, quick):
    """Combine_PerimeterFit.py's arithmetic: float64 masks set to 1 where > 0, resized for the stride-4
    CAMs with F.interpolate (bilinear, align_corners=False), then per class cam · slic · quick + cam
    in torch, written back into the float32 arrays."""
    slic, quick = (torch.from_numpy((mask > 0).astype(np.float64)) for mask in (slic, quick))
    small_slic, small_quick = (F.interpolate(mask.unsqueeze(0), cam.shape[1:], mode="bilinear",
                                             align_corners=False)[0] for mask in (slic, quick))
    strided, high = torch.from_numpy(cam.copy()), torch.from_numpy(hr_cam.copy())
    for c in range(len(strided)):
        strided[c] = strided[c] * small_slic[c + 1] * small_quick[c + 1] + strided[c]
        high[c] = high[c] * slic[c + 1] * quick[c + 1] + high[c]
    return high.numpy(), strided.numpy()


def test_combined_cams_match_the_published_arithmetic(chain, tmp_path):
    fractional = 0
    for image_id in chain.ids:
        original = load_maps(chain.cams / f"{image_id}.npz")
        combined = load_maps(chain.combined / f"{image_id}.npz")
        slic, quick = (load_perimeter_fit_masks(folder / f"{image_id}.npy") for folder in (chain.slic.fit,
                                                                                          chain.quick.fit))
        hr_cam, cam = published_combination(original["hr_cam"], original["cam"], slic, quick)
        np.testing.assert_array_equal(combined["keys"], original["keys"])
        np.testing.assert_array_equal(combined["hr_cam"], hr_cam)
        np.testing.assert_array_equal(combined["cam"], cam)
        ratio = combined["cam"] / np.maximum(original["cam"], 1e-6)
        fractional += int(((ratio > 1.001) & (ratio < 1.999) & (original["cam"] > 1e-3)).sum())
    assert fractional > 0  # the non-re-binarised multipliers take values between 1 and 2
    rebinarised = tmp_path / "rebinarised"
    stages.combine(combine_args(chain.data, chain.cams, chain.slic.fit, chain.quick.fit, rebinarised, rebinarise=True))
    for image_id in chain.ids:
        published, fixed = load_maps(chain.combined / f"{image_id}.npz"), load_maps(rebinarised / f"{image_id}.npz")
        np.testing.assert_array_equal(fixed["hr_cam"], published["hr_cam"])
        multipliers = fixed["cam"] / np.maximum(load_maps(chain.cams / f"{image_id}.npz")["cam"], 1e-6)
        assert np.all(np.isclose(multipliers, 1, atol=1e-3) | np.isclose(multipliers, 2, atol=1e-3)
                      | (load_maps(chain.cams / f"{image_id}.npz")["cam"] <= 1e-3))


def test_shards_and_workers_write_the_single_run_files(chain, tmp_path):
    for shard in ((0, 2), (1, 2)):
        stages.detect_edges(edge_args(chain.quick.uss, tmp_path / "sharded", "quick", shard=shard))
    stages.detect_edges(edge_args(chain.quick.uss, tmp_path / "workers", "quick", num_workers=2))
    assert file_bytes(tmp_path / "sharded") == file_bytes(chain.quick.pm)
    assert file_bytes(tmp_path / "workers") == file_bytes(chain.quick.pm)
    stages.fit_perimeters(fit_args(chain.cams, chain.slic.uss, chain.slic.pm, tmp_path / "fit", "slic", num_workers=2,
                                   domain="train_aug", data_dir=str(chain.data)))
    assert file_bytes(tmp_path / "fit") == file_bytes(chain.slic.fit)


def test_finished_files_are_skipped_and_missing_ones_redone(chain, tmp_path):
    out = tmp_path / "combined"
    shutil.copytree(chain.combined, out)
    kept, removed = out / f"{chain.ids[0]}.npz", out / f"{chain.ids[1]}.npz"
    kept.write_bytes(b"left alone")
    removed.unlink()
    stages.combine(combine_args(chain.data, chain.cams, chain.slic.fit, chain.quick.fit, out))
    assert kept.read_bytes() == b"left alone"
    assert removed.read_bytes() == (chain.combined / removed.name).read_bytes()


def test_published_pickled_cams_only_with_allow_pickle(chain, tmp_path):
    """The published CAM files: pickled dicts with `cam` as a torch tensor."""
    cams = tmp_path / "published_cams"
    cams.mkdir()
    for image_id in chain.ids:
        maps = load_maps(chain.cams / f"{image_id}.npz")
        np.save(cams / f"{image_id}.npy", {"keys": maps["keys"], "cam": torch.from_numpy(maps["cam"]),
                                           "hr_cam": maps["hr_cam"]}, allow_pickle=True)
    args = fit_args(cams, chain.quick.uss, chain.quick.pm, tmp_path / "fit", "quick")
    with pytest.raises(StageError, match="--allow_pickle True"):
        stages.fit_perimeters(args)
    assert not (tmp_path / "fit").exists()
    args.allow_pickle = True
    stages.fit_perimeters(args)
    assert file_bytes(tmp_path / "fit") == file_bytes(chain.quick.fit)
    stages.combine(combine_args(chain.data, cams, chain.slic.fit, chain.quick.fit, tmp_path / "combined",
                                allow_pickle=True))
    assert file_bytes(tmp_path / "combined") == file_bytes(chain.combined)


def test_listing_a_folder_skips_temporaries_and_other_files(tmp_path):
    for name in ("b.jpg", "a.png", ".a.tmp.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    unlisted = types.SimpleNamespace(domain=None, data_dir=".", dataset="voc12")
    assert stages.listed_or_found(unlisted, tmp_path, (".jpg", ".png"), "map", "--x") == ["a", "b"]
    with pytest.raises(StageError, match="no map files"):
        stages.listed_or_found(unlisted, tmp_path, (".npz",), "map", "--x")
    with pytest.raises(StageError, match="folder not found; pass --x"):
        stages.listed_or_found(unlisted, tmp_path / "absent", (".jpg",), "map", "--x")


def test_picture_formats_round_trip_and_refuse_bad_files(tmp_path):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, size=(12, 16, 3)).astype(np.uint8)
    save_segmentation_map(tmp_path / "a.png", picture)
    np.testing.assert_array_equal(load_segmentation_map(tmp_path / "a.png"), picture)
    save_segmentation_map(tmp_path / "b.jpg", picture)
    np.testing.assert_array_equal(load_segmentation_map(tmp_path / "b.jpg"), cv2.imread(str(tmp_path / "b.jpg")))
    edges = (rng.random((12, 16)) > 0.7).astype(np.uint8) * 255
    save_perimeter_map(tmp_path / "e.png", edges)
    np.testing.assert_array_equal(load_perimeter_map(tmp_path / "e.png"), edges)
    with pytest.raises(StageError, match="grey picture"):
        load_perimeter_map(tmp_path / "a.png")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "b.jpg").read_bytes()[:200])
    with pytest.raises(StageError, match="cut.jpg: unreadable picture"):
        load_segmentation_map(tmp_path / "cut.jpg")
    shutil.copy(tmp_path / "b.jpg", tmp_path / "a.jpg")
    with pytest.raises(StageError, match="a.png exists beside it"):
        find_picture(tmp_path, "a")
    assert find_picture(tmp_path, "b") == tmp_path / "b.jpg" and find_picture(tmp_path, "c") is None


def test_perimeter_fit_masks_format(tmp_path):
    masks = np.zeros((2, 3, 4))
    masks[1, 1:, 2:] = 255.0
    save_perimeter_fit_masks(tmp_path / "a.npy", masks)
    loaded = load_perimeter_fit_masks(tmp_path / "a.npy")
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, masks)
    np.save(tmp_path / "published.npy", masks)  # the published float64 file
    np.testing.assert_array_equal(load_perimeter_fit_masks(tmp_path / "published.npy"), masks)
    np.save(tmp_path / "other.npy", masks / 255)
    with pytest.raises(StageError, match="not PerimeterFit masks"):
        load_perimeter_fit_masks(tmp_path / "other.npy")
    np.save(tmp_path / "pickled.npy", {"masks": masks}, allow_pickle=True)
    with pytest.raises(StageError, match="unreadable PerimeterFit masks"):
        load_perimeter_fit_masks(tmp_path / "pickled.npy")
    with pytest.raises(ValueError, match="0 and 255"):
        save_perimeter_fit_masks(tmp_path / "b.npy", masks / 255)


def test_report_overlap_of_the_two_masks():
    slic = np.zeros((3, 2, 3))
    quick = np.zeros((3, 2, 3))
    slic[0] = quick[0] = 255  # the background channel is not shown
    slic[1, 0, :2] = 255
    quick[1, 0, 1:] = 255
    slic[2, 1, 2] = quick[2, 1, 2] = 255
    np.testing.assert_array_equal(perimeter_fit_overlap(slic, quick), [[0, 1, 0], [0, 0, 1]])
    assert perimeter_fit_overlap(slic[:1], quick[:1]).shape == (2, 3)

