"""The `zoo` command line: thin commands over library functions, one file per command."""

import click

from zoo import __version__
from zoo.cli.common import ZooGroup
from zoo.cli.convert import convert
from zoo.cli.generate import generate
from zoo.cli.inspect_cmd import inspect
from zoo.cli.list_cmd import list_conversions
from zoo.cli.publish import publish
from zoo.cli.trace import trace
from zoo.cli.verify import verify


@click.group(cls=ZooGroup)
@click.version_option(__version__, prog_name="zoo")
def main() -> None:
    """zoo: convert upstream checkpoints into weights for chain-based models, with proof.

    Start with `zoo convert sdxl --synthetic tiny` (offline), then `zoo generate out --prompt "..."`,
    `zoo list`, `zoo trace sdxl.unet`, `zoo inspect FILE`. Every command takes --help; most take --json.
    """


main.add_command(convert)
main.add_command(generate)
main.add_command(trace)
main.add_command(list_conversions)
main.add_command(inspect)
main.add_command(verify)
main.add_command(publish)

__all__ = ["main"]
