"""Every inter-stage file format has its one writer and one reader here; all writes are atomic.

Formats:
- CAMs (inference_classification): `{id}.npz` with `keys` (int64, [0, c1+1, c2+1, ...]),
  `cam` (float32, (K-1)×h/4×w/4) and `hr_cam` (float32, (K-1)×h×w), foreground classes only.
- Random-walk maps (inference_rw): `{id}.npz` with `keys` and `rw` (float32, (K-1)×h×w).
- Label maps (affinity labels, pseudo labels, predictions): `{id}.png`, 8-bit grayscale class ids;
  VOC colour (palette) PNGs for the test split.
- SILOP's segmentation maps (USS.py) and perimeter maps (Edge_detection.py): `{id}.jpg` as
  published (lossy) or `{id}.png` (lossless); colour pictures in OpenCV's channel order, grey ones.
- SILOP's PerimeterFit masks (PerimeterFit.py): `{id}.npy`, a plain uint8 (K+1)×H×W array of 0/255.
The published code wrote `{id}.npy` pickled dicts; `load_maps(..., allow_pickle=True)` reads them.
"""
import contextlib
import json
import os
import pathlib
import tempfile

import cv2
import numpy as np
import torch
from PIL import Image

from wsss.utils.errors import StageError

try:
    import fcntl
except ImportError:  # not POSIX: unique temporaries, which a killed writer leaves behind
    fcntl = None

MAP_SUFFIXES = (".npz", ".npy")
PICTURE_SUFFIXES = (".jpg", ".png")  # SILOP's segmentation and perimeter maps: published, lossless


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffix); rename it over `path` on success.

    The temporary is `.{stem}.tmp{suffix}`, held under an exclusive lock while it is written: a
    writer killed mid-write leaves it unlocked, and the next write of the same file reuses it, so a
    rerun after an interruption leaves no stray file. A second live writer of the same file (locked
    temporary) gets a unique temporary name instead.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _locked_temporary(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    finally:
        os.close(handle)  # releases the lock


def _locked_temporary(path):
    """(open handle holding the lock, temporary path) for writing `path`."""
    temporary = str(path.parent / f".{path.stem}.tmp{path.suffix}")
    if fcntl is not None:
        handle = os.open(temporary, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # still the file under that name (not renamed over `path` by a writer that just finished)?
            if os.path.samestat(os.fstat(handle), os.stat(temporary)):
                os.ftruncate(handle, 0)
                return handle, temporary
        except OSError:  # locked by a live writer, or renamed away meanwhile
            pass
        os.close(handle)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    return handle, temporary


def check_writable(folder, advice="make it writable or choose another output location"):
    """Stop before any work when files cannot be written into `folder` (created later, when needed):
    its nearest existing ancestor must be a folder in which a file can be created."""
    folder = pathlib.Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise StageError(f"{folder}: output folder not writable ({existing} is not a folder); {advice}")
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-check.", dir=existing)
    except OSError as error:
        raise StageError(f"{folder}: output folder not writable ({error.strerror} in {existing}); {advice}")
    os.close(handle)
    os.unlink(probe)


def write_text(path, text):
    with atomic_path(path) as temporary:
        pathlib.Path(temporary).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path):
    path = pathlib.Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise StageError(f"{path}: file not found")
    except json.JSONDecodeError as error:
        raise StageError(f"{path}: not valid JSON ({error})")


def save_cams(path, keys, cam, hr_cam):
    _save_npz(path, keys=np.asarray(keys, dtype=np.int64), cam=np.asarray(cam, dtype=np.float32),
              hr_cam=np.asarray(hr_cam, dtype=np.float32))


def save_rw(path, keys, rw):
    _save_npz(path, keys=np.asarray(keys, dtype=np.int64), rw=np.asarray(rw, dtype=np.float32))


def _save_npz(path, **arrays):
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.savez(stream, **arrays)


def find_maps(folder, image_id):
    """The `.npz` (ours) or `.npy` (published) map file of an image, or None."""
    for suffix in MAP_SUFFIXES:
        path = pathlib.Path(folder) / f"{image_id}{suffix}"
        if path.exists():
            return path
    return None


def check_map_files(folder, ids, kind, producer):
    """Every id has a map file in `folder`, else one error naming the first missing one and the count."""
    folder = pathlib.Path(folder)
    missing = [image_id for image_id in ids if find_maps(folder, image_id) is None]
    if missing:
        raise StageError(f"{folder / missing[0]}.npz: {kind} file missing ({len(missing)} of {len(ids)} listed "
                         f"images have none); run {producer} on this --domain first or check the folder name")


def load_maps(path, num_classes=None, allow_pickle=False):
    """Read a CAM or random-walk file into a dict of numpy arrays (`keys` plus map arrays); with
    `num_classes` (the dataset's foreground classes), class ids above it are refused.

    `.npy` files are the published pickled dicts: unpickling can run arbitrary code, so they are
    read only with `allow_pickle=True` (the scripts' `--allow_pickle` flag).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise StageError(f"{path}: file not found; run the stage that writes it first")
    try:
        if path.suffix == ".npy":
            if not allow_pickle:
                raise StageError(f"{path}: published pickled .npy format; unpickling can run code, "
                                 "pass --allow_pickle True only if you trust this file")
            data = np.load(path, allow_pickle=True).item()
            maps = {name: _to_numpy(value) for name, value in data.items()}
        else:
            with np.load(path, allow_pickle=False) as data:
                maps = {name: data[name] for name in data.files}
    except StageError:
        raise
    except Exception as error:
        raise StageError(f"{path}: unreadable map file ({type(error).__name__}: {error}); "
                         "delete it and rerun the stage that writes it")
    if "keys" not in maps:
        raise StageError(f"{path}: no 'keys' array; not a CAM/RW file of this pipeline")
    keys = np.asarray(maps["keys"])
    if (keys.ndim != 1 or keys.size == 0 or not np.issubdtype(keys.dtype, np.integer) or keys[0] != 0
            or np.any(np.diff(keys) <= 0) or (num_classes is not None and keys[-1] > num_classes)):
        raise StageError(f"{path}: 'keys' {keys.tolist()} is not [0, c1+1, c2+1, ...] with increasing class ids "
                         f"1-{num_classes or 'K'}; delete the file and rerun the stage that wrote it")
    maps["keys"] = keys.astype(np.int64)
    return maps


def _to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def save_label_png(path, label):
    """Class ids as an 8-bit grayscale PNG."""
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="L")
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


def save_colour_png(path, label, palette):
    """Class ids as a palette PNG (VOC colours), the format of VOC's ground truth and test server."""
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    image.putpalette(palette)
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG")


def load_label_png(path):
    """Class ids from a grayscale or palette PNG (palette indices are the class ids)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise StageError(f"{path}: label PNG not found")
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P"):
                raise StageError(f"{path}: expected a grayscale or palette PNG of class ids, got mode {image.mode}")
            return np.array(image, dtype=np.uint8)
    except StageError:
        raise
    except Exception as error:
        raise StageError(f"{path}: unreadable PNG ({error}); replace the file")


def save_checkpoint(state_dict, path):
    """torch.save through a stream: saved to a path, the archive would name its records after the
    temporary file, so two saves of the same weights would differ byte for byte."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            torch.save(state_dict, stream)


def load_failure(error):
    """Why torch.load(..., weights_only=True) refused a file, in a few words: torch's own message
    spans a dozen lines and suggests weights_only=False, which would run whatever the file holds."""
    text = str(error)
    marker = "WeightsUnpickler error:"
    if marker in text:
        detail = next((line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()), "")
        return (f"not a plain file of tensors, refused without unpickling it: {detail.split('. ')[0].rstrip('.')}; "
                "it is damaged or holds objects whose unpickling could run code")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def load_checkpoint(path):
    """A state dict from `path`, without unpickling arbitrary objects (weights_only)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise StageError(f"{path}: checkpoint not found; train the model first or check --tag")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise StageError(f"{path}: cannot load checkpoint ({load_failure(error)})")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise StageError(f"{path}: not a state dict")
    return state


TRAINING_STATE_FORMAT = "puzzlecam-training-state-1"


def save_training_state(state, path):
    """The resumable state of a training run (`{tag}.state.pth`; `{tag}.pth` stays the weights):
    a dict of tensors, numbers, strings, lists and dicts only, so that it loads with
    weights_only=True (see wsss.utils.training.training_state for its entries)."""
    save_checkpoint({"format": TRAINING_STATE_FORMAT, **state}, path)


def load_training_state(path):
    """The dict written by save_training_state, loaded without unpickling objects (weights_only)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise StageError(f"{path}: no training state to resume from (written after each epoch of a run "
                         "with the same --tag); drop --resume to start afresh")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise StageError(f"{path}: cannot load the training state ({load_failure(error)})")
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise StageError(f"{path}: not a training state of this code ({TRAINING_STATE_FORMAT})")
    return state


def load_weights(model, path):
    """Strictly load a checkpoint into `model`, naming missing and unexpected keys when they differ."""
    state = load_checkpoint(path)
    state = {key[len("module."):] if key.startswith("module.") else key: value for key, value in state.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise StageError(f"{path}: checkpoint does not match the model (missing {len(missing)} keys, "
                         f"e.g. {missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]}); "
                         "check --architecture/--backbone/--mode/--use_gn")
    mismatched = [key for key in expected if tuple(expected[key].shape) != tuple(state[key].shape)]
    if mismatched:
        raise StageError(f"{path}: tensor shapes differ from the model for {len(mismatched)} keys, "
                         f"e.g. {mismatched[0]} {tuple(state[mismatched[0]].shape)} vs "
                         f"{tuple(expected[mismatched[0]].shape)}; check --architecture")
    model.load_state_dict(state, strict=True)
    return model


def load_map_array(folder, image_id, key, size, num_classes, allow_pickle=False):
    """keys and the (K−1)×H×W array `key` of an image's map file, checked against its keys and `size`."""
    path = find_maps(folder, image_id) or pathlib.Path(folder) / f"{image_id}.npz"
    maps = load_maps(path, num_classes, allow_pickle)
    if key not in maps:
        raise StageError(f"{path}: no '{key}' array (has {sorted(maps)}); is this the right folder?")
    array = maps[key]
    expected = (len(maps["keys"]) - 1, *size)
    if array.shape != expected:
        raise StageError(f"{path}: '{key}' has shape {array.shape}, expected {expected} for its keys and image; "
                         "delete the file and rerun the stage that wrote it")
    return maps["keys"], array


def find_picture(folder, image_id):
    """The `.jpg` or `.png` segmentation or perimeter map of an image, or None; both at once is an
    error (two runs with and without --lossless wrote into one folder)."""
    found = [pathlib.Path(folder) / f"{image_id}{suffix}" for suffix in PICTURE_SUFFIXES]
    found = [path for path in found if path.exists()]
    if len(found) > 1:
        raise StageError(f"{found[0]}: {found[1].name} exists beside it; runs with and without --lossless wrote "
                         "into this folder: delete the maps of the run you do not want")
    return found[0] if found else None


def save_segmentation_map(path, picture):
    """An H×W×3 uint8 segmentation picture (OpenCV's channel order) as JPEG (OpenCV's default
    quality 95, as published) or PNG, by the suffix of `path`."""
    _save_picture(path, np.asarray(picture, dtype=np.uint8))


def load_segmentation_map(path):
    """A segmentation picture as H×W×3 uint8 in OpenCV's channel order (BGR), as `cv2.imread` gives it."""
    with _open_picture(path) as image:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"))[..., ::-1])


def save_perimeter_map(path, edges):
    """An H×W uint8 perimeter map as a grey JPEG (as published) or PNG, by the suffix of `path`."""
    _save_picture(path, np.asarray(edges, dtype=np.uint8))


def load_perimeter_map(path):
    """A perimeter map as H×W uint8; the file must be a grey picture."""
    with _open_picture(path) as image:
        if image.mode != "L":
            raise StageError(f"{path}: a perimeter map must be a grey picture, this one is {image.mode}; "
                             "delete it and rerun Edge_detection.py")
        return np.asarray(image).copy()


def _save_picture(path, array):
    with atomic_path(path) as temporary:
        if not cv2.imwrite(str(temporary), array):
            raise StageError(f"{path}: OpenCV could not write this picture; check the suffix (.jpg or .png)")


@contextlib.contextmanager
def _open_picture(path):
    """A fully decoded PIL picture (Pillow and OpenCV decode these JPEGs to the same values); a
    missing, truncated or corrupt file is one error line."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise StageError(f"{path}: file not found; run the stage that writes it first")
    try:
        image = Image.open(path)
        image.load()
    except Exception as error:
        raise StageError(f"{path}: unreadable picture ({error}); delete it and rerun the stage that wrote it")
    with image:
        yield image


def save_perimeter_fit_masks(path, masks):
    """PerimeterFit's (K+1)×H×W masks of 0/255 as a plain uint8 `.npy` (the published float64 holds
    the same values in eight times the space)."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or not np.isin(masks, (0, 255)).all():
        raise ValueError(f"PerimeterFit masks must be (K+1)×H×W arrays of 0 and 255, got shape {masks.shape}")
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as stream:
            np.save(stream, masks.astype(np.uint8))


def load_perimeter_fit_masks(path):
    """PerimeterFit masks (ours in uint8, the published ones in float64) without unpickling anything."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise StageError(f"{path}: PerimeterFit masks not found; run PerimeterFit.py first")
    try:
        masks = np.load(path, allow_pickle=False)
    except Exception as error:
        raise StageError(f"{path}: unreadable PerimeterFit masks ({type(error).__name__}: {error}); delete the "
                         "file and rerun PerimeterFit.py")
    if masks.ndim != 3 or not np.issubdtype(masks.dtype, np.number) or not np.isin(masks, (0, 255)).all():
        raise StageError(f"{path}: not PerimeterFit masks (a (K+1)×H×W array of 0 and 255; got {masks.dtype} "
                         f"{masks.shape}); delete the file and rerun PerimeterFit.py")
    return masks
