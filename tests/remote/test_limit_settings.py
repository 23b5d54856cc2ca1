"""Issue 16 settings without a server: serve flags, allowed roots, the token header."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_seem.cli.main import build_parser, main
from napari_seem.engine.limits import ServerLimits
from napari_seem.remote.limit_flags import field_docs, flag_name, limits_from_args
from napari_seem.remote.process import LISTENING
from napari_seem.remote.routes.errors import ApiError
from napari_seem.remote.routes.gate import bearer_token
from napari_seem.remote.routes.roots import AllowedRoots


def test_every_limit_is_a_documented_serve_flag() -> None:
    parser = build_parser()
    serve = parser._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    text = serve.format_help()
    docs = field_docs()
    for name in ServerLimits.__dataclass_fields__:
        assert flag_name(name) in text, name
        assert docs.get(name), f"ServerLimits.{name} has no description"
    assert "(default 16777216 = 16 MiB)" in " ".join(text.split())


def test_serve_flags_become_server_limits() -> None:
    args = build_parser().parse_args(
        ["serve", "--max-mask-pixels", "1000", "--body-timeout-s", "2.5"]
    )
    limits = limits_from_args(args)
    assert (limits.max_mask_pixels, limits.body_timeout_s) == (1000, 2.5)
    assert limits.max_body_bytes == ServerLimits().max_body_bytes
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--max-scribble-width", "0"])


def test_url_roots_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--allow-root", "s3://bucket/data"]) == 2
    assert "URLs are not supported" in capsys.readouterr().err
    with pytest.raises(ValueError, match="URL roots are not supported"):
        AllowedRoots(["s3://bucket/data"])


def test_paths_are_normalised_before_the_prefix_check(tmp_path: Path) -> None:
    roots = AllowedRoots([tmp_path / "data"])
    (tmp_path / "data").mkdir()
    assert roots.check(str(tmp_path / "data" / "a" / ".." / "b")) == str(tmp_path / "data" / "b")
    for path in (
        str(tmp_path / "data" / ".." / "x"),
        str(tmp_path / "data2"),  # a sibling sharing the prefix as text
        "s3://bucket/data/../../x",
    ):
        with pytest.raises(ApiError) as info:
            roots.check(path)
        assert (info.value.status, info.value.type) == (403, "PathNotAllowed")
    with pytest.raises(ApiError) as info:
        roots.check(str(tmp_path / "data" / "a\x00b"))
    assert (info.value.status, info.value.type) == (400, "InvalidPath")


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token(b"Bearer abc") == bearer_token(b"bearer abc") == "abc"
    assert bearer_token(b"BEARER  abc ") == "abc"
    assert bearer_token(b"abc") is None and bearer_token(b"Basic abc") is None
    assert bearer_token(None) is None and bearer_token(b"Bearer ") is None


def test_the_listening_line_may_omit_the_token() -> None:
    with_token = LISTENING.search("napari-seem serve: listening on http://127.0.0.1:5 token=T")
    assert with_token is not None and with_token.groups() == ("http://127.0.0.1:5", "T")
    without = LISTENING.search("napari-seem serve: listening on http://127.0.0.1:5")
    assert without is not None and without.groups() == ("http://127.0.0.1:5", None)
