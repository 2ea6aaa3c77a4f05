"""Child-process checks shared by the tests that start processes."""

from __future__ import annotations

import os
from pathlib import Path

# Python's own helper: the first shared-memory segment a process creates (the env workers do)
# starts one multiprocessing resource tracker, which lives as long as that process and cleans
# up after it. It is not a process a test started.
PYTHON_HELPERS = ("multiprocessing.resource_tracker",)


def no_children_left() -> bool:
    """No live child processes of this test process (zombies and Python's resource tracker excluded)."""
    kids = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    for k in kids:
        try:
            if Path(f"/proc/{k}/stat").read_text().split()[2] == "Z":
                continue
            cmd = Path(f"/proc/{k}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except FileNotFoundError:
            continue
        if not any(h in cmd for h in PYTHON_HELPERS):
            return False
    return True
