"""`zoo` and `python -m zoo`: the command line, or a clear message when the convert extra is missing.

The runtime (`import zoo; zoo.load(...)`) installs with torch and safetensors only; the command line
needs click and the converters' libraries, which `pip install 'zoo[convert]'` brings.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn

_CLI_NEEDS = ("click",)


def run() -> NoReturn:
    """Start the `zoo` command line."""
    try:
        from zoo.cli import main
    except ModuleNotFoundError as error:
        if error.name not in _CLI_NEEDS:
            raise
        sys.stderr.write(
            f"error: the zoo command line needs {error.name}, which is not installed\n"
            "hint: install the converters: pip install 'zoo[convert]'\n"
        )
        sys.exit(1)
    try:
        main()
    except SystemExit as done:  # click ends every command this way, with its exit status
        leave(done.code)
    leave(0)


def leave(code: str | int | None) -> NoReturn:
    """End the process with `code`, skipping Python's teardown of the imported modules once it is safe.

    That teardown does nothing zoo needs (every file is complete and renamed before a command returns)
    and, with torch imported, takes 0.4-0.8 s on the 2-core machine: more than many commands' own work,
    and 5-10 % of converting the 5.1 GB SDXL UNet. The exit handlers (`atexit`, `weakref.finalize`:
    temporary folders, logging) still run and the output streams are flushed; while a worker thread is
    still running, or when a stream cannot be flushed, Python exits the usual way.
    """
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if not isinstance(code, int) or run_exit_handlers is None or _workers_running():
        sys.exit(code)
    run_exit_handlers()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: let Python report it as usual
        sys.exit(code)
    os._exit(code)


def _workers_running() -> bool:
    main = threading.main_thread()
    return any(thread is not main and not thread.daemon for thread in threading.enumerate())


if __name__ == "__main__":
    run()
