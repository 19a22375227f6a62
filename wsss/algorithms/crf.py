"""Dense CRF refinement (docs/design.md §7) with pydensecrf, and the one "threshold, argmax, CRF, keys" step
that turns class maps into a label map for make_affinity_labels and make_pseudo_labels.
"""
import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels, unary_from_softmax

from wsss.algorithms.cam import maps_to_label

__all__ = ["label_crf", "probability_crf", "crf_refined_label"]


def label_crf(image, labels, n_labels, t=10):
    """Refine a label map (values 0…n_labels−1, all treated as sure with probability 0.7) on the
    H×W×3 uint8 RGB image; returns the argmax label map (H×W, int64) after t mean-field steps."""
    height, width = labels.shape
    if n_labels == 1:  # nothing to choose (and unary_from_labels would divide by n_labels − 1 = 0)
        return np.zeros((height, width), dtype=np.int64)
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(unary_from_labels(np.asarray(labels, dtype=np.int64), n_labels, gt_prob=0.7,
                                         zero_unsure=False))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=_rgb(image, height, width), compat=10)
    marginals = np.array(crf.inference(t)).reshape(n_labels, height, width)
    return np.argmax(marginals, axis=0)


def probability_crf(image, probs, t=10):
    """Refine C×H×W class probabilities on the H×W×3 uint8 RGB image; returns the C×H×W marginals
    (float32) after t mean-field steps."""
    n_labels, height, width = probs.shape
    crf = dcrf.DenseCRF2D(width, height, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(np.asarray(probs, dtype=np.float32))))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=80, srgb=13, rgbim=_rgb(image, height, width), compat=10)
    return np.array(crf.inference(t), dtype=np.float32).reshape(n_labels, height, width)


def crf_refined_label(image, maps, keys, threshold, crf_iteration):
    """Class maps → label map: prepend a constant background map at `threshold`, argmax, refine with
    the label CRF (t = crf_iteration; skipped when crf_iteration is 0), map through keys.

    maps: (K−1)×H×W foreground maps; keys: the K class ids ([0, c1+1, …]); image: H×W×3 uint8 RGB.
    """
    keys = np.asarray(keys)
    positions = maps_to_label(maps, np.arange(len(keys)), threshold)
    if crf_iteration > 0:
        positions = label_crf(image, positions, len(keys), t=crf_iteration)
    return keys[positions]


def _rgb(image, height, width):
    """The image as the C-contiguous H×W×3 uint8 array pydensecrf's bilateral term reads unchecked."""
    image = np.asarray(image)
    if image.shape != (height, width, 3):
        raise ValueError(f"expected an RGB image of shape {(height, width, 3)}, got {image.shape}")
    return np.array(image, dtype=np.uint8, order="C")  # a writable copy: pydensecrf refuses read-only buffers
