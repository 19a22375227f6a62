"""SILOP step 4: the CAMs multiplied by the PerimeterFit masks of both segmentations.

Per listed image: CAM_c ← CAM_c · (1 + M_slic · M_quick) with the masks binarised, for `hr_cam` and
for the stride-4 `cam` (masks resized bilinearly and, as published, not binarised again:
--rebinarise True does). Written as this pipeline's CAM files, {output_dir}/{id}.npz (keys, cam,
hr_cam), so make_affinity_labels.py --experiment_name Combined_CAM reads them. Images whose file
exists are skipped; --num_workers processes, --shard i/n or torchrun split the images.
  python3 Combine_PerimeterFit.py     # → ./experiments/predictions/Combined_CAM/
"""
import argparse

from wsss.data.dataset_registry import add_dataset_argument
from wsss.stages import perimeter_fit
from wsss.utils.cli import HelpFormatter, add_domain_argument, add_shard_argument, run_script, str2bool


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--cam_dir", type=str, default=perimeter_fit.PUBLISHED_CAM_DIR,
                        help="CAM folder (inference_classification.py)")
    parser.add_argument("--slic_dir", type=str, default=None,
                        help="slic PerimeterFit masks; unset: ./Dataset/PerimeterFit_slic/, as published")
    parser.add_argument("--quick_dir", type=str, default=None,
                        help="quick PerimeterFit masks; unset: ./Dataset/PerimeterFit_quick/, as published")
    parser.add_argument("--data_dir", type=str, default=perimeter_fit.PUBLISHED_DATA_DIR,
                        help="dataset folder (--dataset's layout: images for their sizes, the --domain list)")
    add_dataset_argument(parser)
    add_domain_argument(parser, "train_aug")
    parser.add_argument("--output_dir", type=str, default=perimeter_fit.PUBLISHED_COMBINED_DIR,
                        help="output folder of the combined CAM files")
    parser.add_argument("--rebinarise", type=str2bool, default=False,
                        help="binarise the masks again after resizing them for the stride-4 'cam' "
                             "(published: fractional multipliers along mask borders)")
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help="read published pickled .npy CAM files (unpickling can run code: trusted files only)")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes")
    add_shard_argument(parser)
    return parser


def main(args):
    out_dir = perimeter_fit.combine(args)
    print(f"combined CAMs in {out_dir}")


if __name__ == "__main__":
    run_script(main, build_parser())
