from wsss.utils import paths


def test_names_of_the_published_command_lines():
    cams = paths.cam_name("ResNeSt101@Puzzle@optimal", "train_aug", "0.5,1.0,1.5,2.0")
    assert cams == "ResNeSt101@Puzzle@optimal@train@scale=0.5,1.0,1.5,2.0"
    assert paths.affinity_label_name(cams, 0.40, 0.10) == \
        "ResNeSt101@Puzzle@optimal@train@scale=0.5,1.0,1.5,2.0@aff_fg=0.40_bg=0.10"
    rw = paths.rw_name("AffinityNet@ResNeSt-101@Puzzle", "train_aug", 10, 8)
    assert rw == "AffinityNet@ResNeSt-101@Puzzle@train@beta=10@exp_times=8@rw"
    assert paths.pseudo_label_name(rw, 1) == "AffinityNet@ResNeSt-101@Puzzle@train@beta=10@exp_times=8@rw@crf=1"
    assert paths.segmentation_name("DeepLabv3+@ResNeSt-101@Fix@GN", "val", "0.5,1.0,1.5,2.0", 10) == \
        "DeepLabv3+@ResNeSt-101@Fix@GN@val@scale=0.5,1.0,1.5,2.0@iteration=10"


def test_domain_words():
    assert paths.cam_name("t", "val", "1.0") == "t@val@scale=1.0"
    assert paths.cam_name("t", "test", "1.0") == "t@val@scale=1.0"
    assert paths.segmentation_name("t", "test", "1.0", 0) == "t@test@scale=1.0@iteration=0"
    assert paths.segmentation_name("t", "train_aug", "1.0", 0) == "t@train@scale=1.0@iteration=0"
    assert paths.affinity_label_name("e", 0.3, 0.05) == "e@aff_fg=0.30_bg=0.05"


def test_paths():
    layout = paths.ExperimentPaths()
    assert str(layout.model("a@b")) == "experiments/models/a@b.pth"
    assert str(layout.log("a")) == "experiments/logs/a.txt"
    assert str(layout.metrics("a")) == "experiments/data/a.json"
    assert str(layout.tensorboard("a")) == "experiments/tensorboards/a"
    assert str(layout.predictions("x")) == "experiments/predictions/x"


def test_pred_dir_moves_only_the_prediction_folders():
    layout = paths.ExperimentPaths(pred_dir="/data/preds/")
    assert str(layout.predictions("x")) == "/data/preds/x"
    assert str(layout.model("a")) == "experiments/models/a.pth"
