"""``train()``: the library entry point behind ``detkit train`` (same arguments as the CLI).

It resolves the recipe (file + typed overrides), checks the dataset against it and against any starting
weights, prepares the run folder (``recipe.yaml`` = the fully resolved recipe) and runs the :class:`Trainer`,
in one process or under ``torchrun``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from detkit.data.classmap import ClassMap
from detkit.data.dataset import load_dataset
from detkit.engine.run_record import dataset_record, recorded_dataset
from detkit.engine.trainer import Trainer, TrainResult, read_history
from detkit.errors import DetkitError
from detkit.utils import distributed
from detkit.utils.atomic import atomic_write_text
from detkit.utils.device import resolve_device
from detkit.utils.run_dirs import in_use, next_run_dir

# typer options -> recipe fields
OPTION_FIELDS = {
    "epochs": "train.epochs",
    "batch": "train.batch",
    "imgsz": "train.imgsz",
    "device": "train.device",
    "workers": "train.workers",
    "seed": "train.seed",
}


@dataclass
class PreparedRun:
    recipe: Any
    overrides: list[str]
    run_dir: Path
    resumed_from: Path | None
    dataset: Path | None = None  # the dataset file in use (a resume finds the run's own unless data is given)


def option_overrides(**options: Any) -> list[str]:
    """``--epochs 3`` etc. as ``train.epochs=3`` overrides (None = not given)."""
    return [f"{OPTION_FIELDS[k]}={v}" for k, v in options.items() if v is not None]


def _new_run_dir(out: Path, name: str | None) -> Path:
    """``out/exp``, ``exp2``, ... (:func:`detkit.utils.run_dirs.next_run_dir`); a chosen ``name`` in use is refused,
    since continuing that run is what ``resume`` does."""
    if name and in_use(out / name):
        raise DetkitError(
            f"run folder {out / name} already exists",
            hint=f"choose another name, or continue it with resume={out / name}",
            params=("name", "resume"),
        )
    return next_run_dir(out, name or "exp")


def _resume_paths(resume: str | Path) -> tuple[Path, Path]:
    p = Path(resume)
    if p.is_dir():
        ckpt = p / "checkpoints" / "last.pt"
        run_dir = p
    elif p.is_file():
        ckpt, run_dir = p, p.parent.parent
    else:
        raise DetkitError(
            f"nothing to resume at {p}",
            params="resume",
            hint="pass a run folder (runs/train/exp) or its checkpoints/last.pt",
        )
    if not ckpt.is_file():
        raise DetkitError(f"run {run_dir} has no checkpoints/last.pt to resume from", path=run_dir)
    if not (run_dir / "recipe.yaml").is_file():
        raise DetkitError(
            f"run {run_dir} has no recipe.yaml", hint="resume a folder written by detkit train", path=run_dir
        )
    return run_dir, ckpt


def _save_recipe(recipe: Any, path: Path) -> None:
    import yaml

    atomic_write_text(path, yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))


def train(
    recipe: str | Path = "recipe:rtdetr-r18",
    data: str | Path | None = None,
    *,
    epochs: int | None = None,
    batch: int | None = None,
    imgsz: int | None = None,
    device: str | None = None,
    workers: int | None = None,
    seed: int | None = None,
    out: str | Path = "runs/train",
    name: str | None = None,
    weights: str | Path | None = None,
    reinit_head: bool = False,
    resume: str | Path | None = None,
    overrides: Sequence[str] = (),
    model: torch.nn.Module | None = None,
    on_start: Any = None,
) -> TrainResult:
    """Train the recipe's detector on ``data`` and return where the run went and how it ended.

    ``resume`` continues a run folder from its ``last.pt`` with the run's own ``recipe.yaml`` (``recipe`` is
    ignored; options and ``overrides`` change the run and are written back to ``recipe.yaml``) and, unless
    ``data`` is given, the dataset the run recorded (``detkit.engine.run_record``), checked by class map;
    ``weights`` starts from a checkpoint or official/HF weights.
    ``on_start(prepared)`` is called once the run is set up (the CLI prints the applied overrides there).
    """
    from detkit.config.recipe import resolve_recipe

    if data is None and resume is None:
        raise DetkitError(
            "no dataset given: data is required to start a run (a resumed run remembers its own)",
            hint="pass data=path/to/dataset.yaml",
            params="data",
        )
    all_overrides = option_overrides(
        epochs=epochs, batch=batch, imgsz=imgsz, device=device, workers=workers, seed=seed
    ) + list(overrides)

    ckpt = None
    if resume is not None:
        if weights is not None:
            raise DetkitError(
                "resume and weights cannot be combined",
                hint="resume continues the run's own weights",
                params=("resume", "weights"),
            )
        run_dir, ckpt_path = _resume_paths(resume)
        dataset, given = (load_dataset(data), str(data)) if data is not None else recorded_dataset(run_dir)
        resolved = resolve_recipe(run_dir / "recipe.yaml", overrides=all_overrides)
        from detkit.models.checkpoint import load_checkpoint

        ckpt = load_checkpoint(ckpt_path)
        if "optimizer" not in ckpt.training:
            raise DetkitError("checkpoint has no training state to resume from", path=ckpt_path)
        dataset.class_map.check_same(
            ckpt.class_map,
            f"dataset {dataset.path}",
            f"checkpoint {ckpt_path}",
            hint="resume with the dataset the run was trained on",
        )
        resumed_from = ckpt_path
    else:
        dataset, given = load_dataset(data), str(data)
        resolved = resolve_recipe(recipe, overrides=all_overrides)
        run_dir = None
        resumed_from = None
    check_training_sizes(resolved)

    # the model and its starting weights before any folder is written: bad weights leave nothing behind
    torch.manual_seed(resolved.train.seed)
    if model is None:
        model = resolved.family.build_model(resolved.model, len(dataset.class_map))
    if weights is not None:
        _load_weights(model, weights, resolved, dataset.class_map, reinit_head)

    dist_info = distributed.env_info()
    dev = resolve_device(resolved.train.device, dist_info.local_rank)
    dist_info = distributed.init_distributed(dev)
    try:
        if run_dir is None:
            run_dir = distributed.broadcast_object(_new_run_dir(Path(out), name) if dist_info.is_main else None)
        run_dir = Path(run_dir)
        if dist_info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if resume is None:
                _save_recipe(resolved, run_dir / "recipe.yaml")
        record = dataset_record(dataset, given, run_dir)
        prepared = PreparedRun(resolved, all_overrides, run_dir, resumed_from, dataset.path)
        if on_start is not None and dist_info.is_main:
            on_start(prepared)

        torch.manual_seed(resolved.train.seed + dist_info.rank)  # per-process randomness (denoising noise)
        trainer = Trainer(model, resolved, dataset, run_dir, dev, dist_info=dist_info, run_info={"dataset": record})
        if ckpt is not None:
            trainer.load_state(ckpt.model, ckpt.ema, ckpt.training, read_history(run_dir / "metrics.csv"))
            if trainer.epoch >= resolved.train.epochs:
                raise DetkitError(
                    f"run {run_dir} already finished its {resolved.train.epochs} epochs",
                    hint="raise the epoch count (epochs=N)",
                    params="epochs",
                )
            if all_overrides and dist_info.is_main:  # the next resume continues with what this one changed
                _save_recipe(resolved, run_dir / "recipe.yaml")
        return trainer.fit()
    finally:
        distributed.cleanup()


def check_training_sizes(recipe: Any) -> None:
    """Query selection keeps ``model.num_queries`` tokens, so every training size (``train.imgsz`` and each
    multi-scale size) must give at least that many encoder tokens (the family counts them, e.g. (S/8)² + (S/16)² +
    (S/32)² for three levels). Checked before any work starts."""
    queries = recipe.model.num_queries
    for size in sorted({recipe.train.imgsz, *(recipe.train.scales() or [])}):
        tokens = recipe.family.feature_tokens(recipe.model, size)
        if tokens < queries:
            what = "train.imgsz" if size == recipe.train.imgsz else "the multi-scale size"
            raise DetkitError(
                f"{what} {size} gives {tokens} feature tokens, fewer than the {queries} queries",
                hint="use a larger imgsz (or multi-scale factors), or fewer queries (model.num_queries=N)",
            )


def _load_weights(
    model: torch.nn.Module, weights: str | Path, recipe: Any, class_map: ClassMap, reinit_head: bool
) -> None:
    """Start from a detkit checkpoint (its EMA weights) or official / Hugging Face weights.

    A checkpoint trained on another class map is refused, naming both, unless ``reinit_head`` is set.
    """
    from detkit.models.checkpoint import read_weights_file
    from detkit.models.families import check_weights_family

    path = Path(weights)
    wf = read_weights_file(path)
    state, weights_map = wf.state_dict, wf.class_map  # the class map only when the file is a detkit checkpoint
    check_weights_family(recipe.family, state, wf.recipe, str(path))
    mismatch = None
    if weights_map is not None and weights_map != class_map:
        if not reinit_head:
            class_map.check_same(
                weights_map,
                "the dataset",
                f"weights {path}",
                hint="set reinit_head to re-initialise the class heads for the dataset's classes",
                params="reinit_head",
            )
        mismatch = f"{path}: class map differs from the dataset's"
    recipe.family.load_weights(model, state, reinit_head=reinit_head, source=str(path), class_mismatch_message=mismatch)
