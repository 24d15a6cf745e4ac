"""Benchmark: converting a full-size SDXL UNet (fp16, 5.1 GB) with `zoo convert`, against plain baselines.

Builds, once, two synthetic SDXL UNet checkpoints in --cache: a diffusers folder (shapes from diffusers'
`UNet2DConditionModel` on meta, seeded random values streamed through our writer, so the model is never
in memory) and the same tensors as an original SGM single file (`model.diffusion_model.*`). Then runs
each task in its own process, --repeat rounds in alternation (the machine may be shared: a slow moment
then hits every task of one round, not one task of every round), and reports medians:

- zoo: `zoo convert sdxl.unet --source FOLDER` as the command runs it (config, key map, the one pass
  over the bytes, input hashes, manifest), with its time split (read, transform, check, hash, write,
  fsync; the stages overlap, on different cores);
- rewrite: `safetensors.torch.load_file` + `save_file` of the same file; cp: `cp` of the same file;
- zoo-new: the same, with the source's remembered sha256 forgotten first: a first conversion of it;
- zoo-sgm, zoo-sgm-new: `zoo convert sdxl.unet --source FILE` from the SGM single file (likewise);
- zoo-hub, zoo-sgm-hub: the same two from the same files laid out as an HF cache snapshot (hard links),
  where the source's sha256 is its blob's name, so it is not hashed again: a declared conversion after
  `hf download`;
- diffusers-sgm: diffusers' `UNet2DConditionModel.from_single_file` + `save_pretrained`, the same job;
- idle: the imports alone, the floor under every task's RSS; trace-meta / trace-real: the key map traced
  on meta vs with real (bfloat16) weights (--trace; trace-real needs about 11 GB);
- with --base DIR (another checkout of zoo, e.g. before a change): zoo@base and zoo-sgm@base, the same
  two conversions by that code, in the same rounds, so before and after are compared pair by pair.

Ratios are medians of the per-round ratios of whole-process wall times (start-up and imports included,
what `time zoo convert ...` shows). No output is fsynced (zoo's only with `--durable`). The
key-map cache is off (a first conversion) unless --keymap-cache. This is not a test; run it by hand:

    python ci/bench_convert.py --cache /tmp/zoo-bench --repeat 5 --clean

Measured (2026-12-02, 2 cores, otherwise idle, --repeat 3 --keymap-cache): zoo-new 1.21 x, zoo 1.05 x,
zoo-hub 1.03 x rewrite; zoo-sgm-hub 0.47 x, zoo-sgm 0.49 x, zoo-sgm-new 0.55 x diffusers-sgm; peak RSS
0.60-0.67 GB against 5.68 GB (rewrite) and 5.93 GB (diffusers); every output's sha256 700a22c2...9621.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_convert_tasks import REPO_ROOT, TASKS, WEIGHTS_FILE, Detail, run_child, sdxl_unet_config

SGM_FILE = "sdxl-unet-sgm.safetensors"
HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"  # any 40-hex commit names a snapshot
ROUND = (
    "zoo",
    "zoo-new",
    "zoo-hub",
    "rewrite",
    "cp",
    "zoo-sgm",
    "zoo-sgm-new",
    "zoo-sgm-hub",
    "diffusers-sgm",
)
# (task, baseline): the ratios reported, with their targets (issue 18).
COMPARISONS: list[tuple[str, str, float | None]] = [
    ("zoo", "rewrite", 1.3),
    ("zoo-new", "rewrite", 1.3),
    ("zoo-hub", "rewrite", 1.3),
    ("zoo", "cp", None),
    ("zoo-sgm", "diffusers-sgm", 0.5),
    ("zoo-sgm-new", "diffusers-sgm", 0.5),
    ("zoo-sgm-hub", "diffusers-sgm", 0.5),
    ("zoo-sgm", "rewrite", None),
    ("zoo@base", "rewrite", None),
    ("zoo@base", "cp", None),
    ("zoo-sgm@base", "diffusers-sgm", None),
    ("zoo", "zoo@base", None),
    ("zoo-sgm", "zoo-sgm@base", None),
]
BASE_TASKS = {"zoo@base": "zoo", "zoo-sgm@base": "zoo-sgm"}
STAGE_ORDER = ("trace", "read", "transform", "check", "hash", "write", "fsync", "wall")

Command = tuple[list[str | Path], Path]  # a command line and the folder it runs in


@dataclass(frozen=True)
class Measurement:
    """One task run in its own process.

    Attributes:
        task: The task's name.
        seconds: Wall time of the whole process, start-up and imports included.
        task_seconds: Time in the task itself, as the child measured it (imports inside the task count).
        cpu_seconds: User + system CPU time of the process.
        peak_rss: The process's peak resident set size, in bytes.
        detail: What the task reported.
    """

    task: str
    seconds: float
    task_seconds: float
    cpu_seconds: float
    peak_rss: int
    detail: Detail


def measure(
    task: str, command: Sequence[str | Path], env: dict[str, str], cwd: Path = REPO_ROOT
) -> Measurement:
    """Runs one process and measures it (a Python task reports its own time and detail on stdout)."""
    # Flush the previous task's dirty pages first, or their writeback would slow this task down.
    os.sync()
    start = time.perf_counter()
    process = subprocess.Popen(list(map(str, command)), stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)
    assert process.stdout is not None
    output = process.stdout.read()
    # wait4 gives this child's own rusage; RUSAGE_CHILDREN would mix all children together.
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"task {task!r} failed with exit status {os.waitstatus_to_exitcode(status)}")
    report = _task_report(output, seconds)
    # Linux reports ru_maxrss in KiB.
    cpu = usage.ru_utime + usage.ru_stime
    return Measurement(task, seconds, report["seconds"], cpu, usage.ru_maxrss * 1024, report["detail"])


def _task_report(output: str, seconds: float) -> dict[str, Any]:
    """What a task printed: a Python task's last line, or `zoo convert --json`'s document."""
    lines = output.strip().splitlines()
    if not lines:
        return {"seconds": seconds, "detail": {}}
    if lines[0] != "{":
        return json.loads(lines[-1])
    component = json.loads(output)["components"][0]
    detail = {"sha256": component["sha256"], "bytes": component["bytes"]}
    return {"seconds": component["seconds"], "detail": {**detail, "stages": component.get("stages", {})}}


def zoo_command(source: Path, out: Path) -> list[str | Path]:
    """The command a user types, `zoo convert sdxl.unet --source SOURCE --out OUT`, with --json; run
    in the root of the checkout measured (its zoo comes first on sys.path). The parent deletes the
    output after the measurement, as it does every task's: no baseline pays for deleting 5 GB either."""
    return [sys.executable, "-m", "zoo", "convert", "sdxl.unet", "--source", source, "--out", out, "--json"]


def python_task(task: str, *args: str | Path, root: Path = REPO_ROOT) -> list[str | Path]:
    return [sys.executable, Path(__file__).resolve(), "--root", root, "--task", task, *args]


def ensure_sources(cache: Path, seed: int, env: dict[str, str]) -> tuple[Path, Path, list[Measurement]]:
    """The cached diffusers folder and SGM file (built when missing), and the builds' measurements."""
    folder = cache / f"sdxl-unet-fp16-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(sdxl_unet_config()))
    weights, sgm = folder / WEIGHTS_FILE, cache / f"seed{seed}-{SGM_FILE}"
    builds = []
    # The writer is atomic, so an existing file is complete.
    if not weights.exists():
        builds.append(measure("build", python_task("build", weights, str(seed)), env))
    if not sgm.exists():
        builds.append(measure("build-sgm", python_task("build-sgm", weights, sgm), env))
    return folder, sgm, builds


def hub_snapshot(folder: Path, sgm: Path, cache: Path) -> tuple[Path, Path]:
    """The same files laid out as an HF cache snapshot (blobs hard-linked: no extra disk), where a
    file's blob is named by its sha256: what a declared conversion reads after `hf download`."""
    repo = cache / "hub" / "models--bench--sdxl-unet"
    snapshot = repo / "snapshots" / HUB_REVISION
    files = {
        "unet/" + WEIGHTS_FILE: folder / WEIGHTS_FILE,
        "unet/config.json": folder / "config.json",
        SGM_FILE: sgm,
    }
    for name, path in files.items():
        link = snapshot / name
        if link.is_symlink():
            continue
        digest = hashlib.file_digest(path.open("rb"), "sha256").hexdigest()
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            os.link(path, blob)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(HUB_REVISION)
    return snapshot / "unet", snapshot / SGM_FILE


def round_commands(folder: Path, sgm: Path, cache: Path, base: Path | None) -> dict[str, Command]:
    weights, out = folder / WEIGHTS_FILE, cache / "out"
    hub_folder, hub_sgm = hub_snapshot(folder, sgm, cache)
    commands: dict[str, Command] = {
        "zoo": (zoo_command(folder, out / "zoo"), REPO_ROOT),
        "zoo-new": (zoo_command(folder, out / "zoo-new"), REPO_ROOT),
        "zoo-hub": (zoo_command(hub_folder, out / "zoo-hub"), REPO_ROOT),
        "zoo-sgm-hub": (zoo_command(hub_sgm, out / "zoo-sgm-hub"), REPO_ROOT),
        "rewrite": (python_task("rewrite", weights, out / "rewrite.safetensors"), REPO_ROOT),
        "cp": (["cp", weights, out / "cp.safetensors"], REPO_ROOT),
        "zoo-sgm": (zoo_command(sgm, out / "zoo-sgm"), REPO_ROOT),
        "zoo-sgm-new": (zoo_command(sgm, out / "zoo-sgm-new"), REPO_ROOT),
        "diffusers-sgm": (python_task("diffusers-sgm", sgm, out / "diffusers-sgm", folder), REPO_ROOT),
    }
    if base is not None:
        commands["zoo@base"] = (zoo_command(folder, out / "zoo-base"), base)
        commands["zoo-sgm@base"] = (zoo_command(sgm, out / "zoo-sgm-base"), base)
    return commands


def run_rounds(
    folder: Path, sgm: Path, cache: Path, args: argparse.Namespace, env: dict[str, str]
) -> list[Measurement]:
    """`args.repeat` rounds of every task of ROUND, alternating, each output deleted after its run."""
    results = [measure("idle", python_task("idle"), env)]
    if args.trace:
        results.append(measure("trace-meta", python_task("trace-meta"), env))
        results.append(measure("trace-real", python_task("trace-real"), env))
    commands = round_commands(folder, sgm, cache, args.base)
    tasks = [task for task in (*ROUND, *BASE_TASKS) if task in commands and task not in args.skip]
    for _ in range(args.repeat):
        for task in tasks:
            (cache / "out").mkdir(exist_ok=True)
            command, cwd = commands[task]
            task_env = first_conversion_env(env) if task.endswith("-new") else env
            results.append(measure(task, command, task_env, cwd))
            shutil.rmtree(cache / "out")
    return results


def first_conversion_env(env: dict[str, str]) -> dict[str, str]:
    """`env` with a zoo cache that shares the key maps but remembers no source's sha256 (emptied now):
    a first conversion of the file, which leaves the other tasks' remembered hashes alone."""
    if "ZOO_CACHE" not in env:
        return env  # caches are off: nothing is remembered anyway
    shared, fresh = Path(env["ZOO_CACHE"]), Path(env["ZOO_CACHE"] + "-first")
    fresh.mkdir(exist_ok=True)
    for kind in ("keymaps", "single_file_maps"):
        (shared / kind).mkdir(parents=True, exist_ok=True)
        if not (fresh / kind).is_symlink():
            (fresh / kind).symlink_to(shared / kind)
    shutil.rmtree(fresh / "input_hashes", ignore_errors=True)
    return {**env, "ZOO_CACHE": str(fresh)}


def by_task(results: list[Measurement]) -> dict[str, list[Measurement]]:
    grouped: dict[str, list[Measurement]] = {}
    for result in results:
        grouped.setdefault(result.task, []).append(result)
    return grouped


def report(results: list[Measurement]) -> list[str]:
    """Medians per task, paired ratios against the baselines, zoo's time split, output checks."""
    grouped = by_task(results)
    lines = [f"{'task':<15}{'runs':>5}{'process s':>11}{'task s':>9}{'CPU s':>8}{'peak RSS GB':>13}"]
    for task, runs in grouped.items():
        lines.append(
            f"{task:<15}{len(runs):>5}{_median(runs, 'seconds'):>11.2f}{_median(runs, 'task_seconds'):>9.2f}"
            f"{_median(runs, 'cpu_seconds'):>8.2f}{_median(runs, 'peak_rss') / 1e9:>13.2f}"
        )
    lines += ["", "ratios (median of per-round ratios of whole-process wall time):"]
    lines += [_ratio_line(results, task, baseline, target) for task, baseline, target in COMPARISONS]
    lines += ["", "time split, median seconds per stage (stages overlap on different cores):"]
    split = ("zoo", "zoo-new", "zoo-hub", "zoo-sgm", "zoo-sgm-new", "zoo-sgm-hub", *BASE_TASKS)
    lines += [_split_line(task, grouped[task]) for task in split if task in grouped]
    lines += ["", *_output_checks(grouped)]
    return [line for line in lines if line is not None]


def _median(runs: list[Measurement], attribute: str) -> float:
    return statistics.median(getattr(run, attribute) for run in runs)


def _ratio_line(results: list[Measurement], task: str, baseline: str, target: float | None) -> str:
    pairs = _paired(results, task, baseline)
    if not pairs:
        return f"  {task} / {baseline}: not measured"
    ratio = statistics.median(a.seconds / b.seconds for a, b in pairs)
    rss = statistics.median(a.peak_rss / b.peak_rss for a, b in pairs)
    verdict = "" if target is None else f"  (target <= {target}: {'met' if ratio <= target else 'NOT met'})"
    return f"  {task} / {baseline}: time x{ratio:.2f}, peak RSS x{rss:.2f} over {len(pairs)} rounds{verdict}"


def _paired(results: list[Measurement], task: str, baseline: str) -> list[tuple[Measurement, Measurement]]:
    """The i-th run of `task` with the i-th run of `baseline`: both ran in the same round."""
    grouped = by_task(results)
    return list(zip(grouped.get(task, []), grouped.get(baseline, []), strict=False))


def _split_line(task: str, runs: list[Measurement]) -> str:
    stages = [run.detail.get("stages") or {} for run in runs]
    if not any(stages):
        return f"  {task}: no time split (this zoo version does not report one)"
    medians = {name: statistics.median(s.get(name, 0.0) for s in stages) for name in STAGE_ORDER}
    return f"  {task}: " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in medians.items())


def _output_checks(grouped: dict[str, list[Measurement]]) -> list[str]:
    lines = []
    for task in ("zoo", "zoo-new", "zoo-hub", "zoo-sgm", "zoo-sgm-new", "zoo-sgm-hub", *BASE_TASKS):
        shas = {run.detail.get("sha256") for run in grouped.get(task, [])}
        if shas:
            lines.append(f"{task}: {len(grouped[task])} runs, sha256 {', '.join(sorted(map(str, shas)))}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cache", type=Path, default=Path("/tmp/zoo-bench"), help="folder for the synthetic checkpoints"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic values")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the alternating tasks")
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=ROUND, help="tasks to leave out of the rounds"
    )
    parser.add_argument(
        "--trace", action="store_true", help="also trace on meta and with real weights (11 GB)"
    )
    parser.add_argument(
        "--base", type=Path, help="another zoo checkout (e.g. before a change) to run in the same rounds"
    )
    parser.add_argument("--keymap-cache", action="store_true", help="keep zoo's key-map cache on (warm)")
    parser.add_argument("--clean", action="store_true", help="delete the cache folder afterwards")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON")
    parser.add_argument("--task", choices=sorted(TASKS), help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    parser.add_argument("task_args", nargs="*", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child_env(args: argparse.Namespace) -> dict[str, str]:
    # Each child puts its own zoo first on sys.path (--root); nothing else may bring another one.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    if args.keymap_cache:
        return {**env, "ZOO_CACHE": str(args.cache / "zoo-cache")}
    return {**env, "ZOO_NO_CACHE": "1"}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.task:
        run_child(args.task, args.task_args, args.root)
        return
    env = child_env(args)
    try:
        folder, sgm, builds = ensure_sources(args.cache, args.seed, env)
        results = builds + run_rounds(folder, sgm, args.cache, args, env)
    finally:
        if args.clean:
            shutil.rmtree(args.cache, ignore_errors=True)
    if args.json:
        print(json.dumps([result.__dict__ for result in results], indent=2))
    else:
        print("\n".join(report(results)))


if __name__ == "__main__":
    main()
