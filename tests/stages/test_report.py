import numpy as np

from wsss.data.visualize import colour_label
from wsss.data.voc import load_class_info, voc_palette
from wsss.stages.report import (
    BAR_COLOURS,
    class_iou_chart,
    foreground_heat,
    letterbox,
    single_class_columns,
    stage_sheet,
)

CLASS_NAMES = load_class_info()["class_names"]


def test_foreground_heat_is_the_pixelwise_maximum_and_zero_without_classes():
    maps = np.array([[[0.25, 0.75]], [[0.5, 0.125]]], dtype=np.float32)
    assert foreground_heat(maps).tolist() == [[0.5, 0.75]]
    assert foreground_heat(np.zeros((0, 2, 3))).tolist() == [[0.0] * 3] * 2


def test_letterbox_keeps_the_aspect_ratio_and_pads_with_grey():
    picture = np.zeros((10, 20, 3), dtype=np.uint8)
    cell = letterbox(picture, 40, nearest=True)
    assert cell.shape == (40, 40, 3)
    assert (cell[10:30] == 0).all() and (cell[:10] == 200).all() and (cell[30:] == 200).all()


def test_label_columns_keep_the_palette_colours():
    label = np.zeros((33, 47), dtype=np.uint8)
    label[5:20, 7:30] = 15  # person
    label[20:, 30:] = 255
    picture = np.full((33, 47, 3), 90, dtype=np.uint8)
    sheet = stage_sheet([("a", [picture, colour_label(label)], [label])], ["image", "label"], CLASS_NAMES,
                        label_columns=(1,), cell=64)
    palette = {tuple(c) for c in np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)[[0, 15, 255]]}
    column = sheet[26 + 18:26 + 18 + 64, 4 + 64 + 4:4 + 64 + 4 + 64].reshape(-1, 3)
    assert {tuple(c) for c in column} <= palette | {(200, 200, 200)}


def test_bars_are_as_long_as_their_iou():
    iou = [0.0] * 21
    iou[3] = 50.0
    chart = class_iou_chart({"run": {"IoU": iou, "mIoU": 25.0}}, CLASS_NAMES, "t", left=100, length=400)
    colour = np.array(BAR_COLOURS[0], dtype=np.uint8)
    bar_rows = np.where((chart == colour).all(axis=2).sum(axis=1) > 150)[0]
    assert len(bar_rows)  # the 50 % bar: 200 pixels long
    lengths = sorted({int((chart[row] == colour).all(axis=1).sum()) for row in bar_rows})
    assert lengths == [200]  # x = 101…300: 50 % of 400 pixels (x = 100 is the axis line)


def test_a_column_with_one_class_everywhere_is_flagged_on_the_sheet():
    truth = np.zeros((20, 20), dtype=np.uint8)
    truth[5:15, 5:15] = 15
    background = np.zeros_like(truth)
    picture = np.full((20, 20, 3), 90, dtype=np.uint8)
    rows = [(f"img{i}", [picture, colour_label(truth), colour_label(truth), colour_label(background)],
             [truth, truth, background]) for i in range(2)]
    titles = ["image", "ground truth", "pseudo label", "prediction"]
    flagged = stage_sheet(rows, titles, CLASS_NAMES, label_columns=(1, 2, 3), cell=64)
    assert single_class_columns(rows, (1, 2, 3), CLASS_NAMES) == {3: "background"}
    varied = [(name, pictures, [t, t, t]) for name, pictures, (t, _, _) in rows]
    assert single_class_columns(varied, (1, 2, 3), CLASS_NAMES) == {}
    plain = stage_sheet(varied, titles, CLASS_NAMES, label_columns=(1, 2, 3), cell=64)
    assert flagged.shape[0] == plain.shape[0] + 18  # the note line under the titles
    note = flagged[26:44]
    assert ((note[..., 0] > 120) & (note[..., 1] < 80)).any()  # drawn in red
