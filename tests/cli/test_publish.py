"""`zoo publish`: staged files, manifest entry and model card in one commit; HfApi is mocked (no Hub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from click.testing import CliRunner
from hf_cache import add_to_cache
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.errors import RepositoryNotFoundError

from converters import sd15
from converters._convert import upstream_files
from converters._convert.by_name import convert
from converters._convert.synthetic import write_synthetic_pipeline
from zoo.cli import main
from zoo.licensing import UpstreamFile
from zoo.manifest import read_manifest, write_manifest

NAME = "sd15.autoencoder"
REVISION = "c" * 40  # a revision of the upstream repo that the local cache holds (synthetic bytes)
HEAD = "d" * 40
TOKEN = "hf_FAKEzooTestToken0123456789abcdef"


def zoo(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`zoo convert NAME --source <upstream repo> --revision R` from a local HF cache, offline."""
    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    folder = write_synthetic_pipeline(
        [sd15.AUTOENCODER], "tiny", tmp_path / "pipeline", sd15.FAMILY.pipeline_class
    )
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    add_to_cache(home / "hub", sd15.HUB_REPO, REVISION, files)
    convert(NAME, out=tmp_path / "out", source=sd15.HUB_REPO, revision=REVISION)
    return tmp_path / "out"


class FakeHub:
    """Records what HfApi would have been asked; fails the test on anything unexpected."""

    def __init__(self, exists: bool = True, fail_with: Exception | None = None) -> None:
        self.exists, self.fail_with = exists, fail_with
        self.commits: list[dict[str, Any]] = []
        self.created: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        monkeypatch.setattr(HfApi, "repo_info", self.repo_info)
        monkeypatch.setattr(HfApi, "create_repo", self.create_repo)
        monkeypatch.setattr(HfApi, "create_commit", self.create_commit)
        return self

    def repo_info(self, repo: str, **_: Any) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        if not self.exists:
            response = httpx2.Response(
                404, request=httpx2.Request("GET", f"https://huggingface.co/api/models/{repo}")
            )
            raise RepositoryNotFoundError(f"{repo} not found", response=response)
        return type("Info", (), {"sha": HEAD})()

    def create_repo(self, repo: str, **_: Any) -> None:
        self.created.append(repo)

    def create_commit(self, repo: str, operations: list[Any], **kwargs: Any) -> Any:
        contents = {op.path_in_repo: _content(op.path_or_fileobj) for op in operations}
        self.commits.append({"repo": repo, "files": contents, **kwargs})
        pr = "https://huggingface.co/me/x/discussions/1" if kwargs.get("create_pr") else None
        return type("CommitInfo", (), {"oid": "e" * 40, "commit_url": "https://hf.co/c", "pr_url": pr})()


def _content(source: Any) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def test_dry_run_prints_the_operations_and_sends_nothing(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub().install(monkeypatch)
    code, stdout, stderr = zoo("publish", NAME, "--repo", "me/sd15-vae", "--out", str(out), "--dry-run")
    assert code == 0, stderr
    entry = read_manifest(out / "manifest.json").entries[NAME]
    weights_sha = entry["outputs"][0]["sha256"]
    assert "dry run: nothing is sent" in stdout
    assert f"add model.safetensors  {entry['outputs'][0]['size']} bytes  sha256 {weights_sha}" in stdout
    for path in ("config.json", "manifest.json", "README.md"):
        assert f"add {path} " in stdout
    assert hub.commits == [] and hub.created == []


def test_publish_is_one_commit_locked_on_the_head(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub().install(monkeypatch)
    code, stdout, stderr = zoo("publish", NAME, "--repo", "me/sd15-vae", "--out", str(out), "--json")
    assert code == 0, stderr
    assert len(hub.commits) == 1 and hub.created == []
    commit = hub.commits[0]
    assert commit["parent_commit"] == HEAD and commit["create_pr"] is False
    assert sorted(commit["files"]) == ["README.md", "config.json", "manifest.json", "model.safetensors"]
    assert commit["files"]["model.safetensors"] == (out / NAME / "model.safetensors").read_bytes()
    published = json.loads(commit["files"]["manifest.json"])["conversions"][NAME]
    assert [o["file"] for o in published["outputs"]] == ["model.safetensors", "config.json"]
    assert json.loads(stdout)["result"]["commit"] == "e" * 40


def test_the_model_card_inherits_the_source_and_proves_the_files(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub().install(monkeypatch)
    assert zoo("publish", NAME, "--repo", "me/sd15-vae", "--out", str(out))[0] == 0
    card = ModelCard(hub.commits[0]["files"]["README.md"].decode())
    metadata = card.data.to_dict()
    assert metadata["license"] == sd15.LICENSE and metadata["base_model"] == sd15.HUB_REPO
    assert metadata["library_name"] == "zoo" and NAME in metadata["tags"]
    entry = read_manifest(out / "manifest.json").entries[NAME]
    for output in entry["outputs"]:
        assert output["sha256"] in card.text
    assert f"zoo convert {NAME} --source {sd15.HUB_REPO} --revision {REVISION}" in card.text
    assert "Parity: not measured" in card.text


def test_create_pr_and_a_new_repo(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub(exists=False).install(monkeypatch)
    code, stdout, stderr = zoo("publish", NAME, "--repo", "me/new", "--out", str(out), "--create-pr")
    assert code == 0, stderr
    assert hub.created == ["me/new"]
    assert hub.commits[0]["create_pr"] is True and hub.commits[0]["parent_commit"] is None
    assert "pull request: https://huggingface.co/me/x/discussions/1" in stdout


def test_refuses_a_file_whose_hash_differs_from_the_manifest(
    out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub().install(monkeypatch)
    weights = out / NAME / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))
    code, _, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(out))
    assert code == 1 and "refusing to publish" in stderr and str(weights) in stderr
    assert hub.commits == []


def test_refuses_an_unknown_licence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub().install(monkeypatch)
    convert(NAME, out=tmp_path, synthetic="tiny")  # a local source: its licence is not known
    code, _, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(tmp_path), "--dry-run")
    assert code == 1 and "licence is unknown" in stderr and "hint:" in stderr
    assert hub.commits == []


def test_refuses_a_card_that_does_not_validate(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub().install(monkeypatch)
    data = read_manifest(out / "manifest.json").data
    data["conversions"][NAME]["license"] = "my-own-terms"
    write_manifest(out / "manifest.json", data)
    code, _, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(out), "--dry-run")
    assert code == 1 and "model card does not validate" in stderr and "my-own-terms" in stderr
    assert hub.commits == []


def test_online_the_hubs_card_validator_has_the_last_word(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = FakeHub().install(monkeypatch)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def reject(_card: ModelCard, **_: Any) -> None:
        raise ValueError("license: invalid")

    monkeypatch.setattr(ModelCard, "validate", reject)
    code, _, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(out))
    assert code == 1 and "model card validation" in stderr and "license: invalid" in stderr
    assert hub.commits == []


def test_the_token_never_appears_even_in_errors(out: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeHub(
        fail_with=RuntimeError(f"401 Unauthorized: bad token {TOKEN} (Authorization: Bearer {TOKEN})")
    ).install(monkeypatch)
    code, stdout, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(out))
    assert code == 1 and "401 Unauthorized" in stderr
    assert TOKEN not in stdout + stderr and TOKEN[3:] not in stdout + stderr
    FakeHub().install(monkeypatch)
    for args in (["--json"], ["--dry-run"], ["--dry-run", "--json"], []):
        code, stdout, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(out), *args)
        assert code == 0 and TOKEN not in stdout + stderr


def test_bad_repo_id_is_refused(out: Path) -> None:
    code, _, stderr = zoo("publish", NAME, "--repo", "not a repo", "--out", str(out), "--dry-run")
    assert code == 1 and "ORG/NAME" in stderr


def test_a_published_repo_verifies_on_its_own(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub().install(monkeypatch)
    assert zoo("publish", NAME, "--repo", "me/x", "--out", str(out))[0] == 0
    snapshot = tmp_path / "snapshot"  # what `snapshot_download("me/x")` would give
    for path, content in {**hub.commits[0]["files"], ".gitattributes": b"*.safetensors filter=lfs\n"}.items():
        (snapshot / path).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / path).write_bytes(content)
    code, stdout, stderr = zoo("verify", str(snapshot), "--strict", "--json")
    assert code == 0, stdout + stderr
    checked = {f["subject"]: f["status"] for f in json.loads(stdout)["findings"]}
    assert checked["model.safetensors"] == checked["config.json"] == "ok"


# -- local conversions: a licence proven by hash, or declared by the publisher ---------------------


@pytest.fixture
def local_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NAME converted from a local folder (its synthetic source): no source names a licence."""
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # or the card's validation asks the Hub
    convert(NAME, out=tmp_path / "local", synthetic="tiny")
    return tmp_path / "local"


def weights_source(out: Path) -> dict[str, Any]:
    entry = read_manifest(out / "manifest.json").entries[NAME]
    return next(s for s in entry["sources"] if s["role"] == "weights")


def published(hub: FakeHub) -> tuple[ModelCard, dict[str, Any]]:
    files = hub.commits[0]["files"]
    return ModelCard(files["README.md"].decode()), json.loads(files["manifest.json"])["conversions"][NAME]


def test_a_local_copy_of_a_pinned_file_inherits_its_licence_by_hash(
    local_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub().install(monkeypatch)
    local = weights_source(local_out)
    pinned = UpstreamFile(sd15.HUB_REPO, "vae/diffusion_pytorch_model.safetensors", REVISION, sd15.LICENSE)
    # As if the pinned upstream file were these bytes: the local file's sha256 is the proof.
    monkeypatch.setattr(upstream_files, "declared_upstream_files", lambda: {local["sha256"]: pinned})
    code, _, stderr = zoo("publish", NAME, "--repo", "me/local-vae", "--out", str(local_out))
    assert code == 0, stderr
    card, entry = published(hub)
    metadata = card.data.to_dict()
    assert metadata["license"] == sd15.LICENSE and metadata["base_model"] == sd15.HUB_REPO
    assert f"`{local['path']}` is `{sd15.HUB_REPO}/vae/diffusion_pytorch_model.safetensors`" in card.text
    assert entry["license"] == sd15.LICENSE and "license" not in entry["unknown"]
    source = next(s for s in entry["sources"] if s["role"] == "weights")
    assert source["license"] == sd15.LICENSE and "license" not in source["unknown"]


def test_a_declared_licence_is_published_as_the_publishers_word(
    local_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = FakeHub().install(monkeypatch)
    args = ["--license", "CC-BY-NC-4.0", "--base-model", "me/base-model"]
    code, _, stderr = zoo("publish", NAME, "--repo", "me/finetune", "--out", str(local_out), *args)
    assert code == 0, stderr
    card, entry = published(hub)
    metadata = card.data.to_dict()
    assert metadata["license"] == "cc-by-nc-4.0" and metadata["base_model"] == "me/base-model"
    assert "declared by the publisher (`zoo publish --license`)" in card.text
    assert "`me/base-model` was declared by the publisher too" in card.text
    assert entry["license"] is None and "the publisher declared cc-by-nc-4.0" in entry["unknown"]["license"]


def test_without_proof_or_declaration_the_refusal_names_both_ways_out(local_out: Path) -> None:
    code, _, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(local_out), "--dry-run")
    assert code == 1 and "licence is unknown" in stderr
    assert "sha256 equals a declared pinned upstream file" in stderr and "--license ID --base-model" in stderr
    code, _, stderr = zoo(
        "publish", NAME, "--repo", "me/x", "--out", str(local_out), "--license", "mit", "--dry-run"
    )
    assert code == 1 and "pass --base-model" in stderr


def test_a_licence_must_be_known_and_must_not_contradict_the_sources(
    out: Path, local_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeHub().install(monkeypatch)
    code, _, stderr = zoo("publish", NAME, "--repo", "me/x", "--out", str(local_out), "--license", "my-terms")
    assert code == 1 and "not a licence id the Hub knows" in stderr
    code, _, stderr = zoo(
        "publish", NAME, "--repo", "me/x", "--out", str(out), "--license", "mit", "--dry-run"
    )
    assert code == 1 and f"contradicts the sources' licence {sd15.LICENSE}" in stderr
    code, _, stderr = zoo(
        "publish", NAME, "--repo", "me/x", "--out", str(out), "--license", sd15.LICENSE, "--dry-run"
    )
    assert code == 0, stderr


def test_the_declared_pins_are_known_by_sha256() -> None:
    pin = sd15.AUTOENCODER.parts[0].pinned
    assert pin is not None and pin.sha256 is not None
    vae = upstream_files.declared_upstream_files()[pin.sha256]
    assert (vae.repo, vae.filename, vae.license) == (
        sd15.HUB_REPO,
        "vae/diffusion_pytorch_model.safetensors",
        sd15.LICENSE,
    )
