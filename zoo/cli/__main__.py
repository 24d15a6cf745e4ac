"""`python -m zoo.cli` runs the `zoo` command."""

from zoo.cli import main

if __name__ == "__main__":  # not when a worker process of `zoo convert --jobs` imports this module
    main()
