"""Secret key files (CURVE secret keys, signing keys, UDP link keys): the one
rule every key the toolkit reads must meet. Standard library only."""

from __future__ import annotations

import os
import stat


def private_file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot hold a secret key, as one line (e.g. ``mode 0644 lets
    others read it; run chmod 600 PATH``), or None when it is a regular file that
    only its owner can read (as ssh asks of its keys)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except OSError as e:
        return f"cannot read it ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    mode = stat.S_IMODE(st.st_mode)
    if os.name == "posix" and mode & 0o077:
        return f"mode {mode:04o} lets others read it; run chmod 600 {p}"
    return None
