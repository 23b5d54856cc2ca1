"""Built-in job kinds of the engine (each a ``check`` and a ``runner``; see
:meth:`napari_seem.engine.Engine.register_job_kind`).

``encode_region``: encode every tile whose core meets a level-0 box into the session's
feature cache (prefetch: the first click there is then decoder-only). Parameters:
``box=(row0, col0, row1, col1)``, max exclusive, default the whole image. Progress counts
tiles; it stores no result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari_seem.engine.errors import InvalidRequestError
from napari_seem.engine.jobs import JobRecord
from napari_seem.tiling import Tile

if TYPE_CHECKING:
    from napari_seem.engine.core import Engine, JobPlan, Session

__all__ = ["check_encode_region", "run_encode_region"]


def check_encode_region(engine: Engine, session: Session, params: dict[str, Any]) -> JobPlan:
    """The tiles to encode (``tiles``); refuses parameters other than ``box``."""
    from napari_seem.engine.core import JobPlan, check_box

    unknown = set(params) - {"box"}
    if unknown:
        raise InvalidRequestError(
            f"encode_region takes only box=(row0, col0, row1, col1); got {sorted(unknown)}"
        )
    shape = session.frame.image_shape
    box = params.get("box")
    level0 = check_box((0, 0, *shape) if box is None else box, shape)
    tiles = session.grid.tiles_touching(session.frame.box_to_level(level0))
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
