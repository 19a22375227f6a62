"""Run the whole pipeline by chaining the published stage scripts, then print the paper's Table 2.

Each stage's command line is printed before it runs, so it can be copied and tweaked. A stage
whose outputs are complete is skipped (a training run is complete when its metric JSON says so;
an inference stage when every listed image has its file), so an interrupted run continues.

Defaults run the embedded toy dataset on CPU with the small backbone; for VOC on GPUs, e.g.
  python3 run_pipeline.py --data_dir $D --architecture resnest101 --pretrained imagenet \
      --tag ResNeSt101 --image_size 512 --min_image_size 320 --max_image_size 640 --batch_size 32 \
      --cls_epochs 15 --aff_epochs 3 --seg_epochs 50 --scales 0.5,1.0,1.5,2.0 --generate_toy False
"""
import argparse
import json
import pathlib
import shlex
import subprocess
import sys

from core.backbones import BACKBONES
from tools.cli import StageError, run_script, scales_type, str2bool
from tools.files import write_json
from tools.experiment import ExperimentPaths, affinity_label_name, cam_name, pseudo_label_name, rw_name, segmentation_name
from tools.voc import read_image_ids

REPOSITORY = pathlib.Path(__file__).resolve().parent


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", type=str, default="toy_voc", help="VOC2012-format folder")
    parser.add_argument("--generate_toy", type=str2bool, default=True,
                        help="generate the toy dataset at --data_dir first (skipped when it is already there)")
    parser.add_argument("--architecture", type=str, default="resnet_mini", choices=sorted(BACKBONES),
                        help="backbone of the classifier, AffinityNet and DeepLabv3+")
    parser.add_argument("--pretrained", type=str, default="none", help="imagenet, none or a weight file")
    parser.add_argument("--tag", type=str, default="Toy", help="prefix of the runs' tags")
    parser.add_argument("--batch_size", type=int, default=16, help="batch size of every trainer")
    parser.add_argument("--image_size", type=int, default=128, help="training crop size")
    parser.add_argument("--min_image_size", type=int, default=96, help="min long side of the random resize")
    parser.add_argument("--max_image_size", type=int, default=192, help="max long side of the random resize")
    parser.add_argument("--cls_epochs", type=int, default=6, help="classifier epochs")
    parser.add_argument("--aff_epochs", type=int, default=2, help="AffinityNet epochs")
    parser.add_argument("--seg_epochs", type=int, default=4, help="DeepLabv3+ epochs")
    parser.add_argument("--alpha", type=float, default=4.0, help="puzzle reconstruction-loss weight")
    parser.add_argument("--scales", type=scales_type, default="1.0,2.0", help="CAM and segmentation inference scales")
    parser.add_argument("--num_workers", type=int, default=2, help="worker processes of every stage")
    return parser


def sizes(args):
    return ["--batch_size", args.batch_size, "--image_size", args.image_size,
            "--min_image_size", args.min_image_size, "--max_image_size", args.max_image_size]


def stages(args):
    """(name, script, flags, done?) of the nine stages, with the published flags."""
    paths = ExperimentPaths()
    data = ["--data_dir", args.data_dir]
    common = ["--num_workers", args.num_workers]
    cls_tag, aff_tag, seg_tag = f"{args.tag}@Puzzle", f"AffinityNet@{args.tag}", f"DeepLabv3+@{args.tag}"
    cams = cam_name(cls_tag, "train_aug", args.scales)
    aff_labels = affinity_label_name(cams, 0.40, 0.10)
    rw = rw_name(aff_tag, "train_aug", 10, 8)
    pseudo = pseudo_label_name(rw, 1)
    seg = segmentation_name(seg_tag, "val", args.scales, 10)

    def trained(tag):
        path = paths.metrics(tag)
        return path.is_file() and json.loads(path.read_text()).get("finished", False)

    def predicted(name, domain, suffixes):
        folder = paths.predictions(name)
        return folder.is_dir() and all(any((folder / f"{i}{s}").exists() for s in suffixes)
                                       for i in read_image_ids(domain, args.data_dir))

    return [
        ("classifier", "train_classification_with_puzzle.py",
         ["--architecture", args.architecture, "--pretrained", args.pretrained, "--re_loss_option", "masking",
          "--re_loss", "L1_Loss", "--alpha_schedule", "0.50", "--alpha", args.alpha, "--tag", cls_tag,
          "--max_epoch", args.cls_epochs, *sizes(args), *common, *data], lambda: trained(cls_tag)),
        ("CAMs", "inference_classification.py",
         ["--architecture", args.architecture, "--tag", cls_tag, "--domain", "train_aug", "--scales", args.scales,
          *common, *data], lambda: predicted(cams, "train_aug", (".npz", ".npy"))),
        ("affinity labels", "make_affinity_labels.py",
         ["--experiment_name", cams, "--domain", "train_aug", "--fg_threshold", "0.40", "--bg_threshold", "0.10",
          *common, *data], lambda: predicted(aff_labels, "train_aug", (".png",))),
        ("AffinityNet", "train_affinitynet.py",
         ["--architecture", args.architecture, "--pretrained", args.pretrained, "--tag", aff_tag,
          "--label_name", aff_labels, "--max_epoch", args.aff_epochs, *sizes(args), *common, *data],
         lambda: trained(aff_tag)),
        ("random walk", "inference_rw.py",
         ["--architecture", args.architecture, "--model_name", aff_tag, "--cam_dir", cams, "--domain", "train_aug",
          *common, *data], lambda: predicted(rw, "train_aug", (".npz", ".npy"))),
        ("pseudo labels", "make_pseudo_labels.py",
         ["--experiment_name", rw, "--domain", "train_aug", "--threshold", "0.35", "--crf_iteration", "1",
          *common, *data], lambda: predicted(pseudo, "train_aug", (".png",))),
        ("DeepLabv3+", "train_segmentation.py",
         ["--backbone", args.architecture, "--pretrained", args.pretrained, "--mode", "fix", "--use_gn", "True",
          "--tag", seg_tag, "--label_name", pseudo, "--max_epoch", args.seg_epochs, *sizes(args), *common, *data],
         lambda: trained(seg_tag)),
        ("segmentation", "inference_segmentation.py",
         ["--backbone", args.architecture, "--mode", "fix", "--use_gn", "True", "--tag", seg_tag,
          "--scale", args.scales, "--iteration", "10", *common, *data], lambda: predicted(seg, "val", (".png",))),
    ], {"CAM": (cams, "npy"), "CAM+RW": (rw, "rw"), "CAM+RW+dCRF": (pseudo, "png"), "DeepLabv3+ val": (seg, "png")}


def run_stage(name, script, flags):
    command = [sys.executable, str(REPOSITORY / script), *map(str, flags)]
    print(f"\n== {name}\n$ python3 {script} {shlex.join(map(str, flags))}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise StageError(f"stage '{name}' failed (command above); fix the cause and rerun: finished stages are skipped")


def evaluate(name, folder, mode, domain, args):
    flags = ["--experiment_name", folder, "--domain", domain, "--mode", mode,
             "--data_dir", pathlib.Path(args.data_dir) / "SegmentationClass", "--num_workers", args.num_workers]
    run_stage(f"evaluate {name}", "evaluate.py", flags)
    return json.loads((ExperimentPaths().root / "evaluations" / f"{folder}@{domain}.json").read_text())


def main(args):
    if args.generate_toy:
        from tools.toy_voc import generate

        generate(args.data_dir)
    plan, table = stages(args)
    for name, script, flags, done in plan:
        if done():
            print(f"\n== {name}: complete, skipped")
            continue
        run_stage(name, script, flags)
    results = {name: evaluate(name, folder, mode, "val" if name.endswith("val") else "train", args)
               for name, (folder, mode) in table.items()}
    print("\nTable 2 (mIoU %): pseudo-label quality on train, DeepLabv3+ on val")
    print(f"{'':<16}{'this run':>10}{'paper (ResNeSt-101, VOC)':>28}")
    for (name, result), paper in zip(results.items(), (61.85, 71.92, 72.46, 66.9)):
        print(f"{name:<16}{result['mIoU']:>10.2f}{paper:>28.2f}")
    summary = ExperimentPaths().root / "evaluations" / f"{args.tag}@table2.json"
    write_json(summary, {name: result["mIoU"] for name, result in results.items()})
    print(f"\nresults: {summary}")


if __name__ == "__main__":
    run_script(main, build_parser())
