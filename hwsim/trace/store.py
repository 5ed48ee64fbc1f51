"""One table of a trace: rows in memory, spilled to a Parquet file when there are many.

A run appends one tuple per event. Up to `SPILL_ROWS` rows stay in a Python list; each
time the list reaches that size it is written as one row group of a Parquet file (in a
temporary folder) and emptied, so a run of any length holds at most one chunk per
table in memory. Readers either take the whole table as a DataFrame (`frame`, for
tables that stay small) or walk it chunk by chunk (`chunks`, what the summary, the
plots and the Chrome trace of a long run use).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SPILL_ROWS = 100_000
"""Rows of one table kept in memory before they are written to its Parquet file."""

_TYPES = {"s": pa.string(), "f": pa.float64(), "i": pa.int64()}


class SpillFolder:
    """A temporary folder for a run's spilled tables, removed when nothing refers to it any more."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self._cleanup = None

    def get(self) -> Path:
        if self.path is None:
            self.path = Path(tempfile.mkdtemp(prefix="hwsim-trace-"))
            self._cleanup = weakref.finalize(self, shutil.rmtree, self.path, True)
        return self.path


class TableStore:
    """The rows of one table (`columns`: name -> s(tring) / f(loat) / i(nt)); `append` adds a tuple."""

    def __init__(self, name: str, columns: dict[str, str], folder: SpillFolder, spill_rows: int):
        self.name = name
        self.columns = list(columns)
        self.schema = pa.schema([(c, _TYPES[t]) for c, t in columns.items()])
        self.folder = folder
        self.spill_rows = spill_rows
        self.rows: list[tuple] = []
        self.spilled = 0  # rows already written to the Parquet file
        self._writer: pq.ParquetWriter | None = None
        self.path: Path | None = None

    def append(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.spill_rows:
            self.spill()

    def extend(self, rows) -> None:
        self.rows.extend(rows)
        if len(self.rows) >= self.spill_rows:
            self.spill()

    def __len__(self) -> int:
        return self.spilled + len(self.rows)

    @property
    def on_disk(self) -> bool:
        """Whether part of the table is in its Parquet file (a long run)."""
        return self.path is not None

    def spill(self) -> None:
        """Write the rows in memory as one row group of the table's Parquet file, and let them go
        (`rows` stays the same list, so a caller may hold on to it)."""
        if self._writer is None:
            self.path = self.folder.get() / f"{self.name}.parquet"
            self._writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        self._writer.write_table(self._arrow(self.rows))
        self.spilled += len(self.rows)
        self.rows.clear()

    def _arrow(self, rows: list[tuple]) -> pa.Table:
        arrays = [pa.array([row[i] for row in rows], type=t) for i, t in enumerate(self.schema.types)]  # a column at a time
        return pa.table(arrays, schema=self.schema)

    def close(self) -> None:
        """No more rows: write what is in memory to the file (if the table was spilled) and close it."""
        if self._writer is not None:
            if self.rows:
                self.spill()
            self._writer.close()
            self._writer = None

    # --- reading -------------------------------------------------------------------

    def chunks(self, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """The table in order, one DataFrame per row group (and the rows still in memory)."""
        if self.path is not None:
            with pq.ParquetFile(self.path) as file:
                for i in range(file.num_row_groups):
                    yield file.read_row_group(i, columns=columns).to_pandas()
        if self.rows or self.path is None:
            frame = self.memory_frame()
            yield frame if columns is None else frame[columns]

    def memory_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=self.columns)

    def frame(self) -> pd.DataFrame:
        """The whole table (strings as categories when it was spilled, to keep it small)."""
        if self.path is None:
            return self.memory_frame()
        table = pq.read_table(self.path)
        if self.rows:
            table = pa.concat_tables([table, self._arrow(self.rows)])
        return table.to_pandas(strings_to_categorical=True)

    def copy_to(self, path: Path) -> None:
        """Copy the table's Parquet file (a closed, spilled table) to `path`."""
        assert self.path is not None and self._writer is None and not self.rows
        shutil.copyfile(self.path, path)
