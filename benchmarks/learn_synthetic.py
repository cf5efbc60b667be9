"""Does training really learn? Recipes from random init on the synthetic shapes set, on a CPU, side by side.

Generates the synthetic dataset (1,500 train / 200 val images at 256 px, unless --data is given), then trains
every recipe of ``--recipes`` (default ``rtdetr-r18-cpu``) one after the other on it, each within the same
wall-time budget (default 20 minutes: the trainer ends the run, validated and saved, within it; the last epoch may
be partial), and prints each learning curve (val AP50 / AP of the EMA model after every epoch against wall-clock
minutes) and one table comparing the recipes: the best AP50 and AP reached by each minute mark.
Goal of the CPU profile: val AP50 >= 0.5 within 20 minutes on a 2-core CPU.

``rtdetr-r18-cpu`` follows what the official implementation needed to learn from scratch on such a CPU
(docs/training.md): the narrow variant (width 128, FFN 512, 100 queries, 3 decoder layers; backbone still R18),
lr 2e-4 on all parameters, a 200-iteration warmup, batch 8, flip + resize only, a short EMA.

    .venv/bin/python benchmarks/learn_synthetic.py [--minutes 20] [--recipes rtdetr-r18-cpu,dfine-n-cpu]
        [--train 1500] [--val 200] [--out runs/learn] [key=value ...]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

DEFAULT_RECIPES = "rtdetr-r18-cpu"  # the narrow CPU profile; its file documents why each setting is there


def best_by(history: list[dict], minutes: float, key: str) -> float | None:
    """The best ``key`` of the epochs validated within ``minutes`` of wall time (None before the first)."""
    values = [r[key] or 0.0 for r in history if r.get("wall_minutes") is not None and r["wall_minutes"] <= minutes]
    return max(values) if values else None


def comparison_rows(curves: dict[str, list[dict]], marks: list[float]) -> list[str]:
    """One line per recipe: best AP50 / AP by each minute mark (80 columns for up to 4 marks)."""
    head = f"{'recipe':<20}" + "".join(f"{f'{m:g} min AP50/AP':>15}" for m in marks)
    lines = [head, "-" * len(head)]
    for name, history in curves.items():
        cells = []
        for m in marks:
            a50, ap = best_by(history, m, "AP50"), best_by(history, m, "AP")
            cells.append(f"{'-':>15}" if a50 is None else f"{a50:>9.3f}/{ap:.3f}")
        lines.append(f"{name[:20]:<20}" + "".join(cells))
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="wall-time budget of each training run")
    ap.add_argument(
        "--recipes", default=DEFAULT_RECIPES, help="comma-separated recipe names, trained one after another"
    )
    ap.add_argument("--data", type=Path, default=None, help="an existing dataset (default: generate the synthetic one)")
    ap.add_argument("--train", type=int, default=1500)
    ap.add_argument("--val", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("runs/learn"))
    ap.add_argument("--epochs", type=int, default=100, help="upper bound; the time budget normally ends the run")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("extra", nargs="*", help="more key=value overrides")
    args = ap.parse_args(argv)

    import torch

    from detkit.stages.train import train
    from detkit.utils.progress import progress_display

    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data
    if data is None:
        from detkit.data.synth import generate_synthetic

        data = args.out / f"synth_{args.train}_{args.val}"
        if not (data / "dataset.yaml").is_file():
            t0 = time.perf_counter()
            shutil.rmtree(data, ignore_errors=True)
            generate_synthetic(data, train=args.train, val=args.val, calib=0, test=0, imgsz=256, seed=0)
            print(f"generated {data} ({args.train} train / {args.val} val) in {time.perf_counter() - t0:.1f} s")
    overrides = [f"train.time_limit_minutes={args.minutes}"] + list(args.extra)
    recipes = [r.strip().removeprefix("recipe:") for r in args.recipes.split(",") if r.strip()]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; recipes {', '.join(recipes)}; overrides:")
    for o in overrides:
        print(f"  {o}")
    curves: dict[str, list[dict]] = {}
    for name in recipes:
        t0 = time.perf_counter()
        with progress_display():
            result = train(
                f"recipe:{name}", data, epochs=args.epochs, out=args.out / "runs", name=name, overrides=overrides
            )
        wall = (time.perf_counter() - t0) / 60
        curves[name] = result.history
        print(f"\n{name}: learning curve (EMA model, val split), run {result.run_dir}:")
        print(f"{'epoch':>5} {'step':>6} {'minutes':>8} {'loss':>8} {'AP50':>7} {'AP':>7} {'img/s':>6}")
        for r in result.history:
            print(
                f"{r['epoch']:>5} {r['step']:>6} {r['wall_minutes']:>8.1f} {r['train_loss']:>8.3f} "
                f"{r['AP50'] or 0:>7.3f} {r['AP'] or 0:>7.3f} {r['img_per_s']:>6.1f}"
            )
        best50 = max((r["AP50"] or 0.0) for r in result.history) if result.history else 0.0
        print(f"best val AP50 {best50:.3f} after {wall:.1f} min wall time ({result.stopped})")
    marks = sorted({m for m in (5.0, 10.0, 15.0, 20.0) if m < args.minutes} | {args.minutes})[-4:]
    print(f"\nside by side (best val AP50 / AP by each mark, {args.minutes:g} min budget each):")
    print("\n".join(comparison_rows(curves, marks)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
