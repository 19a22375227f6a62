"""SILOP's stages between CAM inference and the affinity labels (USS.py, Edge_detection.py,
PerimeterFit.py, Combine_PerimeterFit.py), one file per image each:

  image → unsupervised segmentation picture (USS) → its perimeter map (PM)
  CAMs + USS + PM → PerimeterFit masks, once with slic and once with quickshift superpixels
  CAMs + both masks → combined CAMs (this pipeline's CAM files, the "cam" map kind)

The published scripts hard-code their folders; the folder flags default to them. Without --domain
a stage takes every file of its input folder, as published; with it, the ids of that list.
"""
import functools
import os
import pathlib

import numpy as np
import torch

from wsss.algorithms.cam import strided_size
from wsss.algorithms.perimeter_fit import combine_perimeter_fit, perimeter_fit, perimeter_map
from wsss.algorithms.uss import segment_image
from wsss.data.dataset_registry import get_dataset
from wsss.data.voc import load_image, require_files
from wsss.utils import distributed
from wsss.utils.errors import StageError
from wsss.utils.files import (
    MAP_SUFFIXES,
    PICTURE_SUFFIXES,
    check_map_files,
    find_maps,
    find_picture,
    load_maps,
    load_perimeter_fit_masks,
    load_perimeter_map,
    load_segmentation_map,
    save_cams,
    save_perimeter_fit_masks,
    save_perimeter_map,
    save_segmentation_map,
)
from wsss.utils.per_image import plan_outputs, run_per_image

PUBLISHED_DATA_DIR = "./Dataset/VOC2012/"
PUBLISHED_CAM_DIR = "./experiments/predictions/ResNeSt101@Puzzle@optimal@train@scale=0.5,1.0,1.5,2.0/"
PUBLISHED_COMBINED_DIR = "./experiments/predictions/Combined_CAM/"
PRODUCERS = {"USS": "USS.py", "PM": "Edge_detection.py", "PerimeterFit": "PerimeterFit.py"}


def published_folder(kind, segment):
    """The published scripts' folder of `kind` (USS, PM or PerimeterFit): `./Dataset/{kind}_{segment}/`."""
    return f"./Dataset/{kind}_{segment}/"


def folder_or_published(folder, kind, segment):
    return pathlib.Path(folder or published_folder(kind, segment))


def picture_suffix(lossless):
    return ".png" if lossless else ".jpg"


def listed_or_found(args, folder, suffixes, noun, flag):
    """The ids of the --domain list of --dataset, or without a domain (as published) those of every
    file in `folder` with one of `suffixes`, in name order."""
    if args.domain is not None:
        return get_dataset(args.dataset).image_ids(args.domain, args.data_dir)
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise StageError(f"{folder}: {noun} folder not found; pass {flag} or --domain with --data_dir")
    ids = sorted({path.stem for path in folder.iterdir() if path.suffix in suffixes and not path.name.startswith(".")})
    if not ids:
        raise StageError(f"{folder}: no {noun} files ({', '.join(suffixes)}) in it; check {flag}")
    return ids


def require_pictures(folder, ids, kind):
    """Every id has its segmentation or perimeter map (`kind` USS or PM) in `folder`, .jpg or .png."""
    missing = [image_id for image_id in ids if find_picture(folder, image_id) is None]
    if missing:
        noun = "segmentation map" if kind == "USS" else "perimeter map"
        raise StageError(f"{pathlib.Path(folder) / missing[0]}.jpg: {noun} not found ({len(missing)} of {len(ids)} "
                         f"images have none); run {PRODUCERS[kind]} on these images first or check the folder")


def refuse_pickled(folder, ids, allow_pickle):
    """Before any work: a published pickled `.npy` CAM file is read only with --allow_pickle True."""
    if allow_pickle:
        return
    for image_id in ids:
        path = find_maps(folder, image_id)
        if path.suffix == ".npy":
            raise StageError(f"{path}: published pickled .npy CAM file; unpickling can run code, pass "
                             "--allow_pickle True only if you trust this file")


def cam_array(maps, name, path):
    """The K×… array `name` of a CAM file, K being the classes in its keys."""
    if name not in maps:
        raise StageError(f"{path}: no '{name}' array (has {sorted(maps)}); is this a CAM folder?")
    array = np.asarray(maps[name])
    if array.ndim != 3 or array.shape[0] != len(maps["keys"]) - 1:
        raise StageError(f"{path}: '{name}' has shape {array.shape}, not one map per class of its keys "
                         f"{maps['keys'].tolist()}; delete the file and rerun the stage that wrote it")
    return array


def threads_per_worker(num_workers):
    """Torch threads of each USS worker process: the cores shared out (none to set inline)."""
    return max(1, (os.cpu_count() or 1) // num_workers) if num_workers > 1 else None


# USS.py

def jpeg_in_folder(folder, image_id):
    return folder / f"{image_id}.jpg"


def segment_one(image_id, image_path, out_dir, suffix, segment, rgb, max_iterations, device, threads):
    if threads is not None:
        torch.set_num_threads(threads)
    image = np.asarray(load_image(image_path(image_id)))
    if not rgb:
        image = image[..., ::-1]  # OpenCV's BGR array, fed to scikit-image and the network as if it were RGB
    result = segment_image(np.ascontiguousarray(image), segment, max_iterations=max_iterations, device=device)
    save_segmentation_map(out_dir / f"{image_id}{suffix}", result.painted)


def published_image_folder(args):
    """--image_dir, or the dataset's single image folder (VOC's JPEGImages/). A dataset whose images
    are kept per split (COCO's train2014/, val2014/) has none: it needs --domain or --image_dir."""
    if args.image_dir:
        return pathlib.Path(args.image_dir)
    entry = get_dataset(args.dataset)
    if entry.image_folder is not None:
        return pathlib.Path(args.data_dir) / entry.image_folder
    if args.domain is None:
        raise StageError(f"--dataset {args.dataset}: its images are kept per split, so there is no one folder to "
                         f"take every image from; pass --domain ({', '.join(entry.domains)}) or --image_dir")
    return None


def segment_images(args):
    """USS.py: the painted unsupervised segmentation of every image. Returns the output folder."""
    if args.max_iterations < 1:
        raise StageError(f"--max_iterations {args.max_iterations}: must be at least 1")
    image_dir = published_image_folder(args)
    out_dir = folder_or_published(args.uss_dir, "USS", args.segment)
    suffix = picture_suffix(args.lossless)
    ids = listed_or_found(args, image_dir, (".jpg",), "image", "--image_dir or --data_dir")
    ids = plan_outputs(out_dir, ids, args.shard, (suffix,), "make it writable or pass another --uss_dir")
    # {image_dir}/{id}.jpg, or where --dataset keeps the image (VOC's JPEGImages/, COCO's train2014/…)
    image_path = (functools.partial(jpeg_in_folder, image_dir) if args.image_dir
                  else get_dataset(args.dataset).open(args.data_dir).image_path)
    require_files((image_path(image_id) for image_id in ids), "image", "check --image_dir/--data_dir and --domain")
    device = distributed.process_device(args.device)
    # forked workers cannot use CUDA once this process has asked for it: on a GPU the images run here,
    # and several processes share a GPU through torchrun with an explicit --device cuda:0
    workers = args.num_workers if device.type == "cpu" else 0
    work = functools.partial(segment_one, image_path=image_path, out_dir=out_dir, suffix=suffix, segment=args.segment,
                             rgb=args.rgb, max_iterations=args.max_iterations, device=str(device),
                             threads=threads_per_worker(workers))
    run_per_image(work, ids, out_dir, workers)
    return out_dir


# Edge_detection.py

def edges_one(image_id, uss_dir, out_dir, suffix):
    picture = load_segmentation_map(find_picture(uss_dir, image_id))
    save_perimeter_map(out_dir / f"{image_id}{suffix}", perimeter_map(picture))


def detect_edges(args):
    """Edge_detection.py: the perimeter map of every segmentation map. Returns the output folder."""
    uss_dir = folder_or_published(args.uss_dir, "USS", args.segment)
    out_dir = folder_or_published(args.pm_dir, "PM", args.segment)
    suffix = picture_suffix(args.lossless)
    ids = listed_or_found(args, uss_dir, PICTURE_SUFFIXES, "segmentation map", "--uss_dir")
    ids = plan_outputs(out_dir, ids, args.shard, (suffix,), "make it writable or pass another --pm_dir")
    require_pictures(uss_dir, ids, "USS")
    work = functools.partial(edges_one, uss_dir=uss_dir, out_dir=out_dir, suffix=suffix)
    run_per_image(work, ids, out_dir, args.num_workers)
    return out_dir


# PerimeterFit.py

def fit_one(image_id, cam_dir, uss_dir, pm_dir, out_dir, segment, num_classes, allow_pickle):
    cam_path = find_maps(cam_dir, image_id)
    hr_cam = cam_array(load_maps(cam_path, num_classes, allow_pickle), "hr_cam", cam_path)
    uss_path, pm_path = find_picture(uss_dir, image_id), find_picture(pm_dir, image_id)
    picture, perimeter = load_segmentation_map(uss_path), load_perimeter_map(pm_path)
    if perimeter.shape != picture.shape[:2]:
        raise StageError(f"{pm_path}: perimeter map of {perimeter.shape[0]}×{perimeter.shape[1]} px but its "
                         f"segmentation map {uss_path} is {picture.shape[0]}×{picture.shape[1]}; rerun "
                         "Edge_detection.py on these maps")
    if hr_cam.shape[1:] != picture.shape[:2]:
        raise StageError(f"{cam_path}: CAMs of {hr_cam.shape[1]}×{hr_cam.shape[2]} px but the segmentation map "
                         f"{uss_path} is {picture.shape[0]}×{picture.shape[1]}; are both of the same image?")
    if not picture.any():
        raise StageError(f"{uss_path}: the segmentation map is entirely black; delete it and rerun USS.py")
    save_perimeter_fit_masks(out_dir / f"{image_id}.npy", perimeter_fit(picture, perimeter, hr_cam, segment))


def fit_perimeters(args):
    """PerimeterFit.py: the (K+1)×H×W PerimeterFit masks of every CAM file. Returns the output folder."""
    cam_dir = pathlib.Path(args.cam_path)
    uss_dir = folder_or_published(args.uss_dir, "USS", args.segment)
    pm_dir = folder_or_published(args.pm_dir, "PM", args.segment)
    out_dir = folder_or_published(args.perimeterfit_dir, "PerimeterFit", args.segment)
    ids = listed_or_found(args, cam_dir, MAP_SUFFIXES, "CAM", "--cam_path")
    ids = plan_outputs(out_dir, ids, args.shard, (".npy",), "make it writable or pass another --perimeterfit_dir")
    check_map_files(cam_dir, ids, "CAM", "inference_classification.py")
    refuse_pickled(cam_dir, ids, args.allow_pickle)
    require_pictures(uss_dir, ids, "USS")
    require_pictures(pm_dir, ids, "PM")
    # compile (or load from numba's cache) the fills once here, so that forked workers inherit them
    perimeter_fit(np.full((2, 2, 3), 9, dtype=np.uint8), np.zeros((2, 2), dtype=np.uint8), np.zeros((0, 2, 2)), "quick")
    work = functools.partial(fit_one, cam_dir=cam_dir, uss_dir=uss_dir, pm_dir=pm_dir, out_dir=out_dir,
                             segment=args.segment, num_classes=get_dataset(args.dataset).num_classes,
                             allow_pickle=args.allow_pickle)
    run_per_image(work, ids, out_dir, args.num_workers)
    return out_dir


# Combine_PerimeterFit.py

def combine_one(image_id, data, num_classes, cam_dir, slic_dir, quick_dir, out_dir, rebinarise, allow_pickle):
    width, height = data.image(image_id).size
    cam_path = find_maps(cam_dir, image_id)
    maps = load_maps(cam_path, num_classes, allow_pickle)
    hr_cam, cam = cam_array(maps, "hr_cam", cam_path), cam_array(maps, "cam", cam_path)
    if hr_cam.shape[1:] != (height, width):
        raise StageError(f"{cam_path}: CAMs of {hr_cam.shape[1]}×{hr_cam.shape[2]} px but the image "
                         f"{data.image_path(image_id)} is {height}×{width}; are both of the same image?")
    if cam.shape[1:] != strided_size(height, width):
        raise StageError(f"{cam_path}: stride-4 'cam' of {cam.shape[1]}×{cam.shape[2]}, expected "
                         f"{strided_size(height, width)} for a {height}×{width} image; delete the file and rerun "
                         "the stage that wrote it")
    masks = []
    for folder in (slic_dir, quick_dir):
        path = folder / f"{image_id}.npy"
        mask = load_perimeter_fit_masks(path)
        if mask.shape != (len(hr_cam) + 1, height, width):
            raise StageError(f"{path}: PerimeterFit masks of shape {mask.shape}, the CAMs {cam_path} need "
                             f"{(len(hr_cam) + 1, height, width)}; rerun PerimeterFit.py on these CAMs")
        masks.append(mask)
    combined_hr, combined_cam = combine_perimeter_fit(hr_cam, cam, *masks, rebinarise=rebinarise)
    save_cams(out_dir / f"{image_id}.npz", maps["keys"], combined_cam, combined_hr)


def combine(args):
    """Combine_PerimeterFit.py: every listed image's CAMs multiplied by its slic and quick masks.
    Returns the output folder."""
    benchmark = get_dataset(args.dataset)
    data = benchmark.open(args.data_dir)
    cam_dir, out_dir = pathlib.Path(args.cam_dir), pathlib.Path(args.output_dir)
    slic_dir = folder_or_published(args.slic_dir, "PerimeterFit", "slic")
    quick_dir = folder_or_published(args.quick_dir, "PerimeterFit", "quick")
    ids = plan_outputs(out_dir, benchmark.image_ids(args.domain, args.data_dir), args.shard, MAP_SUFFIXES,
                       "make it writable or pass another --output_dir")
    data.check_images(ids, args.domain)
    check_map_files(cam_dir, ids, "CAM", "inference_classification.py")
    refuse_pickled(cam_dir, ids, args.allow_pickle)
    for segment, folder in (("slic", slic_dir), ("quick", quick_dir)):
        require_files((folder / f"{image_id}.npy" for image_id in ids), "PerimeterFit masks",
                      f"run PerimeterFit.py --segment {segment} on these CAMs first or check --{segment}_dir")
    work = functools.partial(combine_one, data=data, num_classes=benchmark.num_classes, cam_dir=cam_dir, slic_dir=slic_dir, quick_dir=quick_dir,
                             out_dir=out_dir, rebinarise=args.rebinarise, allow_pickle=args.allow_pickle)
    run_per_image(work, ids, out_dir, args.num_workers)
    return out_dir
