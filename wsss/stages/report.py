"""Pictures of a whole run: sample images through every stage, and per-class IoU bars.

Drawn with OpenCV only (no plotting library): `stage_sheet` lays out one row per image and one
column per stage with a legend of the VOC colours shown; `class_iou_chart` draws grouped
horizontal bars, one group per class, one bar per evaluated stage.
"""
import cv2
import numpy as np

from wsss.data.voc import voc_palette
from wsss.utils.labels import IGNORE_LABEL

__all__ = ["foreground_heat", "perimeter_fit_overlap", "letterbox", "single_class_columns", "stage_sheet",
           "class_iou_chart"]

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (30, 30, 30)
PAPER = (255, 255, 255)
PAD = (200, 200, 200)
BAR_COLOURS = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (204, 121, 167), (213, 94, 0), (0, 114, 178)]


def foreground_heat(maps):
    """The per-pixel maximum over the foreground maps (K−1)×H×W, zero when there are none."""
    maps = np.asarray(maps, dtype=np.float32)
    return maps.max(axis=0) if len(maps) else np.zeros(maps.shape[1:], dtype=np.float32)


def perimeter_fit_overlap(slic_masks, quick_masks):
    """Where SILOP raises a CAM: the pixels inside both PerimeterFit masks ((K+1)×H×W, channel 0 the
    background) of some foreground class, as an H×W map of 0 and 1."""
    both = (np.asarray(slic_masks)[1:] > 0) & (np.asarray(quick_masks)[1:] > 0)
    return both.any(axis=0).astype(np.float32) if len(both) else np.zeros(np.shape(slic_masks)[1:], np.float32)


def letterbox(picture, size, nearest=False):
    """Fit an RGB picture into a size×size cell keeping its aspect ratio (grey padding)."""
    height, width = picture.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(picture, (new_w, new_h), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)
    cell = np.full((size, size, 3), PAD, dtype=np.uint8)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    cell[top:top + new_h, left:left + new_w] = resized
    return cell


def _text(canvas, text, origin, scale=0.45, colour=INK):
    cv2.putText(canvas, text, origin, FONT, scale, colour, 1, cv2.LINE_AA)


def _legend(class_ids, class_names, width, swatch=14, spacing=8):
    """Rows of colour swatches with names, wrapped to `width`."""
    palette = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)
    entries = [(palette[i], "background" if i == 0 else "void" if i == IGNORE_LABEL else class_names[i - 1])
               for i in class_ids]
    rows, row, used = [], [], spacing
    for colour, name in entries:
        entry_w = swatch + 6 + cv2.getTextSize(name, FONT, 0.45, 1)[0][0] + 2 * spacing
        if row and used + entry_w > width:
            rows.append(row)
            row, used = [], spacing
        row.append((colour, name, used))
        used += entry_w
    rows.append(row)
    line = swatch + spacing
    legend = np.full((len(rows) * line + spacing, width, 3), PAPER, dtype=np.uint8)
    for r, row in enumerate(rows):
        top = spacing + r * line
        for colour, name, left in row:
            cv2.rectangle(legend, (left, top), (left + swatch, top + swatch), tuple(int(c) for c in colour), -1)
            cv2.rectangle(legend, (left, top), (left + swatch, top + swatch), INK, 1)
            _text(legend, name, (left + swatch + 6, top + swatch - 2))
    return legend


def stage_sheet(rows, titles, class_names, label_columns=(), cell=160, gap=4):
    """One sheet: rows = [(image id, [picture, ...], [label map, ...])], a picture per title.

    Pictures are RGB uint8 (label maps already coloured; those in `label_columns` are resized
    nearest-neighbour, so they keep the palette's colours); the label maps list every class id
    shown, for the legend (VOC colours with class names).
    """
    columns = len(titles)
    width = columns * (cell + gap) + gap
    single = single_class_columns(rows, label_columns, class_names)
    header = np.full((26 + 18 * bool(single), width, 3), PAPER, dtype=np.uint8)
    for c, title in enumerate(titles):
        _text(header, title + (" *" if c in single else ""), (gap + c * (cell + gap) + 4, 18))
    if single:
        notes = "; ".join(f"{titles[c]}: {name} in every pixel shown" for c, name in single.items())
        _text(header, f"* one class everywhere ({notes})", (gap + 4, 38), scale=0.4, colour=(180, 0, 0))
    blocks = [header]
    shown = set()
    for image_id, pictures, labels in rows:
        label_bar = np.full((18, width, 3), PAPER, dtype=np.uint8)
        _text(label_bar, image_id, (gap + 4, 13), scale=0.4)
        row = np.full((cell + gap, width, 3), PAPER, dtype=np.uint8)
        for c, picture in enumerate(pictures):
            row[:cell, gap + c * (cell + gap):gap + c * (cell + gap) + cell] = letterbox(
                picture, cell, nearest=c in label_columns)
        blocks += [label_bar, row]
        for label in labels:
            shown.update(int(value) for value in np.unique(label))
    blocks.append(_legend(sorted(shown), class_names, width))
    return np.concatenate(blocks, axis=0)


def single_class_columns(rows, label_columns, class_names):
    """{column: class name} for the label columns (ground truth aside) whose maps hold one class, the
    same in every row: a model that predicts, say, background everywhere, which a reader should be told."""
    found = {}
    for position, column in enumerate(label_columns):
        if position == 0:  # the ground truth
            continue
        values = set()
        for _, _, labels in rows:
            values.update(int(value) for value in np.unique(labels[position]) if value != IGNORE_LABEL)
        if len(values) == 1:
            value = values.pop()
            found[column] = "background" if value == 0 else class_names[value - 1]
    return found


def class_iou_chart(results, class_names, title, bar=6, bar_gap=1, group_gap=8, left=110, right=60, length=520):
    """Grouped horizontal bars of per-class IoU (%), one group per class plus mIoU, one bar per
    entry of `results` ({name: {"IoU": [a value per class], "mIoU": value}})."""
    names = ["background"] + list(class_names) + ["mIoU"]
    series = list(results.items())
    group = len(series) * (bar + bar_gap) + group_gap
    top = 30 + 18 * len(series) + 10
    height = top + len(names) * group + 30
    chart = np.full((height, left + length + right, 3), PAPER, dtype=np.uint8)
    _text(chart, title, (10, 20), scale=0.55)
    for s, (name, result) in enumerate(series):  # the mIoU values in the legend: the bars are too thin
        y = 30 + 18 * s
        cv2.rectangle(chart, (left, y), (left + 14, y + 12), BAR_COLOURS[s % len(BAR_COLOURS)], -1)
        _text(chart, f"{name} (mIoU {result['mIoU']:.1f})", (left + 20, y + 11))
    for tick in range(0, 101, 20):
        x = left + round(length * tick / 100)
        cv2.line(chart, (x, top - 4), (x, top + len(names) * group), (225, 225, 225), 1)
        _text(chart, str(tick), (x - 8, top + len(names) * group + 16), scale=0.4)
    for g, name in enumerate(names):
        y0 = top + g * group
        _text(chart, name, (8, y0 + group // 2), scale=0.4)
        for s, (_, result) in enumerate(series):
            value = result["mIoU"] if name == "mIoU" else result["IoU"][g]
            y = y0 + s * (bar + bar_gap)
            x1 = left + round(length * max(0.0, min(100.0, value)) / 100)
            cv2.rectangle(chart, (left, y), (max(left + 1, x1), y + bar - 1), BAR_COLOURS[s % len(BAR_COLOURS)], -1)
    cv2.line(chart, (left, top - 4), (left, top + len(names) * group), INK, 1)
    return chart

