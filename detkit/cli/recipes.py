"""``detkit recipes list | show``: the shipped recipes, resolved, with parameter count and GFLOPs."""

from __future__ import annotations

import typer

from detkit.cli.ui import UI

app = typer.Typer(no_args_is_help=True, help="List and inspect training recipes (recipes/*.yaml).")


@app.command("list")
def list_command(
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """The shipped recipes with their backbone and parameter count."""
    from detkit.config.recipe import RECIPES_DIR, list_recipes, resolve_recipe
    from detkit.models.profile import profile_config

    ui = UI(json_mode, quiet)
    rows, items = [], []
    for name in list_recipes():
        recipe = resolve_recipe(f"recipe:{name}")
        prof = profile_config(recipe.model, imgsz=None)
        facts = recipe.family.describe(recipe.model)
        backbone, layers = facts.get("backbone", ""), facts.get("decoder_layers", "")
        rows.append([name, recipe.family.name, backbone, layers, f"{prof.params / 1e6:.2f}M", recipe.description])
        items.append(
            {
                "name": name,
                "family": recipe.family.name,
                "backbone": backbone,
                "decoder_layers": int(layers) if layers.isdigit() else layers,
                "params": prof.params,
                "description": recipe.description,
            }
        )
    ui.table(
        "recipes (use as recipe:NAME)", ["name", "family", "backbone", "decoder layers", "params", "description"], rows
    )
    ui.print(f"recipe files: {RECIPES_DIR}")
    ui.emit_json({"recipes": items, "dir": str(RECIPES_DIR)})


@app.command("show")
def show_command(
    name: str = typer.Argument(..., help="Recipe name (rtdetr-r18, recipe:rtdetr-r18) or a YAML file."),
    overrides: list[str] = typer.Argument(
        None, help="key=value overrides, e.g. model.decoder_layers=3.", show_default=False
    ),
    imgsz: str = typer.Option(
        None, "--imgsz", help="Input size for GFLOPs: S or HxW, e.g. 640 or 480x640 [default: the recipe's]."
    ),
    classes: int = typer.Option(80, "--classes", min=1, help="Class count for parameters and GFLOPs."),
    json_mode: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", help="Only warnings and errors."),
) -> None:
    """The fully resolved recipe (base + file + overrides) with parameters and GFLOPs at the input size.

    GFLOPs = 2 × multiply-accumulates of convolutions and matrix products for one image (grid_sample, norms and
    element-wise ops not counted).
    """
    import re

    import yaml
    from rich.syntax import Syntax

    from detkit.api import DEFAULT_IMGSZ, _size_hw
    from detkit.config.recipe import PREFIX, recipe_path, resolve_recipe
    from detkit.errors import DetkitError
    from detkit.models.profile import profile_config

    ui = UI(json_mode, quiet)
    source = name if name.startswith(PREFIX) or name.endswith((".yaml", ".yml")) else PREFIX + name
    recipe = resolve_recipe(source, overrides or [])
    data = recipe.model_dump(mode="json")
    if imgsz:
        parts = re.split(r"[x×,]", imgsz.strip().lower())
        if not 1 <= len(parts) <= 2 or not all(p.strip().isdigit() for p in parts):
            raise DetkitError(f"--imgsz {imgsz!r}: expected S or HxW, e.g. 640 or 480x640")
        size = _size_hw(int(parts[0]) if len(parts) == 1 else [int(p) for p in parts])
    else:
        train = data.get("train") or {}
        size = _size_hw(train.get("imgsz", DEFAULT_IMGSZ))
    prof = profile_config(recipe.model, classes, size)
    ui.print(Syntax(yaml.safe_dump(data, sort_keys=False), "yaml", background_color="default"))
    ui.table(
        f"{recipe.name or name} at {size[0]}×{size[1]}, {classes} classes",
        ["params", "trainable", "backbone", "encoder", "decoder", "GFLOPs"],
        [
            [
                f"{prof.params:,}",
                f"{prof.trainable:,}",
                f"{prof.by_part['backbone']:,}",
                f"{prof.by_part['encoder']:,}",
                f"{prof.by_part['decoder']:,}",
                f"{prof.gflops:.1f}",
            ]
        ],
    )
    ui.print(f"recipe file: {recipe_path(source)}")
    ui.emit_json({"recipe": data, "source": str(recipe_path(source)), "num_classes": classes, **prof.to_dict()})
