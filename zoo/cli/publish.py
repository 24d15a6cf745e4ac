"""`zoo publish NAME --repo ORG/NAME`: converted files + manifest entry + model card, in one commit."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli.common import emit_json


@click.command("publish")
@click.argument("name")
@click.option("--repo", required=True, help="Target Hub model repository, ORG/NAME (created if missing).")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("out"),
    show_default=True,
    help="Output folder holding manifest.json and NAME's files.",
)
@click.option("--revision", help="Branch to commit to (default: main).")
@click.option(
    "--license",
    "license_id",
    help="The licence, when the sources do not prove it (an SPDX id or a Hub model licence name).",
)
@click.option("--base-model", help="The model the weights come from (ORG/NAME), when the sources name none.")
@click.option("--create-pr", is_flag=True, help="Open a pull request instead of committing to the branch.")
@click.option("--dry-run", is_flag=True, help="Print exactly the operations; send nothing, need no token.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan (and the result) as JSON.")
def publish(
    name: str,
    repo: str,
    out: Path,
    revision: str | None,
    license_id: str | None,
    base_model: str | None,
    create_pr: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Publish NAME's converted files, its manifest entry and a generated model card to REPO.

    Every file is checked against the sha256 in OUT/manifest.json first, and the card must validate.
    The licence and base model are inherited from Hub sources, or from a local weights file whose
    sha256 equals a declared pinned upstream file (a local copy of it); otherwise the publisher
    declares them with --license and --base-model, and the card says so. Then one atomic commit,
    locked on the branch's current head. The token comes from HF_TOKEN or `hf auth login` and is
    never printed.

    \b
    Examples:
      zoo publish sd15.autoencoder --repo me/sd15-autoencoder --dry-run
      zoo publish sdxl --repo me/sdxl-zoo --create-pr
      zoo publish sdxl.unet --repo me/my-finetune --license openrail++ --base-model stabilityai/stable-diffusion-xl-base-1.0
    """
    from converters._convert.upstream_files import declared_upstream_files
    from zoo.hub import push_commit
    from zoo.model_card import prepare_publication

    plan = prepare_publication(
        name,
        repo,
        out,
        revision=revision,
        create_pr=create_pr,
        dry_run=dry_run,
        license=license_id,
        base_model=base_model,
        upstream=declared_upstream_files(),
    )
    if dry_run:
        if as_json:
            emit_json({"dry_run": True, "plan": plan.to_dict()})
            return
        click.echo("dry run: nothing is sent to the Hub")
        for line in plan.operations():
            click.echo(line)
        return
    result = push_commit(plan)
    if as_json:
        emit_json({"dry_run": False, "plan": plan.to_dict(), "result": result.to_dict()})
        return
    click.echo(f"committed {result.commit} to {repo}: {result.commit_url}")
    if result.pr_url:
        click.echo(f"pull request: {result.pr_url}")
