"""Local data files read row by row, each damaged spot named by file and line (or row index).

Why not `datasets.load_dataset("json", ...)`: on a broken file it raises StopIteration,
"Expected object" or UnicodeDecodeError naming no file or line, and tina's call to it read a
`.csv` as JSON. Here each format has its own reader, and every reader yields `(where, record)` pairs ("line 7" for formats
read by line, "row index 7" for Parquet and JSON arrays) so the field checks in tina/data.py can
name the spot too.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from tina.errors import DataError

log = logging.getLogger(__name__)

Rows = Iterator[tuple[str, dict]]
# Field paths to check, by the config key that names them: {"dataset.answer_field": "solution"}.
Fields = dict[str, str]
# A field a row does not have (a CSV row shorter than its header, a JSON object without the key).
MISSING = object()


def _decode(data: bytes, source: str, first_line: int = 1) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = first_line + data.count(b"\n", 0, e.start)
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{source} line {line}: not UTF-8 (byte 0x{data[e.start]:02x} at column {column}); "
                        "save the file as UTF-8") from None


def _object(value, source: str, where: str) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{source} {where}: expected a JSON object, got {type(value).__name__}")
    return value


def _json_rows(file: Path, source: str, fields: Fields) -> Rows:
    """JSON lines, or one JSON array of objects (the two forms `datasets` reads from .json/.jsonl)."""
    with open(file, "rb") as f:
        if f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
            f.seek(0)
            try:
                array = json.loads(_decode(f.read(), source))
            except json.JSONDecodeError as e:
                raise DataError(f"{source} line {e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            for i, value in enumerate(array):
                yield f"row index {i}", _object(value, source, f"row index {i}")
            return
        f.seek(0)
        # Line by line, not the whole file: a JSONL data set can be several GB.
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue  # blank lines are allowed, as `datasets` allows them
            try:
                value = json.loads(_decode(raw, source, first_line=n))
            except json.JSONDecodeError as e:
                raise DataError(f"{source} line {n}: invalid JSON ({e.msg} at column {e.colno}); "
                                "allowed: one JSON object per line, or one JSON array of objects") from None
            yield f"line {n}", _object(value, source, f"line {n}")


def _column(path: str, names: list[str]) -> str:
    """The column a field path reads: `messages.0.content` reads `messages`, unless a column has the full name."""
    return path if path in names else path.split(".")[0]


def arrow_rows(source: str, names: list[str], batches: Callable[[list[str]], Iterable], fields: Fields) -> Rows:
    """Rows of a columnar source (Parquet, a hub data set) with `names` columns; `batches(columns)`
    yields Arrow record batches or tables of those columns only, so unused columns (OpenR1's
    generations) are never turned into Python objects."""
    for key, path in fields.items():
        if _column(path, names) not in names:
            raise DataError(f"{source}: field {path!r} is missing from every row: no column {_column(path, names)!r} "
                            f"({key}={path}; columns: {', '.join(names)})")
    i = 0
    try:
        for batch in batches(sorted({_column(path, names) for path in fields.values()})):
            for record in batch.to_pylist():
                yield f"row index {i}", record
                i += 1
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{source} row index {i}: unreadable ({e})") from None


def _parquet_rows(file: Path, source: str, fields: Fields) -> Rows:
    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{source}: not a readable Parquet file ({e})") from None
    yield from arrow_rows(source, parquet.schema_arrow.names, lambda columns: parquet.iter_batches(columns=columns),
                          fields)


def _csv_rows(file: Path, source: str, fields: Fields) -> Rows:
    """A header row, then one row per record; every value is text (a quoted value may span lines)."""
    reader = csv.DictReader(io.StringIO(_decode(file.read_bytes(), source), newline=""), restval=MISSING)
    try:
        names = reader.fieldnames
        if not names:
            raise DataError(f"{source}: no header row; a CSV file starts with its column names")
        for key, path in fields.items():
            if path not in names:
                raise DataError(f"{source} line 1: field {path!r} is missing from the header "
                                f"({key}={path}; columns: {', '.join(names)})")
        for record in reader:
            yield f"line {reader.line_num}", record
    except csv.Error as e:
        raise DataError(f"{source} line {reader.line_num}: not valid CSV ({e})") from None


READERS: dict[str, Callable[[Path, str, Fields], Rows]] = {
    ".csv": _csv_rows, ".json": _json_rows, ".jsonl": _json_rows, ".parquet": _parquet_rows,
}
ALLOWED = ", ".join(READERS)


def find(path: str) -> list[Path]:
    """The data files `dataset.path` names: the file itself, or the data files in the folder."""
    where = Path(path)
    if not where.exists():
        raise DataError(f"dataset.path: {path} does not exist; give a data file ({ALLOWED}) or a folder of them")
    if where.is_file():
        if where.suffix.lower() not in READERS:
            raise DataError(f"dataset.path: {path}: unsupported file type {where.suffix or '(none)'!r}; "
                            f"allowed: {ALLOWED}")
        return [where]
    found = sorted(p for p in where.iterdir() if p.is_file() and not p.name.startswith("."))
    files = [p for p in found if p.suffix.lower() in READERS]
    if not files:
        names = ", ".join(p.name for p in found) or "nothing"
        raise DataError(f"dataset.path: no data files in {path} (found: {names}); allowed: {ALLOWED}")
    if len(files) < len(found):  # a hub snapshot's README.md, say
        log.warning("dataset.path: skipping %s (not %s)", ", ".join(p.name for p in found if p not in files), ALLOWED)
    return files


def read(file: Path, source: str, fields: Fields) -> Rows:
    """`(where, record)` for each row of `file`; raises DataError naming `source` and the spot."""
    if file.stat().st_size == 0:
        raise DataError(f"{source}: the file is empty")
    return READERS[file.suffix.lower()](file, source, fields)
