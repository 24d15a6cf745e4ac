"""The `zoo` command line."""

import click

from zoo import __version__


@click.group()
@click.version_option(__version__, prog_name="zoo")
def main() -> None:
    """zoo: convert upstream checkpoints into weights for chain-based models."""


__all__ = ["main"]
