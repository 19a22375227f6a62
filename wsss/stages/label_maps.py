"""The label-making stages (make_affinity_labels.py, make_pseudo_labels.py): class maps of one kind
in, one label PNG per image out, each made by a CPU function in worker processes."""
import functools

import numpy as np

from wsss.data.dataset_registry import add_dataset_argument, get_dataset
from wsss.utils.cli import add_domain_argument, add_shard_argument, str2bool
from wsss.utils.errors import StageError
from wsss.utils.files import check_map_files, load_map_array, save_label_png
from wsss.utils.paths import ExperimentPaths
from wsss.utils.per_image import plan_outputs, run_per_image


def add_arguments(parser, kind):
    """The flags both label stages share; `kind` is the MapKind they read."""
    parser.add_argument("--experiment_name", type=str, required=True, help=f"the {kind.noun} folder under --pred_dir")
    add_domain_argument(parser, "train")
    parser.add_argument("--data_dir", type=str, default="../VOCtrainval_11-May-2012/", help="dataset folder (--dataset's layout)")
    add_dataset_argument(parser)
    parser.add_argument("--pred_dir", type=str, default="./experiments/predictions/", help="where prediction folders are")
    parser.add_argument("--num_workers", type=int, default=4, help="worker processes for the CRF")
    add_shard_argument(parser)
    parser.add_argument("--allow_pickle", type=str2bool, default=False,
                        help=f"read published pickled .npy {kind.noun} files (unpickling can run code: trusted "
                             "files only)")


def label_one(image_id, data, num_classes, map_dir, out_dir, kind, make_label, allow_pickle):
    image = np.array(data.image(image_id))
    keys, maps = load_map_array(map_dir, image_id, kind.label_array, image.shape[:2], num_classes, allow_pickle)
    save_label_png(out_dir / f"{image_id}.png", make_label(image, maps, keys))


def make_labels(args, kind, out_name, make_label):
    """`make_label(image, maps, keys)` → uint8 label map, for every listed image whose label is missing,
    from the `kind` maps of `--experiment_name`, into `{pred_dir}/{out_name}/`. Returns that folder."""
    paths = ExperimentPaths(pred_dir=args.pred_dir)
    benchmark = get_dataset(args.dataset)
    data = benchmark.open(args.data_dir)
    map_dir = paths.predictions(args.experiment_name)
    if not map_dir.is_dir():
        raise StageError(f"{map_dir}: {kind.noun} folder not found; run {kind.producer} first or check "
                         "--experiment_name")
    out_dir = paths.predictions(out_name)
    ids = plan_outputs(out_dir, benchmark.image_ids(args.domain, args.data_dir), args.shard)
    data.check_images(ids, args.domain)
    check_map_files(map_dir, ids, kind.noun, kind.producer)
    work = functools.partial(label_one, data=data, num_classes=benchmark.num_classes, map_dir=map_dir, out_dir=out_dir, kind=kind, make_label=make_label,
                             allow_pickle=args.allow_pickle)
    run_per_image(work, ids, out_dir, args.num_workers)
    return out_dir
