"""The paths shared by CPU and GPU runs, on every available device (the `device` fixture: cpu, and
cuda when torch sees a GPU): each result is compared with a float64 computation on the CPU written
out step by step, so the CUDA half checks CUDA against the same reference as the CPU half.
scripts/gpu_check.sh runs the CUDA half (`-k cuda`) on a GPU machine."""
import argparse
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bench.dense_rw import dense_random_walk
from wsss.algorithms.affinity_labels import affinity_loss, affinity_pair_labels
from wsss.algorithms.cam import multiscale_cams, strided_size, strided_up_size
from wsss.algorithms.path_index import PathIndex
from wsss.algorithms.random_walk import normalise_rw, random_walk
from wsss.data.transforms import normalize
from wsss.methods import get_method
from wsss.methods.base import Schedule
from wsss.models.affinitynet import CANVAS, AffinityNet
from wsss.models.backbones import parameter_groups
from wsss.models.classifier import Classifier
from wsss.models.deeplab import DeepLabv3Plus
from wsss.utils.cli import add_training_arguments
from wsss.utils.device import AMP_DTYPES, autocast, grad_scaler, wrap_data_parallel
from wsss.utils.files import load_checkpoint, load_training_state, load_weights, save_checkpoint, save_training_state
from wsss.utils.labels import IGNORE_LABEL
from wsss.utils.optim import PolyOptimizer, build_groups, training_optimizer

CPU = torch.device("cpu")
FLOAT32 = dict(rtol=1e-4, atol=1e-5)  # float32 on any device against the float64 reference


def float64_copy(model):
    return copy.deepcopy(model).to(CPU).double()


def random_image(height, width, seed):
    """A smooth ramp with noise, uint8 RGB."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, width)[None, :, None] * np.ones((height, 1, 3))
    return Image.fromarray(np.clip(ramp + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8))


def scaled_input(image, scale):
    """The network input of one scale in float64: PIL bicubic to (round(w·s), round(h·s)), normalised."""
    width, height = image.size
    if scale != 1.0:
        image = image.resize((round(width * scale), round(height * scale)), Image.BICUBIC)
    return torch.from_numpy(normalize(image).transpose(2, 0, 1)).double()[None]


def flip_fused(function, x):
    """function(x) + flip(function(flip(x))), each pass on its own (the code batches the two)."""
    return function(x)[0] + function(x.flip(-1))[0].flip(-1)


def assert_close(actual, expected, **tolerance):
    actual = torch.as_tensor(actual).detach().to(CPU, torch.float64)
    expected = torch.as_tensor(expected).detach().to(CPU, torch.float64)
    torch.testing.assert_close(actual, expected, **(tolerance or FLOAT32))


def test_multiscale_cams_match_a_float64_reference(device, one_thread):
    torch.manual_seed(0)
    model = Classifier("resnet_mini", mode="normal", pretrained="none").eval()
    image = random_image(45, 37, seed=1)
    label = np.zeros(20, np.float32)
    label[[2, 7, 19]] = 1
    scales = [1.0, 0.5, 1.5]
    keys, cam, hr_cam = multiscale_cams(model.to(device), image, label, scales, device)

    reference = float64_copy(model)
    strided, high = 0, 0
    for scale in scales:
        cams = flip_fused(lambda x: torch.relu(reference(x, with_cam=True)[1]), scaled_input(image, scale))
        strided = strided + F.interpolate(cams[None], strided_size(45, 37), mode="bilinear", align_corners=False)[0]
        high = high + F.interpolate(cams[None], strided_up_size(45, 37), mode="bilinear", align_corners=False)[0]
    strided, high = strided[[2, 7, 19]], high[[2, 7, 19], :45, :37]
    strided = strided / (strided.amax(dim=(1, 2), keepdim=True) + 1e-5)
    high = high / (high.amax(dim=(1, 2), keepdim=True) + 1e-5)

    assert keys.tolist() == [0, 3, 8, 20]
    assert cam.dtype == hr_cam.dtype == np.float32 and cam.shape == (3, 12, 10) and hr_cam.shape == (3, 45, 37)
    assert float(cam.max()) > 0.99  # every present class has a non-zero map here: the test compares real values
    assert_close(cam, strided)
    assert_close(hr_cam, high)


def test_sparse_random_walk_matches_the_dense_formula(device, one_thread):
    generator = torch.Generator().manual_seed(0)
    cams = torch.rand(3, 9, 13, generator=generator)
    edge = torch.rand(9, 13, generator=generator) ** 3
    walk = random_walk(cams.to(device), edge.to(device), beta=10, exp_times=3)
    expected = dense_random_walk(cams.double(), edge.double(), beta=10, exp_times=3)
    assert walk.device.type == device.type and walk.dtype == torch.float32
    assert_close(walk, expected, rtol=1e-5, atol=1e-6)
    assert_close(normalise_rw(walk), normalise_rw(expected), rtol=0, atol=1e-6)


def test_affinitynet_edge_map_matches_a_float64_reference(device, one_thread):
    torch.manual_seed(0)
    model = AffinityNet("resnet_mini", pretrained="none", path_index=PathIndex(10, (20, 20))).eval()
    image = torch.randn(3, 38, 53)
    edge = model.to(device).edge_map(image.to(device))

    reference = float64_copy(model)
    rows, cols = strided_size(38, 53)

    def padded_edge(x):
        padded = F.pad(x.double()[None], [0, CANVAS - x.shape[2], 0, CANVAS - x.shape[1]])
        return reference(padded)[0, 0, :rows, :cols]

    with torch.no_grad():
        expected = torch.sigmoid(padded_edge(image) / 2 + padded_edge(image.flip(-1)).flip(-1) / 2)
    assert edge.device.type == device.type and edge.shape == (10, 14)
    assert float(expected.std()) > 1e-3  # not a constant map
    assert_close(edge, expected)


def test_deeplab_probabilities_match_a_float64_reference(device, one_thread):
    from wsss.stages.segmentation import predict_probabilities

    torch.manual_seed(0)
    model = DeepLabv3Plus("resnet_mini", num_classes=21, mode="fix", use_gn=True, pretrained="none").eval()
    image = random_image(38, 50, seed=2)
    scales = [1.0, 0.5]
    probabilities = predict_probabilities(model.to(device), image, scales, device)

    reference = float64_copy(model)
    logits = 0
    for scale in scales:
        fused = flip_fused(reference, scaled_input(image, scale))
        logits = logits + F.interpolate(fused[None], (38, 50), mode="bilinear", align_corners=False)[0]
    expected = torch.softmax(logits, dim=0)
    assert probabilities.dtype == np.float32 and probabilities.shape == (21, 38, 50)
    assert_close(probabilities, expected, rtol=1e-4, atol=1e-6)


# --- one training step of each trainer --------------------------------------------------------------


def puzzle_args():
    parser = argparse.ArgumentParser()
    add_training_arguments(parser)
    method = get_method("puzzle")
    method.add_arguments(parser)
    return method, parser.parse_args(["--architecture", "resnet_mini", "--pretrained", "none", "--image_size", "64",
                                      "--alpha", "4", "--max_epoch", "1"])


def classifier_batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    labels = torch.zeros(2, 20)
    labels[0, [1, 14]] = labels[1, 6] = 1
    return images, labels


def classifier_step(model, device, dtype, amp="off", channels_last=False, scaler=None):
    """The classifier trainer's first iteration (method registry's puzzle losses, the four published
    parameter groups, autocast and the grad scaler as the training loop uses them); returns the loss
    terms, the stepped model, its optimiser and the scaler (None without one)."""
    method, args = puzzle_args()
    model = model.to(device, dtype)
    images, labels = (tensor.to(device, dtype) for tensor in classifier_batch())
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = training_optimizer(build_groups(parameter_groups(model), args.lr, args.wd), args, 10)
    scaler = scaler if scaler is not None else grad_scaler(device, amp)
    with autocast(device, amp):
        losses = method.step_losses(model, (images, labels), args, Schedule(3, 10, 2))
    optimizer.zero_grad()
    if scaler is None:
        losses["total"].backward()
        optimizer.step()
    else:
        scaler.scale(losses["total"]).backward()
        scaler.step(optimizer)
        scaler.update()
    return losses, model, optimizer, scaler


def assert_same_parameters(model, reference, **tolerance):
    expected = dict(reference.named_parameters())
    for name, parameter in model.named_parameters():
        assert_close(parameter, expected[name], **tolerance)


def assert_moved(model, initial, at_least=1e-3):
    """The step changed the weights by more than the comparison's tolerance."""
    before = dict(initial.named_parameters())
    change = max(float((parameter.detach() - before[name].detach()).abs().max())
                 for name, parameter in model.named_parameters())
    assert change > at_least


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_classifier_step_matches_a_float64_step(device, memory_format, one_thread):
    torch.manual_seed(0)
    model = get_method("puzzle").build_model(puzzle_args()[1], "none", 20)
    reference, initial = float64_copy(model), float64_copy(model)
    losses, model, _, _ = classifier_step(model, device, torch.float32, channels_last=memory_format == "channels_last")
    expected, reference, _, _ = classifier_step(reference, CPU, torch.float64)
    assert losses["alpha"] == expected["alpha"] == pytest.approx(4 * 3 / (10 * 0.5))
    for name in ("class_loss", "p_class_loss", "re_loss", "total"):
        assert losses[name].device.type == device.type
        assert_close(losses[name], expected[name])
    assert expected["re_loss"].item() > 0 and expected["p_class_loss"].item() > 0
    assert_same_parameters(model, reference)
    assert_moved(reference, initial)


def test_affinitynet_step_matches_a_float64_step(device, one_thread):
    torch.manual_seed(0)
    path_index = PathIndex(10, (20, 20))
    model = AffinityNet("resnet_mini", pretrained="none", path_index=path_index)
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 80, 80, generator=generator)
    labels = torch.randint(0, 3, (2, 20, 20), generator=generator)
    labels[:, :, :4] = IGNORE_LABEL

    def step(model, device, dtype):
        model = model.to(device, dtype).train()
        groups = [{"params": model.trainable_parameters(), "lr": 0.1, "weight_decay": 1e-4}]
        optimizer = PolyOptimizer(groups, 0.1, 1e-4, max_step=10)
        _, affinities = model(images.to(device, dtype), with_affinity=True)
        masks = affinity_pair_labels(labels.to(device), path_index.src_indices.to(device),
                                     path_index.dst_indices.to(device))
        loss, terms = affinity_loss(affinities, *masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss, terms, model

    reference, initial = float64_copy(model), float64_copy(model)
    loss, terms, model = step(model, device, torch.float32)
    expected_loss, expected_terms, reference = step(reference, CPU, torch.float64)
    assert loss.device.type == device.type
    assert_close(loss, expected_loss)
    for name in ("bg", "fg", "neg"):
        assert expected_terms[name].item() > 0
        assert_close(terms[name], expected_terms[name])
    assert_same_parameters(model, reference)
    assert_moved(reference, initial)


def test_deeplab_step_matches_a_float64_step(device, one_thread):
    from wsss.stages.segmentation import segmentation_loss

    torch.manual_seed(0)
    model = DeepLabv3Plus("resnet_mini", num_classes=21, mode="fix", use_gn=True, pretrained="none")
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, 64, 64, generator=generator)
    labels = torch.randint(0, 21, (2, 64, 64), generator=generator)
    labels[0, :20] = IGNORE_LABEL

    def step(model, device, dtype):
        model = model.to(device, dtype).train()
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.eval()  # the two devices draw different dropout masks: compare the rest of the step
        optimizer = PolyOptimizer(build_groups(parameter_groups(model), 0.007, 4e-5), 0.007, 4e-5, max_step=10)
        loss = segmentation_loss(model(images.to(device, dtype)), labels.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss, model

    reference, initial = float64_copy(model), float64_copy(model)
    loss, model = step(model, device, torch.float32)
    expected, reference = step(reference, CPU, torch.float64)
    assert loss.device.type == device.type and expected.item() > 1
    assert_close(loss, expected)
    assert_same_parameters(model, reference)
    assert_moved(reference, initial)


# --- mixed precision -------------------------------------------------------------------------------

# measured on the CPU (bf16: update cosine 0.98, loss 6e-4 relative; fp16: 0.998, 3e-4), with margin
AMP_TOLERANCE = {"bf16": dict(loss=1e-2, re_loss=0.1, cosine=0.9, norm=0.1),
                 "fp16": dict(loss=5e-3, re_loss=0.03, cosine=0.98, norm=0.03)}


def flat_update(model, initial):
    before = dict(initial.named_parameters())
    return torch.cat([(parameter.detach().to(CPU, torch.float64) - before[name].detach()).flatten()
                      for name, parameter in model.named_parameters()])


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_step_follows_the_float32_step(device, amp, one_thread):
    """`--amp`: the network runs in the low precision under autocast, the losses stay float32 and
    close to float32's, fp16 on CUDA scales the loss (a step whose scaled gradients overflow is
    skipped and the scale halved, as the training loop's scaler does), and the step moves the
    weights like the float32 step."""
    torch.manual_seed(0)
    model = get_method("puzzle").build_model(puzzle_args()[1], "none", 20)
    initial = float64_copy(model)
    with torch.no_grad(), autocast(device, amp):
        _, features = copy.deepcopy(model).to(device)(classifier_batch()[0].to(device), with_cam=True)
    assert features.dtype == AMP_DTYPES[amp]  # autocast is in effect
    expected, reference, _, _ = classifier_step(copy.deepcopy(model), device, torch.float32)

    scaler = grad_scaler(device, amp)
    assert (scaler is not None) == (amp == "fp16" and device.type == "cuda")
    for _ in range(8):
        scale = None if scaler is None else scaler.get_scale()
        losses, model, _, scaler = classifier_step(model, device, torch.float32, amp, scaler=scaler)
        if scaler is None or scaler.get_scale() == scale:
            break
        assert scaler.get_scale() == scale / 2 and not flat_update(model, initial).any()  # skipped step
    tolerance = AMP_TOLERANCE[amp]
    for name in ("class_loss", "p_class_loss", "total"):
        assert losses[name].dtype == torch.float32
        assert losses[name].item() == pytest.approx(expected[name].item(), rel=tolerance["loss"])
    assert losses["re_loss"].item() == pytest.approx(expected["re_loss"].item(), rel=tolerance["re_loss"])
    update, expected_update = flat_update(model, initial), flat_update(reference, initial)
    assert float(F.cosine_similarity(update, expected_update, dim=0)) > tolerance["cosine"]
    assert float(update.norm() / expected_update.norm()) == pytest.approx(1, abs=tolerance["norm"])


# --- checkpoints ----------------------------------------------------------------------------------


def test_checkpoints_round_trip_between_the_device_and_the_cpu(device, tmp_path, one_thread):
    """Weights and training state saved from the device load on the CPU (as tensors on the CPU) and
    back on the device, unchanged; the optimiser's momentum follows its parameters' device."""
    torch.manual_seed(0)
    _, model, optimizer, _ = classifier_step(get_method("puzzle").build_model(puzzle_args()[1], "none", 20), device,
                                             torch.float32)
    saved = {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()}
    save_checkpoint(model.state_dict(), tmp_path / "device.pth")
    save_training_state({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 1},
                        tmp_path / "device.state.pth")

    on_cpu = load_weights(Classifier("resnet_mini", mode="normal", pretrained="none"), tmp_path / "device.pth")
    assert all(tensor.device.type == "cpu" for tensor in load_checkpoint(tmp_path / "device.pth").values())
    for name, tensor in on_cpu.state_dict().items():
        assert tensor.device.type == "cpu" and torch.equal(tensor, saved[name]), name
    save_checkpoint(on_cpu.state_dict(), tmp_path / "cpu.pth")
    back = load_weights(Classifier("resnet_mini", mode="normal", pretrained="none").to(device), tmp_path / "cpu.pth")
    for name, tensor in back.state_dict().items():
        assert tensor.device.type == device.type and torch.equal(tensor.cpu(), saved[name]), name
    images = classifier_batch()[0].to(device)
    with torch.no_grad():  # same weights, same device: the same outputs
        assert_close(back.eval()(images), model.eval()(images), rtol=0, atol=1e-6)

    state = load_training_state(tmp_path / "device.state.pth")
    momentum = {index: entry["momentum_buffer"] for index, entry in optimizer.state_dict()["state"].items()}
    assert momentum and all(buffer.device.type == "cpu" for buffer in
                            (entry["momentum_buffer"] for entry in state["optimizer"]["state"].values()))
    for target in (CPU, device):
        resumed = Classifier("resnet_mini", mode="normal", pretrained="none").to(target)
        resumed.load_state_dict(state["model"])
        _, args = puzzle_args()
        resumed_optimizer = training_optimizer(build_groups(parameter_groups(resumed), args.lr, args.wd), args, 10)
        resumed_optimizer.load_state_dict(state["optimizer"])
        assert resumed_optimizer.global_step == optimizer.global_step == 1
        for index, entry in resumed_optimizer.state_dict()["state"].items():
            assert entry["momentum_buffer"].device.type == target.type
            assert torch.equal(entry["momentum_buffer"].cpu(), momentum[index].cpu())


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DataParallel needs 2 or more CUDA devices")
def test_data_parallel_over_all_cuda_devices_matches_one_device():
    """The published multi-GPU path: the wrapped classifier's puzzle losses equal one device's."""
    device = torch.device("cuda")
    torch.manual_seed(0)
    method, args = puzzle_args()
    model = method.build_model(args, "none", 20).to(device).eval()
    wrapped = wrap_data_parallel(model, device)
    assert isinstance(wrapped, torch.nn.DataParallel)
    images, labels = (tensor.to(device) for tensor in classifier_batch())
    with torch.no_grad():
        single = method.step_losses(model, (images, labels), args, Schedule(3, 10, 2))
        parallel = method.step_losses(wrapped, (images, labels), args, Schedule(3, 10, 2))
    for name in ("class_loss", "p_class_loss", "re_loss", "total"):
        assert_close(parallel[name], single[name], rtol=1e-4, atol=1e-6)
