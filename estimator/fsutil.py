"""Small file-system helpers shared by the modules that write user-visible files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def ordinary_mode(fd: int) -> None:
    """Give a temp file from tempfile.mkstemp (mode 0600) the mode any new file of the user
    gets (0666 minus the umask), before it is renamed into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write `text` to `path` atomically: a temp file in the same folder, fsync, then rename.

    With overwrite=False an existing file is never replaced: the no-clobber check and the
    rename are one atomic step (a hard link) where the file system allows it, and
    FileExistsError is raised. OSError propagates for the caller to word.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        ordinary_mode(fd)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # fails if the target exists, even if it appeared meanwhile
            except FileExistsError:
                raise
            except OSError:  # a file system without hard links
                if target.exists():
                    raise FileExistsError(str(target)) from None
                os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target
