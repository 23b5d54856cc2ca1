from __future__ import annotations

import subprocess
import sys

import pytest

from napari_seem.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "napari_seem.cli", *args], capture_output=True, text=True
    )


def test_help_lists_subcommands() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "models" in proc.stdout


def test_models_lists_variants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("seem-focalt-v1", "seem-focall-v1", "seem-samvitb-v1", "seem-samvitl-v1"):
        assert name in out


def test_models_download_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = _run("models", "download", "seem-focalt-v1")
    assert proc.returncode == 2
    assert "napari-seem: error:" in proc.stderr and "--checkpoint" in proc.stderr
