import cv2
import numpy as np
import pytest

from bench.perimeter_fit_direct import perimeter_fit_direct, surviving_pixels_direct
from wsss.algorithms.perimeter_fit import (
    combine_perimeter_fit,
    perimeter_fit,
    perimeter_map,
    rescale_to_full_range,
    surviving_pixels,
)


def random_colours(rng, height, width, kind):
    """Small colour images of three kinds: values near black, flat regions with a little noise
    (as a decoded palette JPEG), and gradients whose steps chain fills together."""
    if kind == "near_black":
        image = rng.integers(0, 13, size=(height, width, 3))
    elif kind == "noisy_regions":
        palette = rng.integers(0, 40, size=(4, 3))
        image = palette[rng.integers(0, 4, size=(height, width))] + rng.integers(0, 7, size=(height, width, 3))
    else:
        image = np.cumsum(rng.integers(0, 8, size=(height, width, 3)), axis=1)
    return np.clip(image, 0, 255).astype(np.uint8)


KINDS = ["near_black", "noisy_regions", "gradient"]


def test_perimeter_map_matches_opencv_steps():
    image = np.zeros((20, 24, 3), dtype=np.uint8)
    image[:, 12:] = (40, 200, 90)
    image[5:9, 3:7] = (250, 10, 10)
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    expected = cv2.Canny(cv2.GaussianBlur(grey, (3, 3), 0), 1, 50)
    result = perimeter_map(image)
    np.testing.assert_array_equal(result, expected)
    assert set(np.unique(result)) == {0, 255}
    # the edges follow the colour boundaries only
    assert result[:, 14:].max() == 0 and result[12:, :10].max() == 0
    assert result[:, 11:13].any(axis=1).all()
    with pytest.raises(ValueError, match="uint8"):
        perimeter_map(image.astype(np.float32))


def test_rescale_truncates_like_the_published_code():
    image = np.array([[[0, 1, 2], [3, 100, 200]]], dtype=np.uint8)
    expected = np.array([[[0, 1, 2], [3, 127, 255]]])  # int(x / 200 * 255), e.g. 100 → 127.5 → 127
    np.testing.assert_array_equal(rescale_to_full_range(image), expected)
    with pytest.raises(ValueError, match="entirely black"):
        rescale_to_full_range(np.zeros((2, 2, 3), dtype=np.uint8))


def test_order_dependence_differs_from_connected_components():
    # 20, 28, 36 on one channel: each step is 8 (≤ 10) so the three are one connected component
    # of similar colours, but the first seed's fill stops at 28 (36 is 16 away from 20) and makes
    # the second seed black before its turn, so 36 survives.
    image = np.array([[[20, 0, 0], [28, 0, 0], [36, 0, 0]]], dtype=np.uint8)
    seeds = np.array([[True, True, False]])
    np.testing.assert_array_equal(surviving_pixels(image, seeds), [[False, False, True]])
    np.testing.assert_array_equal(surviving_pixels_direct(image, seeds), [[False, False, True]])
    # seeded from the middle alone, the fill reaches both ends (each 8 away)
    np.testing.assert_array_equal(surviving_pixels(image, np.array([[False, True, False]])), [[False] * 3])


def test_seeds_near_black_do_nothing_but_their_pixels_can_be_filled():
    # (3, 3, 3) is 9 from black: as a seed it does nothing; (8, 4, 0) is 12 from black and 9 from
    # (3, 3, 3), so its fill takes it. Exact black never fills and always blocks.
    image = np.array([[[3, 3, 3], [8, 4, 0], [0, 0, 0], [8, 4, 0]]], dtype=np.uint8)
    alone = surviving_pixels(image, np.array([[True, False, False, False]]))
    np.testing.assert_array_equal(alone, [[True, True, False, True]])
    both = surviving_pixels(image, np.array([[False, True, False, False]]))
    np.testing.assert_array_equal(both, [[False, False, False, True]])


@pytest.mark.parametrize("kind", KINDS)
def test_fast_fills_equal_pil_on_random_images(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for _ in range(40):
        height, width = rng.integers(1, 13, size=2)
        image = random_colours(rng, height, width, kind)
        seeds = rng.random((height, width)) < rng.uniform(0.2, 1.0)
        np.testing.assert_array_equal(surviving_pixels(image, seeds), surviving_pixels_direct(image, seeds))


def test_large_fills_match():
    # a wide noisy region (fills of hundreds of pixels) crossed by gradients
    rng = np.random.default_rng(7)
    image = np.full((30, 40, 3), 120, dtype=np.int64) + rng.integers(0, 5, size=(30, 40, 3))
    image[10:20] = np.cumsum(rng.integers(0, 7, size=(10, 40, 3)), axis=1) + 30
    image[:, 25] = 3  # a near-black column
    image = np.clip(image, 0, 255).astype(np.uint8)
    for fraction in (1.0, 0.5):
        seeds = rng.random((30, 40)) < fraction
        np.testing.assert_array_equal(surviving_pixels(image, seeds), surviving_pixels_direct(image, seeds))
    # several channels share the fills until their supports make them differ
    hr_cam = np.zeros((3, 30, 40))
    hr_cam[0, 5:15, 5:30] = 0.5
    hr_cam[1, 12:28, 20:38] = 0.04
    hr_cam[2] = rng.random((30, 40)) * (rng.random((30, 40)) < 0.3)
    perimeter = np.zeros((30, 40), dtype=np.uint8)
    for segment in ("slic", "quick"):
        np.testing.assert_array_equal(perimeter_fit(image, perimeter, hr_cam, segment),
                                      perimeter_fit_direct(image, perimeter, hr_cam, segment))


def test_more_than_eight_channels():
    rng = np.random.default_rng(11)
    image = random_colours(rng, 9, 11, "noisy_regions")
    image[0, 0] = 200
    hr_cam = rng.choice([0.0, 0.5], size=(10, 9, 11), p=[0.7, 0.3])  # 11 channels with the background
    perimeter = rng.choice([0, 255], size=(9, 11), p=[0.9, 0.1]).astype(np.uint8)
    np.testing.assert_array_equal(perimeter_fit(image, perimeter, hr_cam, "quick"),
                                  perimeter_fit_direct(image, perimeter, hr_cam, "quick"))


@pytest.mark.parametrize("segment", ["slic", "quick"])
def test_perimeter_fit_equals_the_direct_published_loop(segment):
    rng = np.random.default_rng(["slic", "quick"].index(segment))
    for trial in range(12):
        height, width = rng.integers(3, 12, size=2)
        image = random_colours(rng, height, width, KINDS[trial % 3])
        image[0, 0] = np.maximum(image[0, 0], 1)  # not all black
        perimeter = rng.choice([0, 199, 201, 249, 251, 255], size=(height, width)).astype(np.uint8)
        hr_cam = rng.choice([0.0, 0.02, 0.05, 0.3, 1.0], size=(2, height, width))
        hr_cam[:, -1, :] = 0.0  # the last row and column hold pixels outside the support: never seeds
        hr_cam[:, :, -1] = rng.choice([0.0, 0.9], size=(2, height))
        result = perimeter_fit(image, perimeter, hr_cam, segment)
        assert result.shape == (3, height, width) and result.dtype == np.float64
        assert set(np.unique(result)) <= {0.0, 255.0}
        np.testing.assert_array_equal(result, perimeter_fit_direct(image, perimeter, hr_cam, segment))


def test_perimeter_fit_channels_by_hand():
    # one class; the USS image is two flat colours (left 100, right 50: stretched to 255 and 127)
    image = np.zeros((3, 4, 3), dtype=np.uint8)
    image[:, :2] = (100, 0, 0)
    image[:, 2:] = (50, 0, 0)
    perimeter = np.zeros((3, 4), dtype=np.uint8)
    perimeter[0, 3] = 255
    hr_cam = np.zeros((1, 3, 4))
    hr_cam[0, :, 2:] = 0.5  # support: the right half
    quick = perimeter_fit(image, perimeter, hr_cam, "quick")
    slic = perimeter_fit(image, perimeter, hr_cam, "slic")
    # background: every pixel is a seed except the last row and column; both halves get filled
    np.testing.assert_array_equal(quick[0] > 0, [[0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(slic[0], np.zeros((3, 4)))  # no support for the background
    # class: only the left half seeds; its fill stops at the other colour, so the right half survives
    np.testing.assert_array_equal(quick[1] > 0, [[0, 0, 1, 1]] * 3)
    np.testing.assert_array_equal(slic[1] > 0, [[0, 0, 1, 1]] * 3)


def test_perimeter_fit_bad_inputs():
    image = np.full((4, 5, 3), 80, dtype=np.uint8)
    perimeter = np.zeros((4, 5), dtype=np.uint8)
    with pytest.raises(ValueError, match="unknown segment mode"):
        perimeter_fit(image, perimeter, np.zeros((1, 4, 5)), "watershed")
    with pytest.raises(ValueError, match="size mismatch"):
        perimeter_fit(image, perimeter, np.zeros((1, 4, 6)), "slic")
    with pytest.raises(ValueError, match="K×H×W"):
        perimeter_fit(image, perimeter, np.zeros((4, 5)), "slic")
    with pytest.raises(ValueError, match="entirely black"):
        perimeter_fit(np.zeros_like(image), perimeter, np.zeros((1, 4, 5)), "quick")
    with pytest.raises(ValueError, match="seed mask"):
        surviving_pixels(image, np.ones((4, 4), dtype=bool))


def combination_inputs():
    """One class, 4×4 full resolution, 2×2 stride-4 CAM: bilinear halving (align_corners=False)
    averages each 2×2 block."""
    hr_cam = np.full((1, 4, 4), 0.5, dtype=np.float32)
    cam = np.full((1, 2, 2), 0.4, dtype=np.float32)
    slic = np.zeros((2, 4, 4))
    quick = np.zeros((2, 4, 4))
    slic[0] = 255.0  # the background channel is never used
    slic[1, :2, :2] = [[255, 255], [0, 0]]  # block (0, 0): 2 of 4
    quick[1, :2, :2] = [[255, 255], [255, 0]]  # block (0, 0): 3 of 4
    slic[1, :2, 2:] = 255.0  # block (0, 1): 4 of 4 in both
    quick[1, :2, 2:] = [[0.3, 255], [255, 255]]  # 0.3 > 0 counts as in
    slic[1, 2:, :2] = [[255, 0], [0, 0]]  # block (1, 0): slic 1 of 4, quick none
    return hr_cam, cam, slic, quick


def test_combination_by_hand_with_fractional_multipliers():
    hr_cam, cam, slic, quick = combination_inputs()
    combined_hr, combined_cam = combine_perimeter_fit(hr_cam, cam, slic, quick)
    both = np.zeros((4, 4), dtype=bool)
    both[0, :2] = True
    both[:2, 2:] = True
    np.testing.assert_array_equal(combined_hr[0], np.where(both, 1.0, 0.5))
    assert combined_hr.dtype == np.float32 and combined_cam.dtype == np.float32
    # multipliers 1 + 0.5·0.75, 1 + 1·1, 1 + 0.25·0, 1 + 0·0
    expected = np.float32(0.4) * np.array([[1 + 0.5 * 0.75, 2.0], [1.0, 1.0]])
    np.testing.assert_allclose(combined_cam[0], expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(hr_cam, np.full((1, 4, 4), 0.5, dtype=np.float32))  # inputs untouched


def test_combination_rebinarised():
    hr_cam, cam, slic, quick = combination_inputs()
    combined_hr, combined_cam = combine_perimeter_fit(hr_cam, cam, slic, quick, rebinarise=True)
    # resized masks > 0 count as in: blocks (0, 0) and (0, 1) double, (1, 0) has no quick mask
    np.testing.assert_allclose(combined_cam[0], np.float32(0.4) * np.array([[2.0, 2.0], [1.0, 1.0]]), atol=1e-7)
    np.testing.assert_array_equal(combined_hr, combine_perimeter_fit(hr_cam, cam, slic, quick)[0])


def test_combination_bad_shapes():
    hr_cam, cam, slic, quick = combination_inputs()
    with pytest.raises(ValueError, match="masks have shapes"):
        combine_perimeter_fit(hr_cam, cam, slic[1:], quick)
    with pytest.raises(ValueError, match="stride-4"):
        combine_perimeter_fit(hr_cam, np.zeros((2, 2, 2), dtype=np.float32), slic, quick)
