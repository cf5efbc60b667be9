"""detkit checkpoints: a dict of tensors and plain values, written atomically, read with ``weights_only=True``.

Contents: ``format``, ``version``, ``detkit_version``, ``recipe`` (resolved, plain dict), ``class_map``
(``ClassMap.to_dict()``), ``model`` (state dict), ``ema`` (state dict or None) and, when written by training,
``optimizer``, ``scheduler``, ``scaler``, ``epoch``, ``step``, ``rng``. Weights alone can also be stored as
``.safetensors``. Foreign weight files (official ``.pth``, Hugging Face safetensors) are read by
:func:`read_weights` and converted by :mod:`detkit.models.rtdetr.convert_weights`.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from detkit import __version__
from detkit.data.classmap import ClassMap
from detkit.errors import DetkitError
from detkit.utils.atomic import atomic_path

FORMAT = "detkit-checkpoint"
VERSION = 1
TRAINING_KEYS = ("optimizer", "scheduler", "scaler", "epoch", "step", "rng")


@dataclass
class Checkpoint:
    path: Path
    model: dict[str, torch.Tensor]
    class_map: ClassMap
    recipe: dict[str, Any]
    ema: dict[str, torch.Tensor] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    detkit_version: str = ""

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to evaluate/deploy: the EMA model when there is one."""
        return self.ema if self.ema is not None else self.model


def save_checkpoint(
    path: str | Path,
    *,
    model: Mapping[str, torch.Tensor],
    class_map: ClassMap,
    recipe: Mapping[str, Any],
    ema: Mapping[str, torch.Tensor] | None = None,
    **training: Any,
) -> Path:
    """Write a checkpoint atomically. ``training`` may hold optimizer, scheduler, scaler, epoch, step, rng."""
    unknown = sorted(set(training) - set(TRAINING_KEYS))
    if unknown:
        raise ValueError(f"unknown checkpoint fields {unknown}; allowed: {list(TRAINING_KEYS)}")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "detkit_version": __version__,
        "recipe": dict(recipe),
        "class_map": class_map.to_dict(),
        "model": {k: v.detach() for k, v in model.items()},
        "ema": {k: v.detach() for k, v in ema.items()} if ema is not None else None,
        **training,
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _torch_load(path: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one line; never executes pickled code."""
    if not path.exists():
        raise DetkitError(f"{what} not found", path=path)
    if not path.is_file():
        raise DetkitError(f"{what} is not a file", path=path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": irrelevant to the user
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise DetkitError(
                f"{what} contains Python objects other than tensors and plain values (refused, nothing was executed)",
                hint="only load files from sources you trust; detkit never unpickles arbitrary objects",
                path=path,
            ) from None
        raise DetkitError(f"{what} is not a readable PyTorch file ({first})", path=path) from None
    except Exception as e:  # noqa: BLE001 - the weights-only unpickler fails in many ways on foreign bytes
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, EOFError) or any(s in msg for s in ("central directory", "zip archive", "truncated")):
            raise DetkitError(
                f"{what} is truncated or corrupt ({msg.split('. ')[0][:100]})",
                hint="re-copy or re-download the file",
                path=path,
            ) from None
        raise DetkitError(
            f"{what} is not a PyTorch file (its bytes do not decode as tensors and plain values)", path=path
        ) from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a detkit checkpoint; anything else (foreign weights, other pickles) is a clear error."""
    path = Path(path)
    obj = _torch_load(path, "checkpoint")
    if not isinstance(obj, Mapping) or obj.get("format") != FORMAT:
        raise DetkitError(
            "not a detkit checkpoint",
            hint="official RT-DETR or Hugging Face weights go with a recipe: `recipe:NAME --weights FILE`",
            path=path,
        )
    if int(obj.get("version", 0)) > VERSION:
        raise DetkitError(
            f"checkpoint format version {obj.get('version')} is newer than this detkit understands ({VERSION})",
            hint="upgrade detkit",
            path=path,
        )
    try:
        class_map = ClassMap.from_dict(obj["class_map"])
        model = dict(obj["model"])
        recipe = dict(obj["recipe"])
    except (KeyError, TypeError) as e:
        raise DetkitError(f"checkpoint is incomplete (missing or malformed {e})", path=path) from None
    ema = obj.get("ema")
    training = {k: obj[k] for k in TRAINING_KEYS if k in obj}
    return Checkpoint(
        path,
        model,
        class_map,
        recipe,
        dict(ema) if ema is not None else None,
        training,
        str(obj.get("detkit_version", "")),
    )


def save_weights(
    path: str | Path, state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> Path:
    """Weights alone as ``.safetensors`` (atomic)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata or {}))
    return path


@dataclass
class WeightsFile:
    """What a weights file holds: a state dict (any layout) and, for a detkit checkpoint, its class map and recipe."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    class_map: ClassMap | None = None
    recipe: dict[str, Any] | None = None


WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def read_weights_file(path: str | Path) -> WeightsFile:
    """Read a weights file once, whatever it is.

    ``.safetensors`` → its tensors; a detkit checkpoint → its EMA (else model) weights, class map and recipe;
    official training files → ``ema.module`` / ``model``; a bare state dict (``.pth``/``.bin``) as is. Layout
    conversion happens later (:mod:`detkit.models.rtdetr.convert_weights`).
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise DetkitError("weights file not found", path=path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            msg = str(e).splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise DetkitError(
                f"cannot read safetensors file: {msg}", hint="re-copy or re-download the file", path=path
            ) from None
        if not tensors:
            raise DetkitError("safetensors file holds no tensors", path=path)
        return WeightsFile(path, tensors)
    obj = _torch_load(path, "weights file")
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        try:
            class_map = ClassMap.from_dict(obj["class_map"])
            state = dict(obj["ema"] if obj.get("ema") is not None else obj["model"])
            return WeightsFile(path, state, class_map, dict(obj["recipe"]))
        except (KeyError, TypeError) as e:
            raise DetkitError(f"checkpoint is incomplete (missing or malformed {e})", path=path) from None
    from detkit.models.rtdetr.convert_weights import unwrap_official

    sd = unwrap_official(obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DetkitError("weights file holds no state dict of tensors", path=path)
    return WeightsFile(path, dict(sd))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], ClassMap | None]:
    """(state dict, class map or None): :func:`read_weights_file` for callers that need no recipe."""
    w = read_weights_file(path)
    return w.state_dict, w.class_map
