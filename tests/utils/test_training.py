"""The shared training loop (wsss.utils.training.fit) on a toy regression model, run in a temporary
working directory: a non-finite loss stops the run, the checkpoint follows the best evaluation,
and a run stopped after an epoch and resumed ends where an uninterrupted run ends."""
import argparse

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from wsss.utils.cli import StageError, add_training_arguments
from wsss.utils.files import load_checkpoint, load_training_state, read_json, save_training_state
from wsss.utils.training import fit, set_seed, training_loader

pytestmark = pytest.mark.usefixtures("one_thread")

SAMPLES, BATCH = 8, 2
ITERATIONS_PER_EPOCH = SAMPLES // BATCH
MODEL_FILE = "experiments/models/toy.pth"
STATE_FILE = "experiments/models/toy.state.pth"
HISTORY_FILE = "experiments/data/toy.json"
LOG_FILE = "experiments/logs/toy.txt"


class ToyModel(nn.Module):
    """Dropout, so that a resumed run also needs the random generators of the stopped one; `steps`
    counts the optimiser steps in the weights, so an evaluation knows its epoch after a resume."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.dropout = nn.Dropout(0.5)
        self.out = nn.Linear(8, 1)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def forward(self, x):
        return self.out(self.dropout(torch.relu(self.hidden(x))))


def parse_args(*flags):
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    return parser.parse_args(["--tag", "toy", "--batch_size", str(BATCH), "--num_workers", "0", "--max_epoch", "3",
                              *flags])


def dataset():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(SAMPLES, 4, generator=generator)
    return TensorDataset(inputs, inputs.sum(dim=1, keepdim=True))


def build(seed=0):
    set_seed(seed)
    model = ToyModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, optimizer


def mse_step(model, batch, iteration):
    inputs, targets = batch
    model.steps += 1
    return {"total": nn.functional.mse_loss(model(inputs), targets), "alpha": 0.5}


def scripted_evaluation(scores, seen=None):
    """`evaluate` giving scores[epoch − 1]; it keeps a copy of the weights it saw in `seen`."""
    def evaluate(model):
        epoch = int(model.steps) // ITERATIONS_PER_EPOCH
        if seen is not None:
            seen.append({name: tensor.clone() for name, tensor in model.state_dict().items()})
        return {"mIoU": scores[epoch - 1]}, {"pictures": torch.zeros(1, 4, 4, 3, dtype=torch.uint8)}
    return evaluate


def run(args, model, optimizer, step=mse_step, evaluate=None):
    return fit(args, model, training_loader(dataset(), args, torch.device("cpu")), optimizer, step, evaluate)


def assert_same_weights(actual, expected):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


def without_times(records):
    return [{key: value for key, value in record.items() if key != "time"} for record in records]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_loss_stops_the_run_before_the_step(tmp_path, monkeypatch, bad):
    monkeypatch.chdir(tmp_path)
    model, optimizer = build()
    stop_at = ITERATIONS_PER_EPOCH + 2  # the third step of epoch 2, after the checkpoint of epoch 1
    before = {}

    def step(model, batch, iteration):
        losses = mse_step(model, batch, iteration)
        if iteration + 1 == stop_at:
            before.update(weights={name: tensor.clone() for name, tensor in model.state_dict().items()},
                          checkpoint=(tmp_path / MODEL_FILE).read_bytes())
            losses["total"] = losses["total"] * bad
        return losses

    with pytest.raises(StageError) as error:
        run(parse_args(), model, optimizer, step)
    message = str(error.value)
    assert "\n" not in message
    assert message == (f"loss is {bad} at iteration {stop_at}; training stopped and {MODEL_FILE} left as it "
                       "was; lower --lr or check the labels")
    assert_same_weights(model.state_dict(), before["weights"])  # no step with the bad loss
    assert all(torch.isfinite(tensor).all() for tensor in model.state_dict().values())
    assert (tmp_path / MODEL_FILE).read_bytes() == before["checkpoint"]
    assert load_training_state(tmp_path / STATE_FILE)["epoch"] == 1


def test_the_checkpoint_holds_the_weights_of_the_best_evaluation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, optimizer = build()
    scores, seen, on_disk = [10.0, 30.0, 30.0, 20.0], [], []
    evaluate = scripted_evaluation(scores, seen)

    def evaluate_and_look(model):
        """Before each evaluation: the weights on disk are those of the best evaluation so far."""
        path = tmp_path / MODEL_FILE
        on_disk.append(load_checkpoint(path) if path.exists() else None)
        return evaluate(model)

    best = run(parse_args("--max_epoch", "4"), model, optimizer, evaluate=evaluate_and_look)
    assert best == 30.0
    assert on_disk[0] is None
    assert_same_weights(on_disk[1], seen[0])
    assert_same_weights(on_disk[2], seen[1])  # improved from 10 to 30
    assert_same_weights(on_disk[3], seen[1])  # an equal score does not replace it
    assert_same_weights(load_checkpoint(tmp_path / MODEL_FILE), seen[1])  # nor does a lower one
    assert not torch.equal(seen[3]["out.weight"], seen[1]["out.weight"])  # training went on meanwhile
    history = read_json(tmp_path / HISTORY_FILE)
    assert [record["mIoU"] for record in history["validation"]] == scores
    assert [record["best_mIoU"] for record in history["validation"]] == [10.0, 30.0, 30.0, 30.0]
    assert history["finished"] is True
    saved = [line for line in (tmp_path / LOG_FILE).read_text().splitlines() if "evaluation" in line]
    assert ["(saved)" in line for line in saved] == [True, True, False, False]
    state = load_training_state(tmp_path / STATE_FILE)
    assert (state["epoch"], state["iteration"], state["best_mIoU"]) == (4, 4 * ITERATIONS_PER_EPOCH, 30.0)


def test_without_evaluation_every_epoch_is_saved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, optimizer = build()
    assert run(parse_args("--max_epoch", "2"), model, optimizer) is None
    assert_same_weights(load_checkpoint(tmp_path / MODEL_FILE), model.state_dict())
    history = read_json(tmp_path / HISTORY_FILE)
    assert [record["iteration"] for record in history["train"]] == list(range(1, 2 * ITERATIONS_PER_EPOCH + 1))
    assert history["validation"] == []
    assert all(record["alpha"] == 0.5 for record in history["train"])


class Interrupted(Exception):
    pass


def test_a_resumed_run_ends_with_the_weights_and_records_of_an_uninterrupted_run(tmp_path, monkeypatch):
    scores = [50.0, 40.0, 45.0]  # epoch 1 stays the best: the resumed run must not save epochs 2 and 3
    (tmp_path / "whole").mkdir()
    monkeypatch.chdir(tmp_path / "whole")
    model, optimizer = build()
    assert run(parse_args(), model, optimizer, evaluate=scripted_evaluation(scores)) == 50.0
    whole_weights = model.state_dict()
    whole_history = read_json(tmp_path / "whole" / HISTORY_FILE)

    (tmp_path / "stopped").mkdir()
    monkeypatch.chdir(tmp_path / "stopped")
    model, optimizer = build()

    def step_then_stop(model, batch, iteration):
        if iteration == ITERATIONS_PER_EPOCH + 2:  # two steps (logged, with dropout drawn) into epoch 2
            raise Interrupted
        return mse_step(model, batch, iteration)

    with pytest.raises(Interrupted):
        run(parse_args(), model, optimizer, step_then_stop, scripted_evaluation(scores))
    assert len(read_json(tmp_path / "stopped" / HISTORY_FILE)["train"]) == ITERATIONS_PER_EPOCH + 2
    epoch_one = load_checkpoint(tmp_path / "stopped" / MODEL_FILE)

    model, optimizer = build(seed=7)  # other initial weights: everything must come from the state
    assert run(parse_args("--resume"), model, optimizer, evaluate=scripted_evaluation(scores)) == 50.0
    assert_same_weights(model.state_dict(), whole_weights)
    assert_same_weights(load_checkpoint(tmp_path / "stopped" / MODEL_FILE), epoch_one)
    assert_same_weights(epoch_one, load_checkpoint(tmp_path / "whole" / MODEL_FILE))
    history = read_json(tmp_path / "stopped" / HISTORY_FILE)
    for kind in ("train", "validation"):  # the stopped run's records after epoch 1 are dropped
        assert without_times(history[kind]) == without_times(whole_history[kind]), kind
    assert history["args"]["resume"] is True and history["finished"] is True
    log = (tmp_path / "stopped" / LOG_FILE).read_text()
    first_evaluation = log.index("evaluation iteration=4, epoch=1")
    resumed = log.index(f"resumed from {STATE_FILE} after epoch 1 (iteration {ITERATIONS_PER_EPOCH})")
    assert first_evaluation < resumed < log.index("evaluation iteration=12, epoch=3")
    state = load_training_state(tmp_path / "stopped" / STATE_FILE)
    assert (state["epoch"], state["iteration"], state["best_mIoU"]) == (3, 3 * ITERATIONS_PER_EPOCH, 50.0)


def test_resuming_with_other_flags_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, optimizer = build()
    run(parse_args("--max_epoch", "1"), model, optimizer)
    with pytest.raises(StageError, match=r"cannot resume, the run differs from the stopped one \(max_epoch 1 → 2\)"):
        run(parse_args("--max_epoch", "2", "--resume"), *build())


def with_eval_images(args, count):
    args.eval_images = count  # the flag of the trainers that evaluate (cli.add_eval_images_argument)
    return args


def test_resuming_with_another_evaluated_image_count_is_refused(tmp_path, monkeypatch):
    """The restored best mIoU was measured on the stopped run's evaluation images."""
    monkeypatch.chdir(tmp_path)
    run(with_eval_images(parse_args("--max_epoch", "1"), 5), *build(), evaluate=scripted_evaluation([0.5]))
    with pytest.raises(StageError, match=r"cannot resume, the run differs from the stopped one \(eval_images 5 → 0\)"):
        run(with_eval_images(parse_args("--max_epoch", "1", "--resume"), 0), *build(),
            evaluate=scripted_evaluation([0.5]))


def test_a_state_saved_before_eval_images_existed_resumes_as_every_image(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run(parse_args("--max_epoch", "2"), *build())
    path = tmp_path / "experiments" / "models" / "toy.state.pth"
    state = load_training_state(path)
    del state["run"]["eval_images"]
    state["epoch"], state["iteration"] = 1, ITERATIONS_PER_EPOCH
    save_training_state(state, path)
    run(with_eval_images(parse_args("--max_epoch", "2", "--resume"), 0), *build())
    with pytest.raises(StageError, match=r"\(eval_images 0 → 3\)"):
        run(with_eval_images(parse_args("--max_epoch", "2", "--resume"), 3), *build())
