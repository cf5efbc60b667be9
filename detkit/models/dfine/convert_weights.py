"""D-FINE weights in and out: official D-FINE / DEIM-D-FINE ``.pth`` layout, Hugging Face
``DFineForObjectDetection`` and detkit's own layout (docs/dfine.md §9).

detkit's layout is the official one without the derived tensors the official code also stores (the per-layer
``cross_attn.num_points_scale`` buffers, ``decoder.anchors``/``decoder.valid_mask`` and the duplicate
``decoder.decoder.up``/``decoder.decoder.reg_scale``), which are recomputed here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch
from torch import nn

from detkit.errors import DetkitError
from detkit.models.dfine.config import HGNETV2, PRESETS, DFineConfig

CLASS_HEAD_PATTERNS = (
    re.compile(r"^decoder\.denoising_class_embed\.weight$"),
    re.compile(r"^decoder\.enc_score_head\.(weight|bias)$"),
    re.compile(r"^decoder\.dec_score_head\.\d+\.(weight|bias)$"),
)
# tensors the official code stores although they are derived (recomputed here)
_OFFICIAL_DERIVED = re.compile(
    r"^decoder\.(anchors|valid_mask|decoder\.up|decoder\.reg_scale|decoder\.layers\.\d+\.cross_attn\.num_points_scale)$"
)


def is_class_head_key(key: str) -> bool:
    return any(p.match(key) for p in CLASS_HEAD_PATTERNS)


def unwrap(obj: Mapping) -> Mapping:
    """Official training files: ``ckpt['ema']['module']`` when EMA exists, else ``ckpt['model']``; else as is."""
    if "ema" in obj and isinstance(obj["ema"], Mapping) and isinstance(obj["ema"].get("module"), Mapping):
        return obj["ema"]["module"]
    if "model" in obj and isinstance(obj["model"], Mapping):
        return obj["model"]
    return obj


def detect_layout(sd: Mapping[str, torch.Tensor]) -> str | None:
    """``"hf"``, ``"official"`` (incl. detkit's own) or None when ``sd`` is not a D-FINE state dict."""
    keys = set(sd)
    for prefix in ("model.", ""):  # DFineForObjectDetection / DFineModel
        if f"{prefix}backbone.model.embedder.stem1.convolution.weight" in keys and any(
            k.startswith(f"{prefix}decoder.lqe_layers.") for k in keys
        ):
            return "hf"
    if "backbone.stem.stem1.conv.weight" in keys and any(k.startswith("decoder.decoder.lqe_layers.") for k in keys):
        return "official"
    return None


# -- Hugging Face → detkit ---------------------------------------------------------------------------------------
_HF_BACKBONE_NAMES = {"convolution": "conv", "normalization": "bn"}
_ELAN = {"conv1": "cv1", "csp_rep1": "cv2.0", "conv2": "cv2.1", "csp_rep2": "cv3.0", "conv3": "cv3.1", "conv4": "cv4"}


def _hf_backbone(rest: str) -> str:
    return re.sub(r"(^|\.)(convolution|normalization)\.", lambda m: f"{m[1]}{_HF_BACKBONE_NAMES[m[2]]}.", rest)


def _hf_attention(rest: str, final_norm: str) -> str:
    rest = re.sub(r"^self_attn\.o_proj\.", "self_attn.out_proj.", rest)
    rest = re.sub(r"^(?:mlp\.layers\.0|fc1)\.", "linear1.", rest)
    rest = re.sub(r"^(?:mlp\.layers\.1|fc2)\.", "linear2.", rest)
    rest = re.sub(r"^self_attn_layer_norm\.", "norm1.", rest)
    rest = re.sub(r"^final_layer_norm\.", f"{final_norm}.", rest)
    return re.sub(r"^encoder_attn\.", "cross_attn.", rest)


_HF_RULES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (
        re.compile(r"^model\.backbone\.model\.embedder\.(stem\w+)\.(.+)$"),
        lambda m: f"backbone.stem.{m[1]}.{_hf_backbone(m[2])}",
    ),
    (
        re.compile(r"^model\.backbone\.model\.encoder\.stages\.(\d+)\.(.+)$"),
        lambda m: f"backbone.stages.{m[1]}.{_hf_backbone(m[2])}",
    ),
    (
        re.compile(r"^model\.(encoder|decoder)_input_proj\.(\d+)\.([01])\.(.+)$"),
        lambda m: f"{m[1]}.input_proj.{m[2]}.{'conv' if m[3] == '0' else 'norm'}.{m[4]}",
    ),
    (
        re.compile(r"^model\.encoder\.(?:aifi|encoder)\.(\d+)\.layers\.(\d+)\.(.+)$"),
        lambda m: f"encoder.encoder.{m[1]}.layers.{m[2]}.{_hf_attention(m[3], 'norm2')}",
    ),
    (re.compile(r"^model\.encoder\.lateral_convs\.(.+)$"), lambda m: f"encoder.lateral_convs.{m[1]}"),
    (
        re.compile(r"^model\.encoder\.(fpn_blocks|pan_blocks)\.(\d+)\.(conv[1-4]|csp_rep[12])\.(.+)$"),
        lambda m: f"encoder.{m[1]}.{m[2]}.{_ELAN[m[3]]}.{m[4]}",
    ),
    (
        re.compile(r"^model\.encoder\.downsample_convs\.(\d+)\.conv([12])\.(.+)$"),
        lambda m: f"encoder.downsample_convs.{m[1]}.0.cv{m[2]}.{m[3]}",
    ),
    (
        re.compile(r"^model\.decoder\.layers\.(\d+)\.(.+)$"),
        lambda m: f"decoder.decoder.layers.{m[1]}.{_hf_attention(m[2], 'norm3')}",
    ),
    (re.compile(r"^model\.decoder\.lqe_layers\.(.+)$"), lambda m: f"decoder.decoder.lqe_layers.{m[1]}"),
    (re.compile(r"^model\.decoder\.class_embed\.(.+)$"), lambda m: f"decoder.dec_score_head.{m[1]}"),
    (re.compile(r"^model\.decoder\.bbox_embed\.(.+)$"), lambda m: f"decoder.dec_bbox_head.{m[1]}"),
    (re.compile(r"^model\.decoder\.(pre_bbox_head|query_pos_head)\.(.+)$"), lambda m: f"decoder.{m[1]}.{m[2]}"),
    (re.compile(r"^model\.decoder\.(up|reg_scale)$"), lambda m: f"decoder.{m[1]}"),
    (
        re.compile(r"^model\.enc_output\.([01])\.(.+)$"),
        lambda m: f"decoder.enc_output.{'proj' if m[1] == '0' else 'norm'}.{m[2]}",
    ),
    (
        re.compile(r"^model\.(enc_score_head|enc_bbox_head|denoising_class_embed)\.(.+)$"),
        lambda m: f"decoder.{m[1]}.{m[2]}",
    ),
]
_HF_TOP_LEVEL_HEADS = re.compile(r"^(class_embed|bbox_embed)\.(.+)$")
_HF_DERIVED = re.compile(
    r"^model\.(anchors|valid_mask|decoder\.(anchors|valid_mask|layers\.\d+\.encoder_attn\."
    r"num_points_scale))$"
)
_QKV = re.compile(r"^(.*\.self_attn)\.([qkv])_proj\.(weight|bias)$")


def from_hf(sd: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Hugging Face ``DFineForObjectDetection`` (or ``DFineModel``) → detkit; returns (state dict, unmapped keys).

    Separate q/k/v projections are packed into ``in_proj_weight``/``in_proj_bias``; the top-level tied copies
    ``class_embed``/``bbox_embed`` are used only when the ``model.decoder.*`` ones are absent.
    """
    if not any(k.startswith("model.backbone.") for k in sd):  # DFineModel state dict
        sd = {f"model.{k}": v for k, v in sd.items()}
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unmapped: list[str] = []
    for k, v in sd.items():
        if k.endswith("num_batches_tracked") or _HF_DERIVED.match(k):
            continue
        if m := _HF_TOP_LEVEL_HEADS.match(k):
            inner = f"model.decoder.{m[1]}.{m[2]}"
            if inner not in sd:
                k = inner
            else:
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
    for (prefix, kind), parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            unmapped.append(f"{prefix}.*_proj.{kind} (incomplete q/k/v)")
            continue
        out[f"{prefix}.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, unmapped


# -- official ↔ detkit -------------------------------------------------------------------------------------------
def from_official(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official (or detkit) layout → detkit: the derived tensors are dropped."""
    return {k: v for k, v in sd.items() if not _OFFICIAL_DERIVED.match(k)}


def to_official(sd: Mapping[str, torch.Tensor], num_points: list[int]) -> dict[str, torch.Tensor]:
    """detkit → official layout: adds the derived tensors the official code stores (points scale per decoder layer,
    the decoder container's copies of ``up``/``reg_scale``)."""
    out = dict(sd)
    scale = torch.cat([torch.full((p,), 1.0 / p) for p in num_points])
    for k in sd:
        if m := re.match(r"^decoder\.decoder\.layers\.(\d+)\.cross_attn\.sampling_offsets\.weight$", k):
            out[f"decoder.decoder.layers.{m[1]}.cross_attn.num_points_scale"] = scale.clone()
    out["decoder.decoder.up"] = sd["decoder.up"]
    out["decoder.decoder.reg_scale"] = sd["decoder.reg_scale"]
    return out


def to_detkit(sd: Mapping[str, torch.Tensor], source: str = "weights") -> dict[str, torch.Tensor]:
    """Any supported D-FINE layout → detkit's layout (DetkitError naming ``source`` when it is none of them)."""
    sd = unwrap(sd)
    layout = detect_layout(sd)
    if layout is None:
        raise DetkitError(
            f"{source}: not a D-FINE state dict (no HGNetv2 stem / LQE heads found)",
            hint="is this an RT-DETR checkpoint? use an rtdetr recipe for it",
        )
    if layout == "official":
        return from_official(sd)
    out, unmapped = from_hf(sd)
    if unmapped:
        raise DetkitError(
            f"{source}: {len(unmapped)} Hugging Face key(s) have no place in a D-FINE model: "
            + ", ".join(unmapped[:5])
            + (" …" if len(unmapped) > 5 else "")
        )
    return out


# -- loading -----------------------------------------------------------------------------------------------------
def _classes(sd: Mapping[str, torch.Tensor]) -> int | None:
    w = sd.get("decoder.enc_score_head.weight")
    return int(w.shape[0]) if w is not None else None


def _some(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")


def load_dfine_weights(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    reinit_head: bool = False,
    source: str = "",
    class_mismatch_message: str | None = None,
) -> None:
    """Load official, Hugging Face or detkit-layout D-FINE weights into ``model`` (a :class:`DFine`), strictly.

    Unknown or missing keys and shape mismatches raise one :class:`DetkitError` naming ``source`` and the keys.
    When only the class heads differ in shape (another class count), ``reinit_head=True`` keeps the model's fresh
    heads; without it the error names both class counts (or says ``class_mismatch_message``). With equal class
    counts, ``reinit_head`` together with ``class_mismatch_message`` re-initialises the heads too (another class map).
    """
    source = source or "weights"
    src = to_detkit(state_dict, source)
    target = model.state_dict()
    src = {k: v for k, v in src.items() if not k.endswith("num_batches_tracked") or k in target}
    unknown = sorted(set(src) - set(target))
    missing = sorted(k for k in set(target) - set(src) if not k.endswith("num_batches_tracked"))
    if unknown or missing:
        parts = [f"unexpected {_some(unknown)}"] if unknown else []
        parts += [f"missing {_some(missing)}"] if missing else []
        raise DetkitError(
            f"{source}: weights do not fit this D-FINE architecture: " + "; ".join(parts),
            hint="check that the recipe's model size (and decoder layers, widths) matches the weights",
        )
    mismatched = [k for k in src if tuple(src[k].shape) != tuple(target[k].shape)]
    heads = [k for k in mismatched if is_class_head_key(k)]
    other = [k for k in mismatched if not is_class_head_key(k)]
    if other:
        k = other[0]
        raise DetkitError(
            f"{source}: shape mismatch for {k}: weights {tuple(src[k].shape)} vs model {tuple(target[k].shape)}"
            + (f" (+{len(other) - 1} more)" if len(other) > 1 else ""),
            hint="check that the recipe's model size (widths, points, reg_max) matches the weights",
        )
    if heads and not reinit_head:
        msg = class_mismatch_message or (
            f"{source}: weights were trained for {_classes(src)} classes but the model has {_classes(target)}"
        )
        raise DetkitError(msg, hint="pass reinit_head=True (--reinit-head) to re-initialise the class heads")
    if heads or (reinit_head and class_mismatch_message is not None):
        for k in target:
            if is_class_head_key(k):
                src[k] = target[k]
    model.load_state_dict(src, strict=False)  # keys were checked above; only num_batches_tracked may be absent


# -- architecture from tensor shapes -----------------------------------------------------------------------------
def _count(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m[1] for k in sd if (m := rx.match(k))})


def _pick(candidates: list[float], ok: Callable[[float], bool], fallback: float) -> float:
    return next((c for c in candidates if ok(c)), fallback)


def _points_per_level(raw: Mapping[str, torch.Tensor], total: int, levels: int, preset: list[int]) -> list[int]:
    scale = next(
        (v for k, v in raw.items() if k.endswith(("cross_attn.num_points_scale", "encoder_attn.num_points_scale"))),
        None,
    )
    if scale is not None and scale.device.type != "meta":
        counts, i, values = [], 0, scale.tolist()
        while i < len(values):
            p = round(1.0 / values[i])
            counts.append(p)
            i += p
        if len(counts) == levels and sum(counts) == total:
            return counts
    if sum(preset) == total and len(preset) == levels:
        return list(preset)
    return [total // levels] * levels


def read_dfine_config(state_dict: Mapping[str, torch.Tensor]) -> DFineConfig | None:
    """The D-FINE architecture of ``state_dict`` (any supported layout) from its tensor shapes, or None when the
    weights are not D-FINE. Not readable from shapes (preset values are used): the attention head count (8), the
    query count (300) and the decoder activation (ReLU; DEIM-D-FINE files need ``activation: silu``)."""
    raw = unwrap(state_dict)
    if detect_layout(raw) is None:
        return None
    try:
        sd = to_detkit(raw)
    except DetkitError:
        return None
    stem1, stem4 = sd["backbone.stem.stem1.conv.weight"], sd["backbone.stem.stem4.conv.weight"]
    stem = (3, int(stem1.shape[0]), int(stem4.shape[0]))
    variant = next((name for name, v in HGNETV2.items() if v["stem"] == stem), None)
    if variant is None:
        return None
    stage_out = [s[2] for s in HGNETV2[variant]["stages"]]
    levels = _count(sd, r"^encoder\.input_proj\.(\d+)\.conv\.weight$")
    in_ch = [int(sd[f"encoder.input_proj.{i}.conv.weight"].shape[1]) for i in range(levels)]
    return_stages = [stage_out.index(c) + 1 for c in in_ch if c in stage_out]
    encoder_dim = int(sd["encoder.input_proj.0.conv.weight"].shape[0])
    size = {"B0": "n" if encoder_dim == 128 else "s", "B2": "m", "B4": "l", "B5": "x"}[variant]
    preset = PRESETS[size]
    branch = int(sd["encoder.fpn_blocks.0.cv2.0.conv1.conv.weight"].shape[0])
    blocks = _count(sd, r"^encoder\.fpn_blocks\.0\.cv2\.0\.bottlenecks\.(\d+)\.")
    expansion = _pick(
        [preset["expansion"], 2 * branch / encoder_dim, (2 * branch + 1) / encoder_dim],
        lambda e: round(e * encoder_dim // 2) == branch,
        2 * branch / encoder_dim,
    )
    depth_mult = _pick([preset["depth_mult"], blocks / 3], lambda d: round(3 * d) == blocks, blocks / 3)
    hidden_dim = int(sd["decoder.query_pos_head.layers.1.weight"].shape[0])
    layers = _count(sd, r"^decoder\.decoder\.layers\.(\d+)\.")
    total_points = int(sd["decoder.decoder.layers.0.cross_attn.attention_weights.weight"].shape[0]) // 8
    reg_scale = sd.get("decoder.reg_scale")
    return DFineConfig(
        size=size,
        backbone=variant,
        use_lab="backbone.stem.stem1.lab.scale" in sd,
        return_stages=return_stages,
        encoder_dim=encoder_dim,
        encoder_ffn_dim=int(sd["encoder.encoder.0.layers.0.linear1.weight"].shape[0]),
        encoder_layers=_count(sd, r"^encoder\.encoder\.0\.layers\.(\d+)\."),
        expansion=expansion,
        depth_mult=depth_mult,
        hidden_dim=hidden_dim,
        decoder_ffn_dim=int(sd["decoder.decoder.layers.0.linear1.weight"].shape[0]),
        decoder_layers=layers,
        num_points=_points_per_level(raw, total_points, levels, preset["num_points"]),
        reg_max=int(sd["decoder.dec_bbox_head.0.layers.2.weight"].shape[0]) // 4 - 1,
        reg_scale=(
            float(reg_scale.reshape(-1)[0])
            if reg_scale is not None and reg_scale.device.type != "meta"
            else preset["reg_scale"]
        ),
        num_denoising=100 if "decoder.denoising_class_embed.weight" in sd else 0,
    )
