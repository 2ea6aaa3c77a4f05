"""The one error base every user-facing error derives from. torch-free, imports nothing.

A ``UserError`` is something the person at the keyboard caused and can fix (a
bad path, a bad config key, a malformed bundle, a port in use). Every command
line tool prints it as one ``error:`` line and exits with status 2; any other
exception is a bug and is reported as an internal error. Each room keeps its
own subclass (``EnvError``, ``ConfigError``, ``BundleError`` ...) so callers
can catch narrowly; the CLIs recognise them by this base class.
"""

from __future__ import annotations


class UserError(Exception):
    """An error the user caused and can fix; shown as one line, exit status 2."""
