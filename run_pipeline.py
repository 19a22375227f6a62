"""Run the whole pipeline by chaining the published stage scripts, and print the paper's tables.

  --table 2 (default): classifier with puzzle → CAMs → affinity labels → AffinityNet → random walk
      → pseudo labels → DeepLabv3+ → inference → evaluation; prints Table 2 (CAM, CAM+RW,
      CAM+RW+dCRF mIoU on train; DeepLabv3+ mIoU on val) and writes the visual report.
  --table 1: the loss ablation: four classifiers (cls; cls+pcl; cls+re; cls+pcl+re), their CAMs on
      train and their CAM mIoU.
  --refine perimeterfit (with Table 2): SILOP's chain as well, sharing the classifier and its CAMs:
      USS (slic, quick) → perimeter maps → PerimeterFit → combined CAMs → affinity labels (0.60/0.40)
      → AffinityNet → random walk on the original CAMs → pseudo labels → DeepLabv3+; prints SILOP's
      comparison (Puzzle-CAM vs + PerimeterFit) and writes the report of that chain.
  --method cpn (with Table 2): CPN's chain: train_cpn.py → infer_cam.py → its background sweep
      (evaluation_cam.py, the CAM row) → affinity labels → AffinityNet → random walk → pseudo labels
      → DeepLabv3+; prints its rows next to CPN's reported numbers and to the Puzzle-CAM run of the
      same --tag (when its table JSON exists), and writes the report of that chain.

Each stage's command line is printed before it runs, so it can be copied and tweaked. A stage
whose outputs are complete is skipped (a training run is complete when its metric JSON says so;
an inference stage when every listed image has its file), so an interrupted run continues: an
interrupted training run resumes from its last epoch's training state (`--resume True`), an
interrupted inference stage from the first image without a file.

`--preset toy` (default) runs the embedded toy dataset on CPU with the small backbone in minutes;
`--preset voc` uses the published settings (every flag left unset keeps the script's published
default), e.g. with VOC 2012 + SBD at $D and the ImageNet weights in ~/.cache/torch/hub/checkpoints:
  python3 run_pipeline.py --preset voc --data_dir $D --architecture resnest101 --tag ResNeSt101
Any flag given explicitly overrides the preset. `--dataset coco14` runs every stage on MS COCO 2014
(with the toy preset: the toy scenes in COCO layout, `toy_coco/`); its ground-truth masks are
rendered first (make_coco_masks.py).
"""
import argparse
import collections
import functools
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

from wsss.data import toy_coco, toy_voc
from wsss.data.dataset_registry import DATASETS, DEFAULT_DATASET, get_dataset
from wsss.methods import METHODS, get_method
from wsss.methods.cpn import RESNET38D
from wsss.models.backbones import BACKBONES
from wsss.stages.cpn import export_trunk
from wsss.utils.cli import HelpFormatter, run_script, scales_type, str2bool
from wsss.utils.errors import StageError
from wsss.utils.files import check_writable, read_json, write_json
from wsss.utils.paths import (
    WRITABLE_ADVICE,
    ExperimentPaths,
    affinity_label_name,
    cam_name,
    pseudo_label_name,
    rw_name,
    segmentation_name,
)

REPOSITORY = pathlib.Path(__file__).resolve().parent

Stage = collections.namedtuple("Stage", "name script flags done training_tag")
# None: do not pass the flag, so the stage script uses its published default
PRESETS = {
    "toy": dict(data_dir=None, generate_toy=True, architecture="resnet_mini", pretrained="none",
                backbone_init="classifier", tag="Toy", batch_size=16, image_size=128, min_image_size=96,
                max_image_size=192, cls_epochs=8, aff_epochs=10, seg_epochs=4, cls_lr=0.01, seg_lr=0.001,
                seg_batch_size=8, momentum=0.9, scales="1.0,2.0", num_workers=2),
    "voc": dict(data_dir=None, generate_toy=False, architecture="resnest101",
                pretrained="imagenet", backbone_init="imagenet", tag="ResNeSt101", batch_size=None,
                image_size=None, min_image_size=None, max_image_size=None, cls_epochs=None, aff_epochs=None,
                seg_epochs=None, cls_lr=None, seg_lr=None, seg_batch_size=None, momentum=None,
                scales="0.5,1.0,1.5,2.0", num_workers=4),
}
# the report's prediction column (train images, only shown): one scale, no CRF
REPORT_SCALES = "1.0"
# the toy preset's folder and generator per dataset; the voc preset's folder is the dataset's default
TOY_DATA = {"voc12": ("toy_voc", toy_voc.generate), "coco14": ("toy_coco", toy_coco.generate)}
# the paper's numbers (docs/design.md §1)
PAPER_TABLE2 = {"CAM": 61.85, "CAM+RW": 71.92, "CAM+RW+dCRF": 72.46, "DeepLabv3+ val": 66.9}
PAPER_TABLE1 = {"cl": 47.82, "cl_pcl": 47.70, "cl_re": 49.21, "cl_pcl_re": 51.53}
# SILOP's reported VOC val mIoU with CRF, their Puzzle-CAM rerun → SILOP (docs/design.md §9)
SILOP_REPORTED = {"DeepLabv3+ val": (69.7, 70.2)}
# SILOP's AffinityNet and DeepLabv3+ defaults, used where the preset leaves the runner's flags unset
SILOP_TRAINING = {"AffinityNet": dict(batch_size=8, max_epoch=15), "DeepLabv3+": dict(batch_size=8, max_epoch=200)}
TABLE2_ROWS = ("CAM", "CAM+RW", "CAM+RW+dCRF", "DeepLabv3+ val")
PERIMETER_FIT = "PerimeterFit"  # the word of SILOP's runs in tags and folder names
TABLE1_NAMES = {"cl": "cls", "cl_pcl": "cls+pcl", "cl_re": "cls+re", "cl_pcl_re": "cls+pcl+re"}
# CPN's reported VOC numbers (ResNet-38; docs/design.md §10): CAM on train, DeepLab on val after IRN
CPN_REPORTED = {"CAM": 57.41, "DeepLabv3+ val": 67.8}
CPN_SWEEP = "evaluation_cam"  # evaluation mode of CPN's CAM row: its own background sweep
# CPN's CAMs are on half the usual scale: the plain chain's affinity thresholds 0.40/0.10, halved
CPN_AFFINITY_THRESHOLDS = ("0.20", "0.05")


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--preset", type=str, default="toy", choices=sorted(PRESETS),
                        help="default values of the flags below")
    parser.add_argument("--table", type=int, default=2, choices=[1, 2], help="which of the paper's tables to run")
    parser.add_argument("--method", type=str, default="puzzle", choices=sorted(METHODS),
                        help="the CAM method of Table 2's first stage (cpn: CPN's own chain, see above)")
    parser.add_argument("--refine", type=str, default="none", choices=["none", "perimeterfit"],
                        help="Table 2 only: perimeterfit adds SILOP's chain (PerimeterFit-refined CAMs for the "
                             "affinity labels) and prints its comparison with the plain chain")
    parser.add_argument("--dataset", type=str, default=DEFAULT_DATASET, choices=sorted(DATASETS),
                        help="benchmark: voc12 (PASCAL VOC 2012 + SBD) or coco14 (MS COCO 2014)")
    parser.add_argument("--data_dir", type=str,
                        help="dataset folder (unset: toy_voc/ or toy_coco/ with --preset toy, else the dataset's "
                             "usual place, ../VOCtrainval_11-May-2012/ or ../coco2014/)")
    parser.add_argument("--generate_toy", type=str2bool,
                        help="generate the toy dataset at --data_dir first (skipped when it is already there)")
    parser.add_argument("--architecture", type=str, choices=sorted(BACKBONES),
                        help="backbone of the classifier, AffinityNet and DeepLabv3+")
    parser.add_argument("--pretrained", type=str, help="classifier's initial weights: imagenet, none or a file")
    parser.add_argument("--backbone_init", type=str,
                        help="AffinityNet's and DeepLabv3+'s initial backbone weights: 'classifier' (the "
                             "trained classifier's backbone, the toy preset's stand-in for ImageNet) or a "
                             "--pretrained value")
    parser.add_argument("--tag", type=str, help="prefix of the runs' tags")
    parser.add_argument("--batch_size", type=int, help="batch size of every trainer")
    parser.add_argument("--image_size", type=int, help="training crop size")
    parser.add_argument("--min_image_size", type=int, help="min long side of the random resize")
    parser.add_argument("--max_image_size", type=int, help="max long side of the random resize")
    parser.add_argument("--cls_epochs", type=int, help="classifier epochs")
    parser.add_argument("--aff_epochs", type=int, help="AffinityNet epochs")
    parser.add_argument("--seg_epochs", type=int, help="DeepLabv3+ epochs")
    parser.add_argument("--cls_lr", type=float, help="classifier learning rate")
    parser.add_argument("--seg_lr", type=float, help="DeepLabv3+ learning rate")
    parser.add_argument("--seg_batch_size", type=int, help="DeepLabv3+ batch size (unset: --batch_size)")
    parser.add_argument("--momentum", type=float, help="SGD momentum of every trainer (unset: the published quirk)")
    parser.add_argument("--alpha", type=float, default=4.0, help="puzzle reconstruction-loss weight")
    parser.add_argument("--scales", type=scales_type, help="CAM and segmentation inference scales")
    parser.add_argument("--num_workers", type=int, help="worker processes of every stage")
    parser.add_argument("--eval_images", type=int,
                        help="the classifier and DeepLabv3+ score only the first N images of their evaluation list "
                             "after each epoch (unset: all, as published; worth setting on COCO)")
    parser.add_argument("--uss_iterations", type=int,
                        help="USS training steps per image at most (unset: USS.py's published 64)")
    return parser


def apply_preset(args):
    if args.tag is None and args.dataset != DEFAULT_DATASET:  # the preset's runs on another dataset get their own names
        args.tag = f"{PRESETS[args.preset]['tag']}-{args.dataset}"
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.data_dir is None:
        toy = args.preset == "toy"
        args.data_dir = TOY_DATA[args.dataset][0] if toy else get_dataset(args.dataset).default_data_dir
    return args


def flags(**values):
    """`--name value` pairs of the values that are set."""
    return [item for name, value in values.items() if value is not None for item in (f"--{name}", value)]


class Plan:
    """The stages of a table in order, and the evaluations to print."""

    def __init__(self, args):
        self.args = args
        self.benchmark = get_dataset(args.dataset)
        # every stage's --dataset (left out for VOC: its command lines stay the published ones) and --data_dir
        self.dataset_flags = flags(dataset=None if args.dataset == DEFAULT_DATASET else args.dataset)
        self.data = flags(data_dir=args.data_dir) + self.dataset_flags
        self.evaluation = flags(eval_images=args.eval_images)  # of the trainers that evaluate every epoch
        self.paths = ExperimentPaths()
        self.stages = []
        self.evaluations = {}
        self.report = None  # make_report.py's flags (Table 2)
        self.result_tag = args.tag  # names the report folder and the table's JSON
        if self.benchmark.mask_script is not None:
            self.ground_truth()

    def ground_truth(self):
        """The dataset's mask rendering (COCO's make_coco_masks.py), done when every train and val
        image has its mask and each split its label index."""
        a = self.args
        self.add("ground-truth masks", self.benchmark.mask_script,
                 flags(data_dir=a.data_dir, num_workers=a.num_workers),
                 functools.partial(self.benchmark.mask_script_done, a.data_dir))

    def add(self, name, script, stage_flags, done, training_tag=None):
        self.stages.append(Stage(name, script, stage_flags, done, training_tag))

    def trained(self, tag):
        path = self.paths.metrics(tag)
        return lambda: path.is_file() and json.loads(path.read_text()).get("finished", False)

    def predicted(self, name, domain, suffixes):
        folder = self.paths.predictions(name)

        def done():
            return folder.is_dir() and all(any((folder / f"{i}{s}").exists() for s in suffixes)
                                           for i in self.benchmark.image_ids(domain, self.args.data_dir))
        return done

    def training_flags(self, epochs, lr=None, batch_size=None):
        a = self.args
        return flags(batch_size=batch_size or a.batch_size, image_size=a.image_size,
                     min_image_size=a.min_image_size, max_image_size=a.max_image_size, max_epoch=epochs, lr=lr,
                     momentum=a.momentum, num_workers=a.num_workers) + self.data

    def classifier(self, tag, method, **overrides):
        """Train `method`'s CAM network with its paper flags (the runner's --alpha and `overrides`
        replacing those it has)."""
        a = self.args
        method_flags = dict(method.paper_flags)
        if "alpha" in method_flags and a.alpha is not None:
            method_flags["alpha"] = a.alpha
        method_flags.update(overrides)
        self.add(f"classifier {tag}", method.train_script,
                 flags(architecture=a.architecture, pretrained=a.pretrained, **method_flags)
                 + flags(tag=tag) + self.training_flags(a.cls_epochs, a.cls_lr) + self.evaluation,
                 self.trained(tag), tag)

    def cams(self, tag, method, domain):
        a = self.args
        name = cam_name(tag, domain, a.scales)
        self.add(f"CAMs {tag}", "inference_classification.py",
                 flags(architecture=a.architecture, tag=tag, domain=domain, scales=a.scales,
                       num_workers=a.num_workers, method=method.name) + self.data,
                 self.predicted(name, domain, (".npz", ".npy")))
        return name

    def stages_after_cams(self, cams, aff_tag, seg_tag, init, thresholds):
        """Affinity labels (fg, bg `thresholds` as typed) → AffinityNet → random walk on `cams` → pseudo
        labels → DeepLabv3+ → its val and train predictions; returns (rw, pseudo, {domain: predictions})."""
        a = self.args
        common = flags(num_workers=a.num_workers) + self.data
        fg, bg = thresholds
        aff_labels = affinity_label_name(cams, float(fg), float(bg))
        self.add("affinity labels", "make_affinity_labels.py",
                 flags(experiment_name=cams, domain="train_aug", fg_threshold=fg, bg_threshold=bg) + common,
                 self.predicted(aff_labels, "train_aug", (".png",)))
        self.add("AffinityNet", "train_affinitynet.py",
                 flags(architecture=a.architecture, pretrained=init, tag=aff_tag, label_name=aff_labels)
                 + self.training_flags(a.aff_epochs), self.trained(aff_tag), aff_tag)
        rw = rw_name(aff_tag, "train_aug", 10, 8)
        self.add("random walk", "inference_rw.py",
                 flags(architecture=a.architecture, model_name=aff_tag, cam_dir=cams, domain="train_aug") + common,
                 self.predicted(rw, "train_aug", (".npz", ".npy")))
        pseudo = pseudo_label_name(rw, 1)
        self.add("pseudo labels", "make_pseudo_labels.py",
                 flags(experiment_name=rw, domain="train_aug", threshold="0.35", crf_iteration=1) + common,
                 self.predicted(pseudo, "train_aug", (".png",)))
        self.add("DeepLabv3+", "train_segmentation.py",
                 flags(backbone=a.architecture, pretrained=init, mode="fix", use_gn="True", tag=seg_tag,
                       label_name=pseudo) + self.training_flags(a.seg_epochs, a.seg_lr, a.seg_batch_size)
                 + self.evaluation, self.trained(seg_tag), seg_tag)
        return rw, pseudo, self.segmentation_predictions(seg_tag)

    def segmentation_predictions(self, seg_tag, suffix=""):
        """DeepLabv3+'s val predictions (the --scales and 10 CRF iterations, as published), which the
        table scores, and its train predictions for the report's last column, which are only shown:
        one scale, no CRF. Returns {domain: folder name}."""
        a = self.args
        predictions = {}
        for domain, scales, iteration in (("val", a.scales, 10), ("train", REPORT_SCALES, 0)):
            predictions[domain] = segmentation_name(seg_tag, domain, scales, iteration)
            self.add(f"segmentation {domain}{suffix}", "inference_segmentation.py",
                     flags(backbone=a.architecture, mode="fix", use_gn="True", tag=seg_tag, domain=domain,
                           scale=scales, iteration=iteration, num_workers=a.num_workers) + self.data,
                     self.predicted(predictions[domain], domain, (".png",)))
        return predictions

    def evaluate(self, title, name, mode, domain):
        self.evaluations[title] = (name, mode, domain)


def table1(args):
    plan = Plan(args)
    for option in TABLE1_NAMES:
        tag = f"{args.tag}@{option}"
        if option == "cl":  # the classification loss alone is the baseline method
            method = get_method("baseline")
            plan.classifier(tag, method)
        else:
            method = get_method("puzzle")
            plan.classifier(tag, method, loss_option=option)
        plan.evaluate(TABLE1_NAMES[option], plan.cams(tag, method, "train"), "npy", "train")
    return plan


def table2(args):
    plan = Plan(args)
    a = args
    method = get_method(a.method)
    cls_tag, aff_tag, seg_tag = f"{a.tag}@{method.tag_word}", f"AffinityNet@{a.tag}", f"DeepLabv3+@{a.tag}"
    init = str(plan.paths.model(cls_tag)) if a.backbone_init == "classifier" else a.backbone_init
    plan.classifier(cls_tag, method)
    cams = plan.cams(cls_tag, method, "train_aug")
    rw, pseudo, predictions = plan.stages_after_cams(cams, aff_tag, seg_tag, init, ("0.40", "0.10"))
    plan.evaluate("CAM", cams, "npy", "train")
    plan.evaluate("CAM+RW", rw, "rw", "train")
    plan.evaluate("CAM+RW+dCRF", pseudo, "png", "train")
    plan.evaluate("DeepLabv3+ val", predictions["val"], "png", "val")
    plan.report = flags(tag=a.tag, domain="train", cam_dir=cams, rw_dir=rw, pseudo_dir=pseudo,
                        prediction_dir=predictions["train"]) + plan.data
    if a.refine == "perimeterfit":
        perimeter_fit_chain(plan, cams, init)
    return plan


def perimeter_fit_chain(plan, cams, init):
    """SILOP's stages after the plain chain's CAMs (docs/design.md §9), its rows `{row} + PerimeterFit`
    and its report. USS, perimeter and PerimeterFit folders sit under the prediction folder, named
    after the run's tag (USS, perimeter maps) or its CAMs (PerimeterFit masks, combined CAMs)."""
    a = plan.args
    common = flags(num_workers=a.num_workers) + plan.data
    cam_dir = plan.paths.predictions(cams)
    fit_dirs = {}
    for segment in ("slic", "quick"):
        uss, perimeters, fit = f"{a.tag}@USS_{segment}", f"{a.tag}@PM_{segment}", f"{cams}@{PERIMETER_FIT}_{segment}"
        uss_dir, pm_dir, fit_dirs[segment] = (plan.paths.predictions(name) for name in (uss, perimeters, fit))
        plan.add(f"USS {segment}", "USS.py",
                 flags(segment=segment, uss_dir=uss_dir, domain="train_aug", max_iterations=a.uss_iterations) + common,
                 plan.predicted(uss, "train_aug", (".jpg",)))
        plan.add(f"perimeter maps {segment}", "Edge_detection.py",
                 flags(segment=segment, uss_dir=uss_dir, pm_dir=pm_dir, domain="train_aug") + common,
                 plan.predicted(perimeters, "train_aug", (".jpg",)))
        plan.add(f"PerimeterFit {segment}", "PerimeterFit.py",
                 flags(segment=segment, cam_path=cam_dir, uss_dir=uss_dir, pm_dir=pm_dir,
                       perimeterfit_dir=fit_dirs[segment], domain="train_aug") + common,
                 plan.predicted(fit, "train_aug", (".npy",)))
    combined = f"{cams}@{PERIMETER_FIT}"
    plan.add("combined CAMs", "Combine_PerimeterFit.py",
             flags(cam_dir=cam_dir, slic_dir=fit_dirs["slic"], quick_dir=fit_dirs["quick"], domain="train_aug",
                   output_dir=plan.paths.predictions(combined)) + common,
             plan.predicted(combined, "train_aug", (".npz", ".npy")))
    aff_labels = affinity_label_name(combined, 0.60, 0.40)
    plan.add(f"affinity labels + {PERIMETER_FIT}", "make_affinity_labels.py",
             flags(experiment_name=combined, domain="train_aug", fg_threshold="0.60", bg_threshold="0.40") + common,
             plan.predicted(aff_labels, "train_aug", (".png",)))
    aff_tag, seg_tag = f"AffinityNet@{a.tag}@{PERIMETER_FIT}", f"DeepLabv3+@{a.tag}@{PERIMETER_FIT}"
    plan.add(f"AffinityNet + {PERIMETER_FIT}", "train_affinitynet.py",
             flags(architecture=a.architecture, pretrained=init, tag=aff_tag, label_name=aff_labels)
             + silop_training_flags(plan, "AffinityNet", a.aff_epochs), plan.trained(aff_tag), aff_tag)
    rw = rw_name(aff_tag, "train_aug", 10, 8)
    plan.add(f"random walk + {PERIMETER_FIT}", "inference_rw.py",
             flags(architecture=a.architecture, model_name=aff_tag, cam_dir=cams, domain="train_aug") + common,
             plan.predicted(rw, "train_aug", (".npz", ".npy")))
    pseudo = pseudo_label_name(rw, 1)
    plan.add(f"pseudo labels + {PERIMETER_FIT}", "make_pseudo_labels.py",
             flags(experiment_name=rw, domain="train_aug", threshold="0.35", crf_iteration=1) + common,
             plan.predicted(pseudo, "train_aug", (".png",)))
    plan.add(f"DeepLabv3+ + {PERIMETER_FIT}", "train_segmentation.py",
             flags(backbone=a.architecture, pretrained=init, mode="fix", use_gn="True", tag=seg_tag,
                   label_name=pseudo)
             + silop_training_flags(plan, "DeepLabv3+", a.seg_epochs, a.seg_lr, a.seg_batch_size) + plan.evaluation,
             plan.trained(seg_tag), seg_tag)
    predictions = plan.segmentation_predictions(seg_tag, f" + {PERIMETER_FIT}")
    for row, (name, mode, domain) in zip(TABLE2_ROWS, ((combined, "npy", "train"), (rw, "rw", "train"),
                                                       (pseudo, "png", "train"), (predictions["val"], "png", "val"))):
        plan.evaluate(f"{row} + {PERIMETER_FIT}", name, mode, domain)
    plan.result_tag = f"{a.tag}@{PERIMETER_FIT}"
    plan.report = flags(tag=plan.result_tag, domain="train", cam_dir=cams, rw_dir=rw,
                        pseudo_dir=pseudo, prediction_dir=predictions["train"], uss_dir=f"{a.tag}@USS_slic",
                        perimeterfit_slic_dir=f"{cams}@{PERIMETER_FIT}_slic",
                        perimeterfit_quick_dir=f"{cams}@{PERIMETER_FIT}_quick", combined_cam_dir=combined) + plan.data


def cpn_chain(args):
    """CPN's chain (docs/design.md §10): the plain chain's stages with CPN's network and CAM scripts.

    With `--backbone_init classifier` (toy) CPN runs on --architecture and AffinityNet and
    DeepLabv3+ start from its trunk (written once by an in-process step); otherwise CPN runs on
    its published trunk, resnet38d, and they start from --backbone_init. From scratch
    (--pretrained none) CPN's trunk normalises with batch statistics (--mode normal): frozen
    statistics need pretrained ones. The affinity thresholds are halved for CPN's ÷2 scale."""
    plan = Plan(args)
    a = args
    method = get_method("cpn")
    cls_tag = plan.result_tag = f"{a.tag}@{method.tag_word}"
    aff_tag, seg_tag = f"AffinityNet@{cls_tag}", f"DeepLabv3+@{cls_tag}"
    common = flags(num_workers=a.num_workers) + plan.data
    network = a.architecture if a.backbone_init == "classifier" else RESNET38D
    model = plan.paths.model(cls_tag)
    plan.add(f"classifier {cls_tag}", method.train_script,
             flags(network=network, weights=a.pretrained, mode="normal" if a.pretrained == "none" else None,
                   session_name=cls_tag) + plan.training_flags(a.cls_epochs, a.cls_lr) + plan.evaluation,
             plan.trained(cls_tag), cls_tag)
    cams = cam_name(cls_tag, "train_aug", a.scales)
    plan.add(f"CAMs {cls_tag}", "infer_cam.py",
             flags(network=network, weights=model, infer_list="train_aug", scales=a.scales,
                   out_cam=plan.paths.predictions(cams)) + common, plan.predicted(cams, "train_aug", (".npz", ".npy")))
    init = a.backbone_init
    if a.backbone_init == "classifier":
        trunk = plan.paths.model(f"{cls_tag}.trunk")
        plan.add(f"trunk of {cls_tag} for AffinityNet and DeepLabv3+ ({trunk})",
                 functools.partial(export_trunk, model, trunk), [],
                 lambda: trunk.is_file() and trunk.stat().st_mtime >= model.stat().st_mtime)
        init = str(trunk)
    rw, pseudo, predictions = plan.stages_after_cams(cams, aff_tag, seg_tag, init, CPN_AFFINITY_THRESHOLDS)
    for row, (name, mode, domain) in zip(TABLE2_ROWS, ((cams, CPN_SWEEP, "train"), (rw, "rw", "train"),
                                                       (pseudo, "png", "train"), (predictions["val"], "png", "val"))):
        plan.evaluate(row, name, mode, domain)
    plan.report = flags(tag=cls_tag, domain="train", cam_dir=cams, rw_dir=rw, pseudo_dir=pseudo,
                        prediction_dir=predictions["train"]) + plan.data
    return plan


def silop_training_flags(plan, network, epochs, lr=None, batch_size=None):
    """The training flags of SILOP's AffinityNet or DeepLabv3+: the runner's (the preset's epochs,
    learning rate and batch size as for the Puzzle-CAM chain), with SILOP's batch size and epochs
    where the preset leaves them unset."""
    defaults = SILOP_TRAINING[network]
    if batch_size is None and plan.args.batch_size is None:
        batch_size = defaults["batch_size"]
    return plan.training_flags(defaults["max_epoch"] if epochs is None else epochs, lr, batch_size)


def shown_interpreter():
    """This Python as a command typed in the working directory: `python3` when that is the one on
    PATH (an activated .venv), else its path (e.g. `.venv/bin/python`), so printed lines run as shown."""
    on_path = shutil.which("python3")
    if on_path and os.path.dirname(os.path.abspath(on_path)) == os.path.dirname(os.path.abspath(sys.executable)):
        return "python3"
    relative = os.path.relpath(sys.executable)
    return sys.executable if relative.startswith("..") else relative


def shown_script(script):
    relative = os.path.relpath(REPOSITORY / script)
    return str(REPOSITORY / script) if relative.startswith("..") else relative


def run_stage(name, script, stage_flags):
    """Run one stage script in a process group of its own and wait for it. On Ctrl-C the runner alone
    gets the signal, stops the stage (outputs are atomic: what exists is complete) and says so once."""
    command = [sys.executable, str(REPOSITORY / script), *map(str, stage_flags)]
    print(f"\n== {name}\n$ {shown_interpreter()} {shown_script(script)} {shlex.join(map(str, stage_flags))}",
          flush=True)
    start = time.perf_counter()
    process = subprocess.Popen(command, start_new_session=True)
    try:
        returncode = process.wait()
    except KeyboardInterrupt:
        stop_group(process)
        raise KeyboardInterrupt(f"stage '{name}'") from None
    if returncode != 0:
        raise StageError(f"stage '{name}' failed (command above); fix the cause and rerun: finished stages are skipped")
    elapsed = time.perf_counter() - start
    print(f"== {name}: done in {elapsed:.1f} s", flush=True)
    return elapsed


def stop_group(process, grace=10):
    """SIGTERM to the stage's process group, SIGKILL to what is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def evaluate(title, name, mode, domain, plan):
    """Run the evaluation script of a row (the ground truth found from the dataset folder) and read
    its JSON result."""
    args, paths = plan.args, plan.paths
    if mode == CPN_SWEEP:  # CPN's CAMs: its sweep over background scores 0.20–0.59
        run_stage(f"evaluate {title}", "evaluation_cam.py",
                  flags(list=domain, predict_dir=paths.predictions(name), gt_dir=args.data_dir,
                        logfile=paths.log(name), num_workers=args.num_workers) + plan.dataset_flags)
        return read_json(paths.evaluation(name, domain))
    run_stage(f"evaluate {title}", "evaluate.py",
              flags(experiment_name=name, domain=domain, mode=mode, num_workers=args.num_workers) + plan.data)
    return read_json(paths.evaluation(name, domain))


def print_table(title, results, paper, paper_label):
    print(f"\n{title}")
    print(f"{'':<16}{'this run':>10}{paper_label:>30}")
    for name, result in results.items():
        print(f"{name:<16}{result['mIoU']:>10.2f}{paper[name]:>30.2f}")


def print_silop_table(results):
    """The plain chain next to SILOP's, and SILOP's reported VOC numbers where it reports them."""
    print(f"\nSILOP comparison (mIoU %): Puzzle-CAM vs + {PERIMETER_FIT}")
    print(f"{'':<16}{'Puzzle-CAM':>12}{'+ ' + PERIMETER_FIT:>16}{'SILOP paper (VOC)':>30}")
    for row in TABLE2_ROWS:
        reported = SILOP_REPORTED.get(row)
        paper = f"{reported[0]:.1f} → {reported[1]:.1f}" if reported else "—"
        print(f"{row:<16}{results[row]['mIoU']:>12.2f}{results[f'{row} + {PERIMETER_FIT}']['mIoU']:>16.2f}"
              f"{paper:>30}")


def print_cpn_table(results, puzzle):
    """CPN's rows next to the Puzzle-CAM run's (`puzzle`: its table JSON, or None) and CPN's reported
    numbers where the paper gives them."""
    print("\nCPN chain (mIoU %): pseudo-label quality on train, DeepLabv3+ on val")
    print(f"{'':<16}{'CPN':>10}{'Puzzle-CAM':>12}{'CPN paper (ResNet-38, VOC)':>30}")
    for row in TABLE2_ROWS:
        other = f"{puzzle[row]:.2f}" if puzzle and row in puzzle else "—"
        paper = f"{CPN_REPORTED[row]:.2f}" if row in CPN_REPORTED else "—"
        print(f"{row:<16}{results[row]['mIoU']:>10.2f}{other:>12}{paper:>30}")
    if puzzle is None:
        print("(Puzzle-CAM column: run `python3 run_pipeline.py` with the same --preset and --tag)")


def puzzle_summary(paths, args):
    """The Puzzle-CAM run's Table 2 JSON of the same tag, preset and dataset, or None."""
    path = paths.evaluation(args.tag, "table2")
    if not path.is_file():
        return None
    summary = read_json(path)
    same_run = summary.get("preset") == args.preset and summary.get("dataset", DEFAULT_DATASET) == args.dataset
    return summary if same_run else None


def main(args):
    try:
        return run(args)
    except KeyboardInterrupt as interruption:
        where = f" during {interruption.args[0]}" if interruption.args else ""
        print(f"interrupted{where}: finished stages and every file already written are kept; rerun the same "
              "command to continue (finished stages are skipped, an interrupted training resumes)", file=sys.stderr)
        sys.exit(130)


def run(args):
    start = time.perf_counter()
    apply_preset(args)
    if args.refine != "none" and args.table != 2:
        raise StageError(f"--refine {args.refine} runs with Table 2 only; drop --table {args.table} or --refine")
    if args.method == "cpn" and (args.table != 2 or args.refine != "none"):
        raise StageError("--method cpn runs CPN's own chain (Table 2's rows); drop --table 1 and --refine")
    paths = ExperimentPaths()
    check_writable(paths.root, WRITABLE_ADVICE)
    if args.generate_toy:
        check_writable(pathlib.Path(args.data_dir), "choose a --data_dir you can write, or run from another folder")
        TOY_DATA[args.dataset][1](args.data_dir)
    plan = table1(args) if args.table == 1 else cpn_chain(args) if args.method == "cpn" else table2(args)
    timings = {}
    for stage in plan.stages:
        if stage.done():
            print(f"\n== {stage.name}: complete, skipped")
            continue
        if callable(stage.script):  # an in-process step (CPN's trunk for AffinityNet and DeepLabv3+)
            print(f"\n== {stage.name}", flush=True)
            stage.script()
            continue
        resume = stage.training_tag and paths.training_state(stage.training_tag).is_file()
        resume_flags = ["--resume", "True"] if resume else []
        timings[stage.name] = run_stage(stage.name, stage.script, stage.flags + resume_flags)
    results = {title: evaluate(title, *evaluation, plan) for title, evaluation in plan.evaluations.items()}
    summary = paths.evaluation(plan.result_tag, f"table{args.table}")
    write_json(summary, {"preset": args.preset, "dataset": args.dataset,
                         **{title: result["mIoU"] for title, result in results.items()}})
    if args.table == 1:
        print_table("Table 1 (mIoU %): CAM quality on train by training loss", results,
                    {TABLE1_NAMES[k]: v for k, v in PAPER_TABLE1.items()}, "paper (ResNet-50, VOC)")
    else:
        evaluations = [f"{title}={name}@{domain}" for title, (name, _, domain) in plan.evaluations.items()]
        run_stage("report", "make_report.py", plan.report + ["--evaluations", *evaluations])
        if args.refine == "perimeterfit":
            print_silop_table(results)
        elif args.method == "cpn":
            print_cpn_table(results, puzzle_summary(paths, args))
        else:
            print_table("Table 2 (mIoU %): pseudo-label quality on train, DeepLabv3+ on val", results,
                        PAPER_TABLE2, "paper (ResNeSt-101, VOC)")
        report = paths.report(plan.result_tag)
        print(f"\nreport: {report / 'samples.png'}, {report / 'class_iou.png'}")
    if args.dataset != DEFAULT_DATASET:
        print(f"(this run: {plan.benchmark.title}; the paper columns are the papers' VOC numbers)")
    if timings:
        print("\nstage times (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items()))
    print(f"results: {summary}\ntotal time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_script(main, build_parser())
