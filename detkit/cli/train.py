"""``detkit train recipe:NAME --data DATASET [options] [key=value ...]``; DDP via ``torchrun -m detkit train``."""

from __future__ import annotations

from pathlib import Path

import typer

from detkit.cli.ui import UI
from detkit.errors import DetkitError

HELP = """Train RT-DETR on a dataset.

RECIPE is `recipe:NAME` (see `detkit recipes list`) or a YAML file; any recipe field can follow as a dotted
`key=value` override (e.g. `train.lr=2e-4 model.num_queries=100`). The run goes to runs/train/exp, exp2, ...
unless --name is given. Multi-GPU / multi-process: `torchrun --nproc_per_node 2 -m detkit train ...`."""


def _split_args(args: list[str]) -> tuple[str | None, list[str]]:
    recipe, overrides = None, []
    for a in args:
        if "=" in a:
            overrides.append(a)
        elif recipe is None:
            recipe = a
        else:
            raise DetkitError(f"unexpected argument {a!r}", hint="give one recipe followed by key=value overrides")
    return recipe, overrides


def train_command(
    args: list[str] = typer.Argument(
        None, metavar="RECIPE [KEY=VALUE ...]", help="recipe:NAME or a YAML file, then dotted overrides."
    ),
    data: Path = typer.Option(
        None,
        "--data",
        help="dataset.yaml (or its folder) with train and val splits "
        "(with --resume: the run's own dataset unless given).",
    ),
    epochs: int = typer.Option(None, "--epochs", help="train.epochs"),
    batch: int = typer.Option(None, "--batch", help="train.batch (total over processes)"),
    imgsz: int = typer.Option(None, "--imgsz", help="train.imgsz (multiple of 32)"),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:N"),
    workers: int = typer.Option(None, "--workers", help="data-loading worker processes"),
    seed: int = typer.Option(None, "--seed", help="train.seed"),
    out: Path = typer.Option(Path("runs/train"), "--out", help="parent folder of the run folders"),
    name: str = typer.Option(None, "--name", help="run folder name (default: exp, exp2, ...)"),
    weights: Path = typer.Option(
        None, "--weights", help="start from a detkit checkpoint or official / Hugging Face weights"
    ),
    reinit_head: bool = typer.Option(
        False, "--reinit-head", help="allow weights trained on other classes: re-initialise the class heads"
    ),
    resume: Path = typer.Option(
        None, "--resume", help="continue a run folder (or its last.pt) exactly where it stopped"
    ),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object with the results on stdout"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only warnings and errors"),
) -> None:
    from detkit.stages.train import train
    from detkit.utils.distributed import env_info

    main_process = env_info().is_main  # under torchrun only rank 0 talks
    ui = UI(json_mode=json_out and main_process, quiet=quiet or not main_process)
    recipe, overrides = _split_args(list(args or []))
    if recipe is None and resume is None:
        raise DetkitError(
            "no recipe given", hint="e.g. detkit train recipe:rtdetr-r18 --data DATASET (see `detkit recipes list`)"
        )
    if recipe is not None and resume is not None:
        raise DetkitError(
            "--resume continues a run with its own recipe.yaml; do not also pass a recipe",
            hint="drop the recipe argument",
        )

    def on_start(prepared) -> None:
        for o in prepared.overrides:
            ui.print(f"[cyan]override[/] {o}")
        if prepared.resumed_from:
            ui.print(f"resuming from [bold]{prepared.resumed_from}[/] on the dataset [bold]{prepared.dataset}[/]")
        ui.print(f"run folder: [bold]{prepared.run_dir}[/]")

    with ui.progress():
        result = train(
            recipe or "",
            data,
            epochs=epochs,
            batch=batch,
            imgsz=imgsz,
            device=device,
            workers=workers,
            seed=seed,
            out=out,
            name=name,
            weights=weights,
            reinit_head=reinit_head,
            resume=resume,
            overrides=overrides,
            on_start=on_start,
        )
    if not main_process:
        return
    rows = [(r["epoch"], r["train_loss"], r.get("AP"), r.get("AP50"), r.get("img_per_s")) for r in result.history]
    ui.table("training", ["epoch", "train loss", "val AP", "val AP50", "img/s"], rows)
    ui.print(
        f"stopped: {result.stopped}; best val AP {result.best_ap if result.best_ap is not None else 'n/a'} "
        f"(epoch {result.best_epoch}); {result.amp} on {result.device}"
    )
    ui.artifacts("run", result.run_dir)
    ui.artifacts("best checkpoint", result.run_dir / "checkpoints" / "best.pt")
    ui.artifacts("metrics", result.run_dir / "metrics.csv")
    ui.emit_json(result.to_dict())


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP, context_settings={"allow_extra_args": False})(train_command)
