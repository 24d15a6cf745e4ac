"""`zoo` and `python -m zoo`: the command line, or a clear message when the convert extra is missing.

The runtime (`import zoo; zoo.load(...)`) installs with torch and safetensors only; the command line
needs click and the converters' libraries, which `pip install 'zoo[convert]'` brings.
"""

from __future__ import annotations

import sys

_CLI_NEEDS = ("click",)


def run() -> None:
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
    main()


if __name__ == "__main__":
    run()
