"""Progress of `zoo convert`: bars on a terminal (bytes, tensors, rate, time left), nothing otherwise."""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from safetensors import safe_open

import zoo.cli.progress
from zoo.cli import main
from zoo.cli.progress import TerminalProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Recorder:
    """A RunProgress that keeps every call."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.calls: list[tuple[Any, ...]] = []

    def start_run(self, estimates: Mapping[str, int]) -> None:
        self.calls.append(("start_run", dict(estimates)))

    def start_component(self, name: str, total_bytes: int, tensors: int) -> None:
        self.calls.append(("start_component", name, total_bytes, tensors))

    def advance(self, name: str, nbytes: int) -> None:
        self.calls.append(("advance", name, nbytes))

    def finish_component(self, name: str) -> None:
        self.calls.append(("finish_component", name))

    def close(self) -> None:
        self.calls.append(("close",))


def drive(progress: TerminalProgress) -> None:
    progress.start_run({"sdxl.unet": 1000, "sdxl.autoencoder": 100})
    progress.start_component("sdxl.unet", 800, 2)
    progress.advance("sdxl.unet", 500)
    progress.advance("sdxl.unet", 300)
    progress.finish_component("sdxl.unet")
    progress.close()


def test_bars_show_bytes_tensors_and_time_left_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    monkeypatch.setattr(zoo.cli.progress, "SHOW_AFTER_SECONDS", 0)
    monkeypatch.setattr(zoo.cli.progress, "REDRAW_SECONDS", 0)
    drive(TerminalProgress(enabled=True))
    shown = terminal.getvalue()
    assert "sdxl.unet" in shown and "all" in shown
    assert "2/2 tensors" in shown and "800/800" in shown and "B/s" in shown and "<00:00" in shown


@pytest.mark.parametrize("tty", [True, False], ids=["json", "not-a-terminal"])
def test_no_bar_with_json_or_off_a_terminal(monkeypatch: pytest.MonkeyPatch, tty: bool) -> None:
    stream = Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    monkeypatch.setattr(zoo.cli.progress, "SHOW_AFTER_SECONDS", 0)
    drive(TerminalProgress(enabled=not tty))  # on a terminal, --json turns them off
    assert stream.getvalue() == ""


def test_a_short_conversion_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    drive(TerminalProgress(enabled=True))  # well under a second
    assert terminal.getvalue() == ""


def test_convert_reports_the_exact_plan_then_every_tensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorders: list[Recorder] = []
    monkeypatch.setattr(
        sys.modules["zoo.cli.convert"],  # `zoo.cli.convert` is the command, its module's namesake
        "TerminalProgress",
        lambda enabled: recorders.append(Recorder(enabled)) or recorders[-1],
    )
    result = CliRunner().invoke(
        main, ["convert", "sd15.autoencoder", "--synthetic", "tiny", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.stderr
    (recorder,) = recorders
    calls = recorder.calls
    assert recorder.enabled and calls[0][0] == "start_run" and calls[-1] == ("close",)
    _, name, total, tensors = next(call for call in calls if call[0] == "start_component")
    advanced = [call[2] for call in calls if call[0] == "advance"]
    with safe_open(str(tmp_path / name / "model.safetensors"), "pt") as written:
        assert len(advanced) == tensors == len(list(written.keys()))
    header = (tmp_path / name / "model.safetensors").stat().st_size - total
    assert sum(advanced) == total and 0 < header < 100_000
    assert ("finish_component", name) in calls
