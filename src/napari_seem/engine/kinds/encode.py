"""The ``"encode_region"`` job kind: encode every tile whose core meets a level-0 box into
the session's feature cache (prefetch: the first click there is then decoder-only).

Parameters: ``box=(row0, col0, row1, col1)``, level-0, max exclusive, default the whole
image. Progress counts tiles; it stores no result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_seem.core.tiling import Tile
from napari_seem.engine.errors import InvalidRequestError
from napari_seem.engine.jobs import JobPlan, JobRecord
from napari_seem.engine.sessions import Session, region_tiles

if TYPE_CHECKING:
    from napari_seem.engine.facade import Engine

__all__ = ["check_encode_region", "run_encode_region"]


def check_encode_region(engine: Engine, session: Session, params: dict[str, Any]) -> JobPlan:
    """The tiles to encode (``tiles``); refuses parameters other than ``box``."""
    unknown = set(params) - {"box"}
    if unknown:
        raise InvalidRequestError(
            f"encode_region takes only box=(row0, col0, row1, col1); got {sorted(unknown)}"
        )
    _, _, tiles = region_tiles(session, params.get("box"))
    return JobPlan({"tiles": tiles}, total=len(tiles))


def run_encode_region(
    engine: Engine, job: JobRecord, session: Session, *, tiles: list[Tile]
) -> None:
    """Encode ``tiles`` not yet cached, in order; cancellable between tiles."""
    for count, tile in enumerate(tiles, start=1):
        job.raise_if_cancelled()
        if tile.index not in session.cache:
            with engine.model_lock:
                engine.encoded(session, tile)
        job.emit(done=count)
