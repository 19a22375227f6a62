"""The kinds of per-image class-map files the stages exchange, described once.

A map file (`{id}.npz`) holds `keys` (0, then the present classes + 1) and one or more arrays with
one map per present class. What differs between kinds is which arrays it holds, which of them the
labels and the evaluation read, how evaluate.py's `--mode` names it, which stage writes it, and the
report column it fills.
"""
import dataclasses


@dataclasses.dataclass(frozen=True)
class MapKind:
    name: str
    arrays: tuple          # the arrays besides `keys`
    label_array: str       # the full-resolution array that labels and evaluation read
    evaluate_mode: str     # evaluate.py --mode
    producer: str          # the stage script that writes it
    noun: str              # how messages name it
    report_column: str     # the report's column title


MAP_KINDS = {
    "cam": MapKind("cam", ("cam", "hr_cam"), "hr_cam", "npy", "inference_classification.py", "CAM", "CAM"),
    "rw": MapKind("rw", ("rw",), "rw", "rw", "inference_rw.py", "random-walk", "CAM + RW"),
}
EVALUATE_MODES = {kind.evaluate_mode: kind for kind in MAP_KINDS.values()}
