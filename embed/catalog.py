"""Catalog CSV: ``product_id,image_path`` (relative to the CSV) plus optional attribute columns."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from pymilvus import DataType

from embed.store import BASE_FIELDS

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class CatalogError(ValueError):
    pass


@dataclass(frozen=True)
class CatalogItem:
    product_id: str
    image_path: Path  # absolute
    attributes: dict[str, str | int | float]


@dataclass(frozen=True)
class Catalog:
    path: Path
    items: list[CatalogItem]
    attribute_types: dict[str, DataType]

    def fingerprint(self) -> str:
        """Hash of the catalog's rows (ids and paths and file sizes): keys the adaptation cache."""
        h = hashlib.sha256()
        for it in self.items:
            try:
                size = it.image_path.stat().st_size
            except OSError:
                size = -1
            h.update(f"{it.product_id}\x00{it.image_path.name}\x00{size}\n".encode())
        return h.hexdigest()[:16]


def _infer(values: list[str]) -> DataType:
    vals = [v for v in values if v != ""]
    if not vals:
        return DataType.VARCHAR
    try:
        for v in vals:
            int(v)
        return DataType.INT64
    except ValueError:
        pass
    try:
        for v in vals:
            float(v)
        return DataType.DOUBLE
    except ValueError:
        return DataType.VARCHAR


def _convert(v: str, t: DataType) -> str | int | float:
    if t == DataType.INT64:
        return int(v) if v != "" else 0
    if t == DataType.DOUBLE:
        return float(v) if v != "" else 0.0
    return v


def read_catalog(path: Path | str) -> Catalog:
    """Parse and validate a catalog CSV. Attribute types: INT64 / DOUBLE when every value parses, else VARCHAR."""
    p = Path(path).resolve()
    if not p.is_file():
        raise CatalogError(f"catalog not found: {p}")
    with p.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        if "product_id" not in cols or "image_path" not in cols:
            raise CatalogError(f"{p}: the header must have product_id and image_path columns (got {cols})")
        rows = list(reader)
    attrs = [c for c in cols if c not in ("product_id", "image_path")]
    for c in attrs:
        if not _IDENT.match(c) or c in BASE_FIELDS:
            raise CatalogError(f"{p}: attribute column {c!r} is not a valid field name (or is reserved)")
    types = {c: _infer([r.get(c) or "" for r in rows]) for c in attrs}
    items = []
    for i, r in enumerate(rows, start=2):
        pid, ip = (r.get("product_id") or "").strip(), (r.get("image_path") or "").strip()
        if not pid or not ip:
            raise CatalogError(f"{p}:{i}: empty product_id or image_path")
        items.append(CatalogItem(pid, (p.parent / ip).resolve(),
                                 {c: _convert((r.get(c) or "").strip(), types[c]) for c in attrs}))
    return Catalog(p, items, types)


def write_catalog(path: Path, rows: list[dict[str, str]]) -> None:
    """Write a catalog CSV (used by the sample catalog and tests)."""
    cols = ["product_id", "image_path"] + [k for k in rows[0] if k not in ("product_id", "image_path")] if rows else [
        "product_id", "image_path"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
