"""The registry of CAM methods. A new method is one module defining a `CamMethod` and one line here."""
from wsss.methods import cpn, puzzle_cam
from wsss.methods.base import CamMethod

METHODS = {method.name: method for method in (puzzle_cam.BASELINE, puzzle_cam.PUZZLE, cpn.CPN_METHOD)}


def get_method(name):
    """The registered method `name`; ValueError naming the valid ones (in registration order) otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown CAM method {name!r}; choose from {list(METHODS)}")
    return METHODS[name]


__all__ = ["CamMethod", "METHODS", "get_method"]
