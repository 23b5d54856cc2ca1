"""A GitHub Markdown table (kept here: the package must not import the benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table"]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns whose first cell reads as a number are right-aligned."""
    align = [
        "---:" if rows and str(rows[0][i])[:1].isdigit() else "---" for i in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
