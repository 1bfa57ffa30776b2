"""Small file-system helpers shared by the modules that write user-visible files."""

from __future__ import annotations

import os


def ordinary_mode(fd: int) -> None:
    """Give a temp file from tempfile.mkstemp (mode 0600) the mode any new file of the user
    gets (0666 minus the umask), before it is renamed into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)
