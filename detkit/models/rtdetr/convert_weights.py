"""Key maps between detkit's state-dict layout and foreign ones: official RT-DETR v1/v2 ``.pth`` and Hugging Face
``RTDetrForObjectDetection`` / ``RTDetrV2ForObjectDetection``.

detkit's own layout is the official one with the v2 spellings ``encoder.input_proj.{i}.conv/norm`` and
``decoder.enc_output.proj/norm`` and without the derived v2 buffers (anchors, valid mask, points scale), which
are recomputed for the actual input size. Every conversion returns a :class:`Conversion` that lists what could not
be mapped; :func:`load_into` refuses unknown, missing or mis-shaped keys with a message naming them.

The v2 points-scale buffers (official ``cross_attn.num_points_scale``, Hugging Face ``encoder_attn.n_points_scale``)
hold 1/P_l for each sampling point of level l, so they give the points per level, which no weight shape shows
(docs/rt-detr.md §8.5); a conversion reports them in :attr:`Conversion.points`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from detkit.errors import DetkitError

Layout = str  # "detkit" | "official-v1" | "official-v2" | "hf"

# keys that only depend on the class count: re-initialised on request when the class count changes
CLASS_HEAD_PATTERNS = (
    re.compile(r"^decoder\.denoising_class_embed\.weight$"),
    re.compile(r"^decoder\.enc_score_head\.(weight|bias)$"),
    re.compile(r"^decoder\.dec_score_head\.\d+\.(weight|bias)$"),
)
# buffers the official v2 code stores although they are derived from the input size / config
_OFFICIAL_V2_DERIVED = re.compile(r"^decoder\.(anchors|valid_mask|decoder\.layers\.\d+\.cross_attn\.num_points_scale)$")
_OFFICIAL_POINTS_SCALE = re.compile(r"^decoder\.decoder\.layers\.(\d+)\.cross_attn\.num_points_scale$")
_HF_POINTS_SCALE = re.compile(r"^model\.decoder\.layers\.(\d+)\.encoder_attn\.n_points_scale$")


@dataclass
class Conversion:
    state_dict: dict[str, torch.Tensor]
    layout: Layout
    unmapped: list[str] = field(default_factory=list)  # source keys no rule knows
    ignored: list[str] = field(default_factory=list)  # source keys knowingly skipped (derived buffers, duplicates)
    points: list[int] | None = None  # sampling points per level, read from a v2 points-scale buffer (else None)


def is_class_head_key(key: str) -> bool:
    return any(p.match(key) for p in CLASS_HEAD_PATTERNS)


def points_from_scale(scale: torch.Tensor) -> list[int] | None:
    """Points per level from a v2 points-scale buffer (P_l copies of 1/P_l, level by level); None if malformed."""
    values = [float(v) for v in scale.detach().float().reshape(-1)]
    points, i = [], 0
    while i < len(values):
        if not values[i] > 0:
            return None
        p = round(1.0 / values[i])
        if p < 1 or i + p > len(values) or any(abs(v * p - 1.0) > 1e-3 for v in values[i : i + p]):
            return None
        points.append(p)
        i += p
    return points or None


def _scale_points(found: dict[int, torch.Tensor], source: str) -> list[int] | None:
    """The points per level all layers' scale buffers agree on (a DetkitError if they disagree or are malformed)."""
    decoded = {layer: points_from_scale(t) for layer, t in found.items() if not t.is_meta}
    if not decoded:
        return None
    distinct = {tuple(p) if p else None for p in decoded.values()}
    if None in distinct or len(distinct) > 1:
        raise DetkitError(
            f"{source} weights: the decoder layers' points-scale buffers do not describe one count of sampling "
            "points per level",
            hint="expected 1/P repeated P times for each level in every layer",
        )
    return list(next(iter(distinct)))


# -- layout detection --------------------------------------------------------------------------------------------
def unwrap_official(obj: Mapping) -> Mapping:
    """Official training files: ``ckpt['ema']['module']`` when EMA exists, else ``ckpt['model']``; else as is."""
    if "ema" in obj and isinstance(obj["ema"], Mapping) and isinstance(obj["ema"].get("module"), Mapping):
        return obj["ema"]["module"]
    if "model" in obj and isinstance(obj["model"], Mapping):
        return obj["model"]
    return obj


def detect_layout(sd: Mapping[str, torch.Tensor]) -> Layout:
    keys = list(sd)
    if any(k.startswith(("model.backbone.model.", "backbone.model.embedder")) for k in keys):
        return "hf"
    if any(re.match(r"^encoder\.input_proj\.\d+\.0\.weight$", k) for k in keys) or "decoder.enc_output.0.weight" in sd:
        return "official-v1"
    if any(_OFFICIAL_V2_DERIVED.match(k) for k in keys):
        return "official-v2"
    if any(k.startswith(("backbone.", "encoder.", "decoder.")) for k in keys):
        return "detkit"
    raise DetkitError(
        "unrecognised weight layout (expected detkit, official RT-DETR v1/v2 or Hugging Face RT-DETR keys)",
        hint=f"first keys: {', '.join(keys[:3]) or '(none)'}",
    )


# -- official ----------------------------------------------------------------------------------------------------
def from_official(sd: Mapping[str, torch.Tensor]) -> Conversion:
    """Official v1 or v2 → detkit (v1 ``input_proj.{i}.0/1`` and ``enc_output.0/1`` renamed; v2 buffers skipped)."""
    sd = unwrap_official(sd)
    layout = detect_layout(sd)
    out, ignored, scales = {}, [], {}
    for k, v in sd.items():
        if _OFFICIAL_V2_DERIVED.match(k):
            if m := _OFFICIAL_POINTS_SCALE.match(k):
                scales[int(m[1])] = v
            ignored.append(k)
            continue
        k2 = re.sub(r"^encoder\.input_proj\.(\d+)\.0\.", r"encoder.input_proj.\1.conv.", k)
        k2 = re.sub(r"^encoder\.input_proj\.(\d+)\.1\.", r"encoder.input_proj.\1.norm.", k2)
        k2 = re.sub(r"^decoder\.enc_output\.0\.", "decoder.enc_output.proj.", k2)
        k2 = re.sub(r"^decoder\.enc_output\.1\.", "decoder.enc_output.norm.", k2)
        out[k2] = v
    layout = layout if layout != "detkit" else "official-v2"
    return Conversion(out, layout, ignored=ignored, points=_scale_points(scales, layout))


def to_official(
    sd: Mapping[str, torch.Tensor],
    version: str = "v1",
    imgsz: tuple[int, int] = (640, 640),
    num_points: int | Sequence[int] = 4,
) -> dict[str, torch.Tensor]:
    """detkit → official layout. ``v2`` also writes its derived buffers (anchors and valid mask for ``imgsz``,
    the deformable-attention points scale for ``num_points``: one count, or one per level), as the official v2
    code stores them."""
    from detkit.models.deformable_attention import points_per_level
    from detkit.models.rtdetr.decoder import generate_anchors

    if version not in ("v1", "v2"):
        raise ValueError(f"official layout version must be 'v1' or 'v2', got {version!r}")
    out = {}
    for k, v in sd.items():
        if version == "v1":
            k = re.sub(r"^encoder\.input_proj\.(\d+)\.conv\.", r"encoder.input_proj.\1.0.", k)
            k = re.sub(r"^encoder\.input_proj\.(\d+)\.norm\.", r"encoder.input_proj.\1.1.", k)
            k = re.sub(r"^decoder\.enc_output\.proj\.", "decoder.enc_output.0.", k)
            k = re.sub(r"^decoder\.enc_output\.norm\.", "decoder.enc_output.1.", k)
        out[k] = v
    if version == "v2":
        shapes = [(imgsz[0] // s, imgsz[1] // s) for s in (8, 16, 32)]
        out["decoder.anchors"], out["decoder.valid_mask"] = generate_anchors(shapes)
        layers = sorted({int(m[1]) for k in sd if (m := re.match(r"^decoder\.decoder\.layers\.(\d+)\.", k))})
        scale = torch.cat([torch.full((p,), 1.0 / p) for p in points_per_level(num_points, len(shapes))])
        for i in layers:
            out[f"decoder.decoder.layers.{i}.cross_attn.num_points_scale"] = scale.clone()
    return out


# -- Hugging Face ------------------------------------------------------------------------------------------------
_BRANCH = {"0": "branch2a", "1": "branch2b", "2": "branch2c"}
_NORM = {"convolution": "conv", "normalization": "norm"}


def _hf_layer_suffix(rest: str, cross: bool) -> str:
    """Rename the tail of an encoder / decoder layer key (after ``layers.{i}.``)."""
    rest = re.sub(r"^self_attn\.o_proj\.", "self_attn.out_proj.", rest)
    rest = re.sub(r"^(?:mlp\.)?fc1\.", "linear1.", rest)
    rest = re.sub(r"^(?:mlp\.)?fc2\.", "linear2.", rest)
    rest = re.sub(r"^self_attn_layer_norm\.", "norm1.", rest)
    if cross:
        rest = re.sub(r"^encoder_attn_layer_norm\.", "norm2.", rest)
        rest = re.sub(r"^encoder_attn\.", "cross_attn.", rest)
        rest = re.sub(r"^final_layer_norm\.", "norm3.", rest)
    else:
        rest = re.sub(r"^final_layer_norm\.", "norm2.", rest)
    return rest


_HF_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (
        re.compile(r"^model\.backbone\.model\.embedder\.embedder\.(\d)\.(convolution|normalization)\.(.+)$"),
        lambda m: f"backbone.conv1.conv1_{int(m[1]) + 1}.{_NORM[m[2]]}.{m[3]}",
    ),
    (
        re.compile(
            r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d)\.(convolution|normalization)\.(.+)$"
        ),
        lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.{_BRANCH[m[3]]}.{_NORM[m[4]]}.{m[5]}",
    ),
    (
        re.compile(
            r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.(convolution|normalization)\.(.+)$"
        ),
        lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.short.{_NORM[m[3]]}.{m[4]}",
    ),
    (
        re.compile(
            r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.1\.(convolution|normalization)\.(.+)$"
        ),
        lambda m: f"backbone.res_layers.{m[1]}.blocks.{m[2]}.short.conv.{_NORM[m[3]]}.{m[4]}",
    ),
    (
        re.compile(r"^model\.(encoder|decoder)_input_proj\.(\d+)\.([01])\.(.+)$"),
        lambda m: f"{m[1]}.input_proj.{m[2]}.{'conv' if m[3] == '0' else 'norm'}.{m[4]}",
    ),
    (
        re.compile(r"^model\.encoder\.(?:aifi|encoder)\.(\d+)\.layers\.(\d+)\.(.+)$"),
        lambda m: f"encoder.encoder.{m[1]}.layers.{m[2]}.{_hf_layer_suffix(m[3], cross=False)}",
    ),
    (
        re.compile(r"^model\.encoder\.((?:lateral_convs|downsample_convs|fpn_blocks|pan_blocks)\..+)$"),
        lambda m: f"encoder.{m[1]}",
    ),
    (
        re.compile(r"^model\.decoder\.layers\.(\d+)\.(.+)$"),
        lambda m: f"decoder.decoder.layers.{m[1]}.{_hf_layer_suffix(m[2], cross=True)}",
    ),
    (re.compile(r"^model\.decoder\.query_pos_head\.(.+)$"), lambda m: f"decoder.query_pos_head.{m[1]}"),
    (re.compile(r"^model\.decoder\.class_embed\.(\d+)\.(.+)$"), lambda m: f"decoder.dec_score_head.{m[1]}.{m[2]}"),
    (re.compile(r"^model\.decoder\.bbox_embed\.(\d+)\.(.+)$"), lambda m: f"decoder.dec_bbox_head.{m[1]}.{m[2]}"),
    (re.compile(r"^model\.denoising_class_embed\.(.+)$"), lambda m: f"decoder.denoising_class_embed.{m[1]}"),
    (
        re.compile(r"^model\.enc_output\.([01])\.(.+)$"),
        lambda m: f"decoder.enc_output.{'proj' if m[1] == '0' else 'norm'}.{m[2]}",
    ),
    (re.compile(r"^model\.enc_score_head\.(.+)$"), lambda m: f"decoder.enc_score_head.{m[1]}"),
    (re.compile(r"^model\.enc_bbox_head\.(.+)$"), lambda m: f"decoder.enc_bbox_head.{m[1]}"),
]
_HF_TOP_LEVEL_HEADS = re.compile(r"^(class_embed|bbox_embed)\.(\d+)\.(.+)$")
_QKV = re.compile(r"^(.*\.self_attn)\.([qkv])_proj\.(weight|bias)$")


def from_hf(sd: Mapping[str, torch.Tensor]) -> Conversion:
    """Hugging Face ``RTDetrForObjectDetection`` / ``RTDetrV2ForObjectDetection`` (or their ``*Model``) → detkit.

    The v2 naming is v1's plus one derived buffer per decoder layer, ``encoder_attn.n_points_scale`` (skipped; it
    gives :attr:`Conversion.points`).

    Separate q/k/v projections are packed into ``in_proj_weight``/``in_proj_bias``; the top-level
    ``class_embed``/``bbox_embed`` copies older files carry are used only when the ``model.decoder.*`` ones are absent
    (and must agree with them when both exist).
    """
    if not any(k.startswith("model.") for k in sd):  # RTDetrModel state dict
        sd = {f"model.{k}": v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unmapped, ignored, top_level, scales = [], [], {}, {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            ignored.append(k)
            continue
        if m := _HF_POINTS_SCALE.match(k):
            scales[int(m[1])] = v
            ignored.append(k)
            continue
        if m := _HF_TOP_LEVEL_HEADS.match(k):
            inner = "class_embed" if m[1] == "class_embed" else "bbox_embed"
            top_level[f"model.decoder.{inner}.{m[2]}.{m[3]}"] = (k, v)
            continue
        if k in ("model.anchors", "model.valid_mask"):
            ignored.append(k)
            continue
        for pattern, build in _HF_RULES:
            if m := pattern.match(k):
                new = build(m)
                break
        else:
            unmapped.append(k)
            continue
        if q := _QKV.match(new):
            qkv.setdefault((q[1], q[3]), {})[q[2]] = v
        else:
            out[new] = v
    for inner_key, (src_key, v) in top_level.items():
        if inner_key in sd:
            same = sd[inner_key].shape == v.shape and (v.is_meta or torch.equal(sd[inner_key], v))
            if not same:
                raise DetkitError(f"Hugging Face weights: {src_key} differs from its copy {inner_key}")
            ignored.append(src_key)
        else:
            sub = from_hf({inner_key: v})
            out.update(sub.state_dict)
    for (prefix, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            missing = sorted({"q", "k", "v"} - set(parts))
            unmapped.append(f"{prefix} ({kind}): missing {', '.join(p + '_proj' for p in missing)}")
            continue
        out[f"{prefix}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return Conversion(out, "hf", unmapped=unmapped, ignored=ignored, points=_scale_points(scales, "Hugging Face"))


def to_detkit(sd: Mapping[str, torch.Tensor]) -> Conversion:
    """Any supported layout → detkit's layout."""
    sd = unwrap_official(sd)
    layout = detect_layout(sd)
    if layout == "hf":
        return from_hf(sd)
    if layout.startswith("official"):
        return from_official(sd)
    return Conversion(dict(sd), "detkit")


# -- loading into a module ---------------------------------------------------------------------------------------
def _check_points(model: nn.Module, conv: Conversion, source: str) -> None:
    """Weights whose points-scale buffers give other points per level than the model's are refused: the tensors
    may have the same shapes ([3, 6, 3] and [4, 4, 4] both sample 12 points), but the offsets mean other things."""
    from detkit.models.deformable_attention import MSDeformableAttention

    if conv.points is None:
        return
    attn = next((m for m in model.modules() if isinstance(m, MSDeformableAttention)), None)
    if attn is not None and attn.points != conv.points:
        raise DetkitError(
            f"{source}: weights sample {conv.points} points per level but the model {attn.points}",
            hint=f"set model.num_points={conv.points} in the recipe",
        )


def _head_classes(sd: Mapping[str, torch.Tensor]) -> int | None:
    w = sd.get("decoder.enc_score_head.weight")
    return int(w.shape[0]) if w is not None else None


def load_into(
    model: nn.Module,
    sd: Mapping[str, torch.Tensor],
    reinit_head: bool = False,
    source: str = "weights",
    class_mismatch_message: str | None = None,
) -> Conversion:
    """Convert ``sd`` from any supported layout and load it strictly into ``model``.

    Unknown or missing keys and shape mismatches are errors naming the keys. When only the class heads differ in
    shape (another class count), ``reinit_head=True`` keeps the model's freshly initialised heads and denoising
    embedding; without it the error names both class counts (or ``class_mismatch_message`` when given).
    """
    conv = to_detkit(sd)
    _check_points(model, conv, source)
    if conv.unmapped:
        raise DetkitError(
            f"{source}: {len(conv.unmapped)} {conv.layout} key(s) have no place in the model: "
            + ", ".join(conv.unmapped[:5])
            + (" …" if len(conv.unmapped) > 5 else ""),
            hint="is this an RT-DETR (PResNet) checkpoint?",
        )
    target = model.state_dict()
    src = {k: v for k, v in conv.state_dict.items() if not k.endswith("num_batches_tracked") or k in target}
    unknown = sorted(set(src) - set(target))
    missing = sorted(k for k in set(target) - set(src) if not k.endswith("num_batches_tracked"))
    if unknown or missing:
        parts = []
        if unknown:
            parts.append(
                f"unexpected {', '.join(unknown[:5])}" + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else "")
            )
        if missing:
            parts.append(
                f"missing {', '.join(missing[:5])}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
            )
        raise DetkitError(
            f"{source}: weights do not fit this architecture ({conv.layout} layout): " + "; ".join(parts),
            hint="check that the recipe (depth, decoder layers, widths) matches the weights",
        )
    mismatched = [k for k in src if src[k].shape != target[k].shape]
    head = [k for k in mismatched if is_class_head_key(k)]
    other = [k for k in mismatched if not is_class_head_key(k)]
    if other:
        k = other[0]
        raise DetkitError(
            f"{source}: shape mismatch for {k}: weights {tuple(src[k].shape)} vs model {tuple(target[k].shape)}"
            + (f" (+{len(other) - 1} more)" if len(other) > 1 else ""),
            hint="check that the recipe (depth, widths, queries, points) matches the weights",
        )
    if head:
        if not reinit_head:
            msg = class_mismatch_message or (
                f"{source}: weights were trained for {_head_classes(src)} classes but the model has "
                f"{_head_classes(target)}"
            )
            raise DetkitError(msg, hint="pass reinit_head=True (--reinit-head) to re-initialise the class heads")
        for k in head:
            src[k] = target[k]
        conv.ignored.extend(head)
    elif reinit_head and class_mismatch_message is not None:
        # same class count but another class map: re-initialise the heads as asked
        for k in target:
            if is_class_head_key(k):
                src[k] = target[k]
    model.load_state_dict(src, strict=False)  # keys were checked above; only num_batches_tracked may be absent
    return conv
