"""The repository's LICENSE is the Apache License 2.0 that pyproject.toml declares, and the
built wheel ships it with matching metadata (PEP 639: License-Expression + License-File)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_is_apache_2() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text
    assert "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    # All nine numbered sections of the licence are present (a truncated copy fails).
    for number, title in enumerate(
        (
            "Definitions",
            "Grant of Copyright License",
            "Grant of Patent License",
            "Redistribution",
            "Submission of Contributions",
            "Trademarks",
            "Disclaimer of Warranty",
            "Limitation of Liability",
            "Accepting Warranty or Additional Liability",
        ),
        start=1,
    ):
        assert f"{number}. {title}." in text, title
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.findall(r"^license\s*=\s*(.+)$", pyproject, flags=re.M) == ['"Apache-2.0"']


def test_wheel_ships_the_license(built_wheel: Path) -> None:
    wheel = built_wheel
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (licence,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert zf.read(licence) == (ROOT / "LICENSE").read_bytes()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = zf.read(meta_name).decode().splitlines()
    assert "License-Expression: Apache-2.0" in meta
    assert "License-File: LICENSE" in meta
