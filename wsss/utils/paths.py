"""Experiment names and the `experiments/` folder layout.

Each stage derives the name of its output folder from its flags; the next stage is given that
name on its command line, so these functions must match the published ones character for character.
"""
import pathlib


def domain_word(domain):
    """`train` for any domain whose name contains "train", else `val` (published rule)."""
    return "train" if "train" in domain else "val"


def cam_name(tag, domain, scales):
    """inference_classification: `{tag}@{train|val}@scale={scales}` (scales as typed)."""
    return f"{tag}@{domain_word(domain)}@scale={scales}"


def affinity_label_name(experiment_name, fg_threshold, bg_threshold):
    """make_affinity_labels: `{experiment_name}@aff_fg={fg:.2f}_bg={bg:.2f}`."""
    return f"{experiment_name}@aff_fg={fg_threshold:.2f}_bg={bg_threshold:.2f}"


def rw_name(model_name, domain, beta, exp_times):
    """inference_rw: `{model_name}@{train|val}@beta={beta}@exp_times={exp_times}@rw`."""
    return f"{model_name}@{domain_word(domain)}@beta={beta}@exp_times={exp_times}@rw"


def pseudo_label_name(experiment_name, crf_iteration):
    """make_pseudo_labels: `{experiment_name}@crf={crf_iteration}`."""
    return f"{experiment_name}@crf={crf_iteration}"


def segmentation_name(tag, domain, scales, iteration):
    """inference_segmentation: the domain itself for non-train domains (`val`, `test`)."""
    word = "train" if "train" in domain else domain
    return f"{tag}@{word}@scale={scales}@iteration={iteration}"


WRITABLE_ADVICE = "run from a directory where experiments/ can be written, or make it writable"


class ExperimentPaths:
    """The published layout under `./experiments/` (relative to the working directory).

    `pred_dir` (the label and map stages' `--pred_dir`) moves the prediction folders elsewhere;
    by default they are `experiments/predictions/`.
    """

    def __init__(self, root="experiments", pred_dir=None):
        self.root = pathlib.Path(root)
        self.predictions_root = pathlib.Path(pred_dir) if pred_dir else self.root / "predictions"

    def model(self, tag):
        return self.root / "models" / f"{tag}.pth"

    def training_state(self, tag):
        return self.root / "models" / f"{tag}.state.pth"

    def log(self, tag):
        return self.root / "logs" / f"{tag}.txt"

    def metrics(self, tag):
        return self.root / "data" / f"{tag}.json"

    def tensorboard(self, tag):
        return self.root / "tensorboards" / tag

    def predictions(self, experiment_name):
        return self.predictions_root / experiment_name

    def evaluation(self, experiment_name, domain):
        """evaluate.py's result file."""
        return self.root / "evaluations" / f"{experiment_name}@{domain}.json"

    def report(self, tag):
        """make_report.py's folder of pictures."""
        return self.root / "reports" / tag

    def training_folders(self, tag):
        """The folders a training run writes into."""
        return [self.model(tag).parent, self.log(tag).parent, self.metrics(tag).parent, self.tensorboard(tag)]

    def check_training_writable(self, tag):
        """Stop before a training run does any work when one of its folders cannot be written."""
        from wsss.utils.files import check_writable

        for folder in self.training_folders(tag):
            check_writable(folder, WRITABLE_ADVICE)

    def make_dirs(self, tag):
        for folder in self.training_folders(tag):
            folder.mkdir(parents=True, exist_ok=True)
