"""The label-map convention every dataset and stage shares: 0 is background, 1..K the classes, and
IGNORE_LABEL marks pixels that are neither scored nor trained on (VOC's void boundary, the
affinity labels' unsure pixels, crop padding)."""

IGNORE_LABEL = 255
