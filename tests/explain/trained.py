"""A small RT-DETR trained in about a minute on single-object synthetic scenes (for the slow sanity test).

The scenes come from the project's generator with exactly one shape each; only scenes whose object spans at least
``min_side`` of the image are kept, so a model this small learns to find them quickly. The model is trained on
``n_train`` fixed scenes; sanity is measured on the same distribution (maps must point at what was detected, so
an overfit model is a fair subject).
"""

from __future__ import annotations

import numpy as np

OVERRIDES = [
    "model.encoder_dim=64",
    "model.encoder_ffn_dim=128",
    "model.hidden_dim=64",
    "model.num_heads=4",
    "model.num_queries=20",
    "model.decoder_layers=2",
    "model.decoder_ffn_dim=128",
    "model.num_denoising=10",
    "model.depth_mult=0.34",
    "model.freeze_stem=false",
    "model.frozen_bn=false",
    "train.param_groups=[]",
    "train.lr=1e-3",
    "train.weight_decay=0",
]


def large_single_object_scenes(n: int, size: int = 96, min_side: float = 0.3, seed: int = 11):
    """``n`` single-object scenes whose box is at least ``min_side`` × size on its shorter side."""
    from detkit.data.synth import render_scene, scene_rng

    scenes, i = [], 0
    while len(scenes) < n:
        s = render_scene(scene_rng(seed, "sanity", i), size, 1, 1, empty_fraction=0.0)
        i += 1
        if len(s.boxes) == 1 and (s.boxes[0, 2:] - s.boxes[0, :2]).min() >= min_side * size:
            scenes.append(s)
    return scenes


def train_small_detector(steps: int = 300, n_train: int = 48, size: int = 96, batch: int = 8, seed: int = 0):
    """A Detector trained for ``steps`` AdamW steps on ``n_train`` fixed single-object scenes at ``size`` px.

    The backbone stays at its random initialisation (frozen, eval mode) and its features of the fixed training
    images are computed once, so a step runs only the encoder and decoder: about 20x cheaper on a CPU, and random
    convolutional features still carry where the coloured shape is. Gradients still reach the backbone's outputs
    at inference, so every explanation method applies unchanged.
    """
    import torch

    from detkit.api import Detector
    from detkit.config.recipe import resolve_recipe
    from detkit.data.synth import synth_class_map
    from detkit.engine.optim import build_optimizer
    from detkit.models.denoising import build_denoising_group
    from detkit.models.family import total_loss
    from detkit.models.rtdetr.builder import build_model

    recipe = resolve_recipe("recipe:rtdetr-r18", [*OVERRIDES, f"train.imgsz={size}"])
    class_map = synth_class_map()
    torch.manual_seed(seed)
    model = build_model(recipe.model, len(class_map)).train()
    model.backbone.eval().requires_grad_(False)
    crit = recipe.family.build_criterion(recipe.loss, len(class_map))
    opt = build_optimizer(model, recipe.train)
    scenes = large_single_object_scenes(n_train, size, seed=seed + 11)
    images = torch.from_numpy(np.stack([s.image for s in scenes]).transpose(0, 3, 1, 2).copy()).float() / 255.0
    with torch.no_grad():
        feats = model.backbone(images)
    targets = []
    for s in scenes:
        b = torch.as_tensor(s.boxes, dtype=torch.float32) / size
        cxcywh = torch.cat([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], 1)
        targets.append({"labels": torch.as_tensor(s.labels), "boxes": cxcywh})
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        idx = torch.as_tensor(rng.choice(n_train, batch, replace=False))
        tg = [targets[i] for i in idx.tolist()]
        dn = build_denoising_group(
            tg,
            model.num_classes,
            model.num_queries,
            model.num_denoising,
            model.label_noise_ratio,
            model.box_noise_scale,
        )
        out = model.decoder(model.encoder([f[idx] for f in feats]), dn)  # RTDETR.forward after the backbone
        loss = total_loss(crit(out, tg))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
    model.eval()
    return Detector(model, class_map, size, "cpu"), scenes
