"""The opt-in decoder intermediates: off by default, outputs unchanged when on, shapes and meaning of the trace."""

from __future__ import annotations

import pytest
import torch


def _model(detector):
    return detector.module.eval()


def test_recording_leaves_outputs_unchanged_and_is_off_afterwards(detector):
    model = _model(detector)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(x)
        with model.record_intermediates() as trace:
            recorded = model(x)
        again = model(x)
    for key in ("logits", "boxes"):
        assert torch.equal(plain[key], recorded[key]) and torch.equal(plain[key], again[key])
    assert model.decoder.trace is None
    assert all(layer.cross_attn.trace is None for layer in model.decoder.decoder.layers)
    assert len(trace.sampling_locations) == model.eval_layers == len(trace.reference_boxes)


def test_trace_shapes_and_meaning(detector):
    model = _model(detector)
    dec = model.decoder
    attn = dec.decoder.layers[0].cross_attn
    with torch.no_grad(), model.record_intermediates() as trace:
        out = model(torch.rand(1, 3, 64, 64))
    q = dec.num_queries
    assert trace.spatial_shapes == [(8, 8), (4, 4), (2, 2)]
    assert trace.query_index.shape == (1, q)
    assert int(trace.query_index.max()) < 8 * 8 + 4 * 4 + 2 * 2
    loc, w = trace.sampling_locations[-1], trace.attention_weights[-1]
    assert loc.shape == (1, q, attn.num_heads, attn.num_levels, attn.num_points, 2)
    assert w.shape == (1, q, attn.num_heads, attn.num_levels, attn.num_points)
    torch.testing.assert_close(w.sum((-1, -2)), torch.ones(1, q, attn.num_heads))
    # the first layer samples around the encoder's selected boxes: its reference is the sigmoid of those
    assert trace.reference_boxes[0].shape == (1, q, 4)
    assert not loc.requires_grad and out["boxes"].shape == (1, q, 4)


def test_truncated_decoder_records_only_the_layers_that_ran(detector):
    model = _model(detector)
    full = model.eval_layers
    model.set_eval_layers(1)
    try:
        with torch.no_grad(), model.record_intermediates() as trace:
            model(torch.rand(1, 3, 64, 64))
    finally:
        model.set_eval_layers(full)
    assert len(trace.sampling_locations) == 1


def test_recording_refuses_training_mode(detector):
    model = detector.module
    model.train()
    try:
        with pytest.raises(RuntimeError, match="eval mode"), model.record_intermediates():
            pass
    finally:
        model.eval()
