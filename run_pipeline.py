"""Run the whole pipeline by chaining the published stage scripts, and print the paper's tables.

  --table 2 (default): classifier with puzzle → CAMs → affinity labels → AffinityNet → random walk
      → pseudo labels → DeepLabv3+ → inference → evaluation; prints Table 2 (CAM, CAM+RW,
      CAM+RW+dCRF mIoU on train; DeepLabv3+ mIoU on val) and writes the visual report.
  --table 1: the loss ablation: four classifiers (cls; cls+pcl; cls+re; cls+pcl+re), their CAMs on
      train and their CAM mIoU.

Each stage's command line is printed before it runs, so it can be copied and tweaked. A stage
whose outputs are complete is skipped (a training run is complete when its metric JSON says so;
an inference stage when every listed image has its file), so an interrupted run continues: an
interrupted training run resumes from its last epoch's training state (`--resume True`), an
interrupted inference stage from the first image without a file.

`--preset toy` (default) runs the embedded toy dataset on CPU with the small backbone in minutes;
`--preset voc` uses the published settings (every flag left unset keeps the script's published
default), e.g. with VOC 2012 + SBD at $D and the ImageNet weights in ~/.cache/torch/hub/checkpoints:
  python3 run_pipeline.py --preset voc --data_dir $D --architecture resnest101 --tag ResNeSt101
Any flag given explicitly overrides the preset.
"""
import argparse
import collections
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

from wsss.data.voc import read_image_ids
from wsss.methods import METHODS, get_method
from wsss.models.backbones import BACKBONES
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
    "toy": dict(data_dir="toy_voc", generate_toy=True, architecture="resnet_mini", pretrained="none",
                backbone_init="classifier", tag="Toy", batch_size=16, image_size=128, min_image_size=96,
                max_image_size=192, cls_epochs=8, aff_epochs=10, seg_epochs=4, cls_lr=0.01, momentum=0.9,
                scales="1.0,2.0", num_workers=2),
    "voc": dict(data_dir="../VOCtrainval_11-May-2012/", generate_toy=False, architecture="resnest101",
                pretrained="imagenet", backbone_init="imagenet", tag="ResNeSt101", batch_size=None,
                image_size=None, min_image_size=None, max_image_size=None, cls_epochs=None, aff_epochs=None,
                seg_epochs=None, cls_lr=None, momentum=None, scales="0.5,1.0,1.5,2.0", num_workers=4),
}
# the paper's numbers (docs/design.md §1)
PAPER_TABLE2 = {"CAM": 61.85, "CAM+RW": 71.92, "CAM+RW+dCRF": 72.46, "DeepLabv3+ val": 66.9}
PAPER_TABLE1 = {"cl": 47.82, "cl_pcl": 47.70, "cl_re": 49.21, "cl_pcl_re": 51.53}
TABLE1_NAMES = {"cl": "cls", "cl_pcl": "cls+pcl", "cl_re": "cls+re", "cl_pcl_re": "cls+pcl+re"}


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--preset", type=str, default="toy", choices=sorted(PRESETS),
                        help="default values of the flags below")
    parser.add_argument("--table", type=int, default=2, choices=[1, 2], help="which of the paper's tables to run")
    parser.add_argument("--method", type=str, default="puzzle", choices=sorted(METHODS),
                        help="the CAM method of Table 2's first stage")
    parser.add_argument("--data_dir", type=str, help="VOC2012-format folder")
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
    parser.add_argument("--momentum", type=float, help="SGD momentum of every trainer (unset: the published quirk)")
    parser.add_argument("--alpha", type=float, default=4.0, help="puzzle reconstruction-loss weight")
    parser.add_argument("--scales", type=scales_type, help="CAM and segmentation inference scales")
    parser.add_argument("--num_workers", type=int, help="worker processes of every stage")
    return parser


def apply_preset(args):
    for name, value in PRESETS[args.preset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def flags(**values):
    """`--name value` pairs of the values that are set."""
    return [item for name, value in values.items() if value is not None for item in (f"--{name}", value)]


class Plan:
    """The stages of a table in order, and the evaluations to print."""

    def __init__(self, args):
        self.args = args
        self.paths = ExperimentPaths()
        self.stages = []
        self.evaluations = {}
        self.report = None  # make_report.py's flags (Table 2)

    def add(self, name, script, stage_flags, done, training_tag=None):
        self.stages.append(Stage(name, script, stage_flags, done, training_tag))

    def trained(self, tag):
        path = self.paths.metrics(tag)
        return lambda: path.is_file() and json.loads(path.read_text()).get("finished", False)

    def predicted(self, name, domain, suffixes):
        folder = self.paths.predictions(name)

        def done():
            return folder.is_dir() and all(any((folder / f"{i}{s}").exists() for s in suffixes)
                                           for i in read_image_ids(domain, self.args.data_dir))
        return done

    def training_flags(self, epochs, lr=None):
        a = self.args
        return flags(batch_size=a.batch_size, image_size=a.image_size, min_image_size=a.min_image_size,
                     max_image_size=a.max_image_size, max_epoch=epochs, lr=lr, momentum=a.momentum,
                     num_workers=a.num_workers, data_dir=a.data_dir)

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
                 + flags(tag=tag) + self.training_flags(a.cls_epochs, a.cls_lr), self.trained(tag), tag)

    def cams(self, tag, method, domain):
        a = self.args
        name = cam_name(tag, domain, a.scales)
        self.add(f"CAMs {tag}", "inference_classification.py",
                 flags(architecture=a.architecture, tag=tag, domain=domain, scales=a.scales,
                       num_workers=a.num_workers, data_dir=a.data_dir, method=method.name),
                 self.predicted(name, domain, (".npz", ".npy")))
        return name

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
    common = flags(num_workers=a.num_workers, data_dir=a.data_dir)
    method = get_method(a.method)
    cls_tag, aff_tag, seg_tag = f"{a.tag}@{method.tag_word}", f"AffinityNet@{a.tag}", f"DeepLabv3+@{a.tag}"
    init = str(plan.paths.model(cls_tag)) if a.backbone_init == "classifier" else a.backbone_init
    plan.classifier(cls_tag, method)
    cams = plan.cams(cls_tag, method, "train_aug")
    aff_labels = affinity_label_name(cams, 0.40, 0.10)
    plan.add("affinity labels", "make_affinity_labels.py",
             flags(experiment_name=cams, domain="train_aug", fg_threshold="0.40", bg_threshold="0.10") + common,
             plan.predicted(aff_labels, "train_aug", (".png",)))
    plan.add("AffinityNet", "train_affinitynet.py",
             flags(architecture=a.architecture, pretrained=init, tag=aff_tag, label_name=aff_labels)
             + plan.training_flags(a.aff_epochs), plan.trained(aff_tag), aff_tag)
    rw = rw_name(aff_tag, "train_aug", 10, 8)
    plan.add("random walk", "inference_rw.py",
             flags(architecture=a.architecture, model_name=aff_tag, cam_dir=cams, domain="train_aug") + common,
             plan.predicted(rw, "train_aug", (".npz", ".npy")))
    pseudo = pseudo_label_name(rw, 1)
    plan.add("pseudo labels", "make_pseudo_labels.py",
             flags(experiment_name=rw, domain="train_aug", threshold="0.35", crf_iteration=1) + common,
             plan.predicted(pseudo, "train_aug", (".png",)))
    plan.add("DeepLabv3+", "train_segmentation.py",
             flags(backbone=a.architecture, pretrained=init, mode="fix", use_gn="True", tag=seg_tag,
                   label_name=pseudo) + plan.training_flags(a.seg_epochs), plan.trained(seg_tag), seg_tag)
    predictions = {}
    for domain in ("val", "train"):  # train: the report's last column
        predictions[domain] = segmentation_name(seg_tag, domain, a.scales, 10)
        plan.add(f"segmentation {domain}", "inference_segmentation.py",
                 flags(backbone=a.architecture, mode="fix", use_gn="True", tag=seg_tag, domain=domain,
                       scale=a.scales, iteration=10) + common,
                 plan.predicted(predictions[domain], domain, (".png",)))
    plan.evaluate("CAM", cams, "npy", "train")
    plan.evaluate("CAM+RW", rw, "rw", "train")
    plan.evaluate("CAM+RW+dCRF", pseudo, "png", "train")
    plan.evaluate("DeepLabv3+ val", predictions["val"], "png", "val")
    plan.report = flags(tag=a.tag, data_dir=a.data_dir, domain="train", cam_dir=cams, rw_dir=rw,
                        pseudo_dir=pseudo, prediction_dir=predictions["train"])
    return plan


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


def evaluate(title, name, mode, domain, args):
    gt_dir = pathlib.Path(args.data_dir) / "SegmentationClass"
    run_stage(f"evaluate {title}", "evaluate.py",
              flags(experiment_name=name, domain=domain, mode=mode, data_dir=gt_dir, num_workers=args.num_workers))
    return read_json(ExperimentPaths().evaluation(name, domain))


def print_table(title, results, paper, paper_label):
    print(f"\n{title}")
    print(f"{'':<16}{'this run':>10}{paper_label:>30}")
    for name, result in results.items():
        print(f"{name:<16}{result['mIoU']:>10.2f}{paper[name]:>30.2f}")


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
    paths = ExperimentPaths()
    check_writable(paths.root, WRITABLE_ADVICE)
    if args.generate_toy:
        from wsss.data.toy_voc import generate

        check_writable(pathlib.Path(args.data_dir), "choose a --data_dir you can write, or run from another folder")
        generate(args.data_dir)
    plan = table1(args) if args.table == 1 else table2(args)
    timings = {}
    for stage in plan.stages:
        if stage.done():
            print(f"\n== {stage.name}: complete, skipped")
            continue
        resume = stage.training_tag and paths.training_state(stage.training_tag).is_file()
        timings[stage.name] = run_stage(stage.name, stage.script, stage.flags + (["--resume", "True"] if resume else []))
    results = {title: evaluate(title, *evaluation, args) for title, evaluation in plan.evaluations.items()}
    summary = paths.evaluation(args.tag, f"table{args.table}")
    write_json(summary, {"preset": args.preset, **{title: result["mIoU"] for title, result in results.items()}})
    if args.table == 1:
        print_table("Table 1 (mIoU %): CAM quality on train by training loss", results,
                    {TABLE1_NAMES[k]: v for k, v in PAPER_TABLE1.items()}, "paper (ResNet-50, VOC)")
    else:
        evaluations = [f"{title}={name}@{domain}" for title, (name, _, domain) in plan.evaluations.items()]
        run_stage("report", "make_report.py", plan.report + ["--evaluations", *evaluations])
        print_table("Table 2 (mIoU %): pseudo-label quality on train, DeepLabv3+ on val", results,
                    PAPER_TABLE2, "paper (ResNeSt-101, VOC)")
        print(f"\nreport: {paths.report(args.tag) / 'samples.png'}, {paths.report(args.tag) / 'class_iou.png'}")
    if timings:
        print("\nstage times (s): " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in timings.items()))
    print(f"results: {summary}\ntotal time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    run_script(main, build_parser())
