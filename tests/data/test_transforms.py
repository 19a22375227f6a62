import random

import numpy as np
from PIL import Image

from wsss.data import transforms


def gradient_image(width, height):
    x = np.tile(np.arange(width, dtype=np.uint8), (height, 1))
    return Image.fromarray(np.stack([x, x // 2, np.full_like(x, 7)], axis=-1))


def test_random_resize_long_side_in_range_and_label_nearest():
    random.seed(0)
    image = gradient_image(40, 20)
    label = Image.fromarray((np.arange(40)[None].repeat(20, 0) % 3).astype(np.uint8))
    for _ in range(20):
        out, out_label = transforms.random_long_side_resize(image, 30, 50, label)
        assert 30 <= max(out.size) <= 50
        assert out.size == out_label.size
        assert set(np.unique(np.asarray(out_label))) <= {0, 1, 2}  # nearest: no new values


def test_normalize_values():
    image = np.full((1, 1, 3), 255, dtype=np.uint8)
    expected = (1.0 - np.array(transforms.IMAGENET_MEAN)) / np.array(transforms.IMAGENET_STD)
    assert np.allclose(transforms.normalize(image)[0, 0], expected)


def test_crop_pads_image_with_zero_and_label_with_255():
    random.seed(1)
    array = np.ones((5, 30, 3), np.float32)
    label = np.ones((5, 30), np.uint8)
    box = transforms.random_crop_box(5, 30, 10)
    image_crop = transforms.crop(array, box, 10, 0.0)
    label_crop = transforms.crop(label, box, 10, 255)
    assert image_crop.shape == (10, 10, 3) and label_crop.shape == (10, 10)
    assert (image_crop.sum(axis=2) == 0).sum() == 50  # 5 rows of padding
    assert set(np.unique(label_crop)) == {1, 255}
    assert np.array_equal(image_crop[..., 0] == 0, label_crop == 255)


def test_random_crop_offsets_cover_the_image():
    random.seed(2)
    array = np.arange(12 * 12).reshape(12, 12)
    for _ in range(20):
        box = transforms.random_crop_box(12, 12, 5)
        out = transforms.crop(array, box, 5, -1)
        top, left = box[0], box[1]
        assert np.array_equal(out, array[top:top + 5, left:left + 5])


def test_top_left_crop():
    image = gradient_image(7, 3)
    mask = np.full((3, 7), 4, np.uint8)
    array, cropped_mask = transforms.TopLeftCropTransform(8)(image, mask)
    assert array.shape == (3, 8, 8)
    assert np.all(array[:, 3:, :] == 0) and np.all(array[:, :, 7:] == 0)
    assert np.all(cropped_mask[:3, :7] == 4) and np.all(cropped_mask[3:] == 255) and np.all(cropped_mask[:, 7:] == 255)


def test_train_transform_flip_is_joint_and_sizes_are_fixed():
    image = gradient_image(24, 16)
    label = Image.fromarray(np.tile(np.arange(24, dtype=np.uint8), (16, 1)))
    transform = transforms.TrainTransform(16, 24, 24, label_size=4)
    flips = set()
    for seed in range(10):
        random.seed(seed)
        array, out_label = transform(image, label)
        assert array.shape == (3, 16, 16) and out_label.shape == (4, 4)
        random.seed(seed)
        array, full_label = transforms.TrainTransform(16, 24, 24)(image, label)
        valid = full_label != 255
        red = np.round((array[0] * transforms.IMAGENET_STD[0] + transforms.IMAGENET_MEAN[0]) * 255)
        # the red channel equals the column index, as does the label: flipped together
        assert np.array_equal(red[valid], full_label[valid])
        flips.add(bool(full_label[0, 0] > full_label[0, 1]))
    assert flips == {True, False}


def test_augmentations_keep_size_and_parse():
    random.seed(3)
    image = gradient_image(32, 20)
    assert transforms.colour_jitter(image).size == (32, 20)
    assert transforms.rand_augment(image).size == (32, 20)
    assert transforms.parse_augment("randaugment_colorjitter") == ["colorjitter", "randaugment"]
    try:
        transforms.parse_augment("cutmix")
        raise AssertionError("unknown augmentation accepted")
    except ValueError as error:
        assert "cutmix" in str(error)
