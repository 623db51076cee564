"""The tables the CLI prints: columns padded to their widest cell."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


def table(headers: list[str], rows: list[list[Any]], right: Collection[int] = ()) -> str:
    """Columns padded to their widest cell, numbers (columns in `right`) right-aligned."""
    cells = [headers, *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def size_text(size: int | None) -> str | None:
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


PARTITION_HEADERS = ["PARTITION", "OWNER WORKER", "LOG START", "LOG END", "HIGH WATERMARK",
                     "SIZE"]


def partition_rows(partitions: list[dict], topic: str | None = None) -> list[list[Any]]:
    rows = []
    for p in partitions:
        row = [p.get("partition"), p.get("owner_worker"), p.get("log_start_offset"),
               p.get("log_end_offset"), p.get("high_watermark"), size_text(p.get("size_bytes"))]
        if p.get("error"):
            row.append(p["error"])
        rows.append(row if topic is None else [topic, *row])
    return rows


def with_error_column(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if any(len(row) > len(headers) for row in rows):
        for row in rows:
            row.extend([""] * (len(headers) + 1 - len(row)))
        return [*headers, "ERROR"]
    return headers
