"""Copy (or hard-link) one image file into a dataset being written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from detkit.errors import DetkitError


def copy_image(src: Path, dst: Path, link: bool = False) -> None:
    if not src.is_file():
        raise DetkitError("image file not found", path=src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system: copy instead
    shutil.copyfile(src, dst)
