"""Ready inputs for every stage script on a toy dataset, without training: random-initialised
checkpoints and fabricated CAM, random-walk and label folders (tests of bad input and interruptions).

`build(data_dir, root)` fills `root/experiments/`; `command(script, data_dir)` is a valid command
line of that stage, run with `root` as the working directory; `output(script, root)` names what the
stage writes there.
"""
import importlib
import pathlib
import shutil

import numpy as np
import torch
from stage_runner import TINY_TRAINING

from wsss.algorithms.cam import strided_size
from wsss.algorithms.path_index import PathIndex
from wsss.data.voc import VOCData, read_image_ids
from wsss.models.affinitynet import AffinityNet
from wsss.models.classifier import Classifier
from wsss.models.segmentation_models import build_segmentation_model
from wsss.utils.cli import run_script
from wsss.utils.files import save_cams, save_checkpoint, save_rw

CAMS = "cls@train@scale=1.0"
AFFINITY_LABELS = f"{CAMS}@aff_fg=0.30_bg=0.05"
RW = "aff@train@beta=10@exp_times=8@rw"
PSEUDO_LABELS = f"{RW}@crf=1"
AFFINITY_GRID = 24  # --image_size 96 / 4

TRAINERS = ("train_classification.py", "train_classification_with_puzzle.py", "train_affinitynet.py",
            "train_segmentation.py")
STAGES = ("train_classification.py", "train_classification_with_puzzle.py", "inference_classification.py",
          "make_affinity_labels.py", "train_affinitynet.py", "inference_rw.py", "make_pseudo_labels.py",
          "train_segmentation.py", "inference_segmentation.py", "evaluate.py")


def image_size(data, image_id):
    image = data.image(image_id)
    return image.height, image.width


def build(data_dir, root, domain="train_aug", seed=0):
    """Checkpoints `cls`, `aff`, `seg` and the folders CAMS, RW (random maps with the images' keys),
    AFFINITY_LABELS and PSEUDO_LABELS (copies of the ground truth) for the ids of `domain`."""
    data_dir, root = pathlib.Path(data_dir), pathlib.Path(root)
    models = root / "experiments" / "models"
    torch.manual_seed(seed)
    save_checkpoint(Classifier("resnet_mini", mode="normal", pretrained="none").state_dict(), models / "cls.pth")
    affinitynet = AffinityNet("resnet_mini", pretrained="none", path_index=PathIndex(10, (AFFINITY_GRID,) * 2))
    save_checkpoint(affinitynet.state_dict(), models / "aff.pth")
    segmenter = build_segmentation_model("DeepLabv3+", "resnet_mini", num_classes=21, mode="fix", use_gn=True,
                                         pretrained="none")
    save_checkpoint(segmenter.state_dict(), models / "seg.pth")
    predictions = root / "experiments" / "predictions"
    data = VOCData(data_dir)
    rng = np.random.default_rng(seed)
    for image_id in read_image_ids(domain, data_dir):
        keys = np.r_[0, np.nonzero(data.label(image_id))[0] + 1]
        height, width = image_size(data, image_id)
        count = len(keys) - 1
        save_cams(predictions / CAMS / f"{image_id}.npz", keys, rng.random((count, *strided_size(height, width))),
                  rng.random((count, height, width)))
        save_rw(predictions / RW / f"{image_id}.npz", keys, rng.random((count, height, width)))
        for name in (AFFINITY_LABELS, PSEUDO_LABELS):
            (predictions / name).mkdir(parents=True, exist_ok=True)
            shutil.copy(data_dir / "SegmentationClass" / f"{image_id}.png", predictions / name / f"{image_id}.png")
    return root


def command(script, data_dir, domain="train_aug"):
    """A valid command line of `script` on the workspace (fresh outputs, tiny sizes, inline workers)."""
    inline = ["--num_workers", "0"]
    lines = {
        "train_classification.py": ["--architecture", "resnet_mini", "--tag", "new", "--data_dir", data_dir,
                                    *TINY_TRAINING],
        "train_classification_with_puzzle.py": ["--architecture", "resnet_mini", "--tag", "new", "--data_dir",
                                                data_dir, *TINY_TRAINING],
        "inference_classification.py": ["--architecture", "resnet_mini", "--tag", "cls", "--domain", domain,
                                        "--scales", "0.5", "--data_dir", data_dir, *inline],
        "make_affinity_labels.py": ["--experiment_name", CAMS, "--domain", domain, "--fg_threshold", "0.35",
                                    "--data_dir", data_dir, *inline],
        "train_affinitynet.py": ["--architecture", "resnet_mini", "--pretrained", "none", "--tag", "new",
                                 "--label_name", AFFINITY_LABELS, "--data_dir", data_dir, "--batch_size", "2",
                                 "--max_epoch", "1", "--image_size", "96", "--min_image_size", "64",
                                 "--max_image_size", "96", *inline],
        "inference_rw.py": ["--architecture", "resnet_mini", "--model_name", "aff", "--cam_dir", CAMS, "--domain",
                            domain, "--exp_times", "3", "--data_dir", data_dir, *inline],
        "make_pseudo_labels.py": ["--experiment_name", RW, "--domain", domain, "--crf_iteration", "2",
                                  "--data_dir", data_dir, *inline],
        "train_segmentation.py": ["--backbone", "resnet_mini", "--tag", "new", "--label_name", PSEUDO_LABELS,
                                  "--data_dir", data_dir, *TINY_TRAINING],
        "inference_segmentation.py": ["--backbone", "resnet_mini", "--tag", "seg", "--domain", domain, "--scales",
                                      "1.0", "--iteration", "1", "--data_dir", data_dir, *inline],
        "evaluate.py": ["--experiment_name", CAMS, "--domain", domain, "--data_dir",
                        pathlib.Path(data_dir) / "SegmentationClass", "--num_workers", "1"],
    }
    return [str(argument) for argument in lines[script]]


def output(script, root, domain="train_aug"):
    """The file or folder `script` (as in `command`) writes under `root`."""
    experiments = pathlib.Path(root) / "experiments"
    word = "train" if "train" in domain else "val"
    if script in TRAINERS:
        return experiments / "models" / "new.pth"
    return {
        "inference_classification.py": experiments / "predictions" / f"cls@{word}@scale=0.5",
        "make_affinity_labels.py": experiments / "predictions" / f"{CAMS}@aff_fg=0.35_bg=0.05",
        "inference_rw.py": experiments / "predictions" / f"aff@{word}@beta=10@exp_times=3@rw",
        "make_pseudo_labels.py": experiments / "predictions" / f"{RW}@crf=2",
        "inference_segmentation.py": experiments / "predictions" / f"seg@{word if word == 'train' else domain}"
                                                                  f"@scale=1.0@iteration=1",
        "evaluate.py": experiments / "evaluations" / f"{CAMS}@{domain}.json",
    }[script]


def run_in_process(script, argv, cwd, monkeypatch):
    """Run a stage's `main` as its command line would, in this process, from `cwd`; returns the exit
    status (0 when it returns normally)."""
    module = importlib.import_module(script[:-len(".py")])
    monkeypatch.chdir(cwd)
    try:
        run_script(module.main, module.build_parser(), argv)
    except SystemExit as stop:
        return stop.code
    return 0


def files_under(folder):
    """Relative paths of every file under `folder` (hidden ones too)."""
    folder = pathlib.Path(folder)
    return {str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()} if folder.exists() else set()


def temporaries(folder):
    return sorted(name for name in files_under(folder) if ".tmp" in pathlib.Path(name).name)


__all__ = ["CAMS", "AFFINITY_LABELS", "RW", "PSEUDO_LABELS", "TRAINERS", "STAGES", "build", "command", "output",
           "run_in_process", "files_under", "temporaries"]
