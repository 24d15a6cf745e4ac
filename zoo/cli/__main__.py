"""`python -m zoo.cli` runs the `zoo` command."""

from zoo.__main__ import run

if __name__ == "__main__":  # not when a worker process of `zoo convert --jobs` imports this module
    run()
