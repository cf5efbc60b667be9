"""Copy (or hard-link) one image file into a dataset being written (its folder already exists)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from detkit.errors import DetkitError


def copy_image(src: Path, dst: Path, link: bool = False) -> None:
    try:
        if link:
            try:
                os.link(src, dst)
                return
            except FileNotFoundError:
                raise
            except OSError:
                pass  # another file system, or links not allowed: copy instead
        shutil.copyfile(src, dst)
    except FileNotFoundError:
        if not src.is_file():
            raise DetkitError("image file not found", path=src) from None
        raise
    except IsADirectoryError:
        raise DetkitError("expected an image file, found a folder", path=src) from None
