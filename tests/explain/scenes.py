"""Single-object synthetic scenes for the explain tests (the project's generator, one shape per image)."""

from __future__ import annotations


def single_object_scene(index: int, size: int = 80, seed: int = 7):
    """One synthetic shape on a textured background, with its exact box (``Scene`` of detkit.data.synth)."""
    from detkit.data.synth import render_scene, scene_rng

    return render_scene(scene_rng(seed, "explain", index), size, 1, 1, empty_fraction=0.0)
