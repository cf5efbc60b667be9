"""The one box drawing: a copy with each box in its class colour, RGB or BGR order, any label number."""

from __future__ import annotations

import numpy as np

from detkit.utils.draw import draw_boxes, palette_rgb


def test_draw_boxes_draws_class_colours_on_a_copy():
    img = np.zeros((64, 64, 3), np.uint8)
    boxes, labels = np.array([[4.0, 30.0, 30.0, 60.0], [34.0, 30.0, 60.0, 60.0]]), np.array([0, 1])
    rgb = draw_boxes(img, boxes, labels, ["a", "b"], np.array([0.9, 0.5]))
    assert not img.any()  # the input is untouched
    colours = palette_rgb(2)

    def near(pixel, colour):  # anti-aliased lines blend a little
        return int(np.abs(pixel.astype(int) - colour.astype(int)).max()) < 40

    assert near(rgb[45, 4], colours[0]) and near(rgb[45, 34], colours[1])  # left edges of each box
    assert not near(rgb[45, 4], colours[1])
    bgr = draw_boxes(img, boxes, labels, ["a", "b"], np.array([0.9, 0.5]), to_bgr=True)
    assert np.array_equal(bgr, rgb[..., ::-1])
    assert len({tuple(c) for c in palette_rgb(20).tolist()}) == 20


def test_draw_boxes_takes_labels_without_names_and_no_boxes():
    img = np.zeros((32, 32, 3), np.uint8)
    assert draw_boxes(img, np.array([[2, 2, 20, 20]]), np.array([7]), ["a"]).any()
    assert not draw_boxes(img, np.zeros((0, 4)), np.zeros(0, int), ["a"]).any()
