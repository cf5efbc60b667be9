"""The command-line spelling of library parameters: errors name parameters (``split``), the CLI adds its flags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# library parameters whose CLI option has another name
ALIASES = {
    "dataset": "data",
    "batch_size": "batch",
    "batch_sizes": "batch",
    "n": "preview",
    "class_map": "classes",
    "method": "int8_method",
}


def invoked_command(root: Any, args: Sequence[str]) -> Any:
    """The (sub)command that ``args`` run: group names are followed until a plain command is reached.

    ``root`` is a click command (typer's or click's: only ``commands`` and ``params`` are used)."""
    cmd = root
    for arg in args:
        if not hasattr(cmd, "commands"):
            break
        cmd = cmd.commands.get(arg, cmd)
    return cmd


def flag_hint(root: Any, args: Sequence[str], params: Sequence[str]) -> str | None:
    """``"on the command line: --split"`` for the options of the invoked command that set ``params``."""
    by_name = {p.name: p for p in invoked_command(root, args).params if p.param_type_name == "option"}
    flags = []
    for name in params:
        opt = by_name.get(name) or by_name.get(ALIASES.get(name, ""))
        if opt is not None:
            longs = [o for o in opt.opts if o.startswith("--")]
            flags.append((longs or opt.opts)[0])
    return f"on the command line: {', '.join(flags)}" if flags else None


def with_flags(hint: str | None, root: Any, args: Sequence[str], params: Sequence[str]) -> str | None:
    """``hint`` with the flags of ``params`` added (the hint unchanged when the command has none of them)."""
    extra = flag_hint(root, args, params) if params else None
    if extra is None:
        return hint
    return f"{hint} ({extra})" if hint else extra
