"""Arrow columns -> the call log's typed pandas frame, converted in threads by row ranges.

A read gives a table (the pieces read, concatenated) and a selection: the table's rows, in the
order that sorts and de-duplicates them (None: every row as it stands). Each frame column is
allocated once, in numpy memory (numpy asks for huge pages: a 10M-row column costs a few dozen
page faults, not 20 000 from Arrow's 4 KiB pool pages), then filled range by range of output
rows in a thread pool: a range gathers the input rows it needs (for a log merged day by day,
rows close together) into a small buffer that stays in cache and takes them in order. numpy
and Arrow release the GIL for these copies, so both cores work, as pyarrow's own read does.

Columns are converted one at a time, each Arrow column freed once converted and its pages
handed back as the conversion goes (log/memory.py), so the peak is the table plus about one
column; the outputs are allocated by the calling thread (the workers' allocations are only a
range's buffers, which keeps the threads' malloc arenas small).

Dtypes: ts datetime64[us, UTC]; low-cardinality strings categorical (categories in order of
first appearance, unused ones dropped); int columns int64 (nullable Int64 only when they hold
nulls); floats float64 (NaN for null); bools bool (or boolean with nulls); other strings
pandas' Arrow-backed ``str`` (no Python object per row).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa

from holysheep_lab.log.memory import Freed, memory_pool

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["frame_from_table", "take_indices"]

_RANGE_ROWS = 1 << 17  # output rows per task: a range's gather buffer stays in L2
_WIDE = 4  # a range whose input rows spread over more than this many times its size: gather from the whole column


def _zeros(n: int, dtype: Any) -> Any:
    """n zeros, writable, in pages the kernel maps only when they are touched. (`np.zeros` is
    that only while malloc maps large blocks afresh; once the frames' big frees have raised its
    threshold, it clears heap memory instead: tens of ms per all-null column.)"""
    import mmap

    import numpy as np

    size = n * np.dtype(dtype).itemsize
    if size < 1 << 20:
        return np.zeros(n, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype=dtype)


def take_indices(positions: Any) -> pa.Array:
    """Row positions (a numpy int or bool array) as an Arrow int64 array for `take`, via its
    buffer (`pa.array` would import pandas)."""
    import numpy as np

    if positions.dtype.kind == "b":
        positions = np.flatnonzero(positions)
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(positions), [None, pa.py_buffer(positions)])


def _view(array: pa.Array, dtype: Any) -> Any:
    """A fixed-width array's values as a (read-only) numpy view of its buffer."""
    import numpy as np

    if len(array) == 0:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(array.buffers()[1], dtype=dtype, count=array.offset + len(array))[array.offset:]


def _valid(array: pa.Array) -> Any:
    """Which values of `array` are not null (a numpy bool array), or None when none is null.
    Unpacks only the bytes of the array's own rows (a slice of a long chunk is cheap)."""
    import numpy as np

    if not array.null_count:
        return None
    if array.null_count == len(array):
        return np.zeros(len(array), dtype=bool)
    first, skip = divmod(array.offset, 8)
    bits = np.frombuffer(array.buffers()[0], dtype=np.uint8)[first:]
    return np.unpackbits(bits, count=skip + len(array), bitorder="little")[skip:].view(bool)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Which input rows each range of output rows reads.

    `bounds` are the output ranges' edges; without a selection, output row i is input row i.
    With one, range r reads input rows [spans[r][0], spans[r][1]) and takes `local[r]` of them
    (its selection less the span's start); `wide` when some range spreads too far: every
    column is then copied whole once and taken from there."""

    rows: int
    bounds: list[int]
    selection: Any
    spans: list[tuple[int, int]]
    local: list[Any]
    wide: bool
    range_rows: int

    @property
    def count(self) -> int:
        """How many ranges."""
        return len(self.bounds) - 1

    def out(self, r: int) -> slice:
        return slice(self.bounds[r], self.bounds[r + 1])


def _plan(rows_in: int, selection: Any, range_rows: int) -> _Plan:
    import numpy as np

    if selection is not None and selection.dtype.kind == "b":
        selection = np.flatnonzero(selection)
    rows = rows_in if selection is None else len(selection)
    bounds = [*range(0, rows, range_rows), rows] if rows else [0]
    spans: list[tuple[int, int]] = []
    local: list[Any] = []
    wide = False
    if selection is not None:
        for a, b in pairwise(bounds):
            part = selection[a:b]
            lo, hi = int(part.min()), int(part.max()) + 1
            spans.append((lo, hi))
            wide = wide or hi - lo > _WIDE * (b - a)
        if not wide:  # each range's positions from its span's start, in place (no copy of the selection)
            for (a, b), (lo, _) in zip(pairwise(bounds), spans, strict=True):
                part = selection[a:b]
                part -= lo
                local.append(part)
    return _Plan(rows, bounds, selection, spans, local, wide, range_rows)


class _Column:
    """One Arrow column's chunks and where each starts."""

    def __init__(self, column: pa.ChunkedArray) -> None:
        import numpy as np

        self.chunks = [c for c in column.chunks if len(c)]
        self.starts = np.cumsum([0, *map(len, self.chunks)]).tolist()

    def pieces(self, lo: int, hi: int) -> Iterator[tuple[int, pa.Array, int]]:
        """(chunk index, the slice of it, its place from `lo`) covering input rows [lo, hi)."""
        import bisect

        k = max(bisect.bisect_right(self.starts, lo) - 1, 0)
        while k < len(self.chunks) and self.starts[k] < hi:
            begin, end = max(lo, self.starts[k]), min(hi, self.starts[k + 1])
            if begin < end:
                yield k, self.chunks[k].slice(begin - self.starts[k], end - begin), begin - lo
            k += 1


class _Runner:
    """Runs a task per range (in a pool of threads when there are several ranges), and lends
    each thread a buffer for its ranges' gathers: a fresh one per range was mapped and unmapped
    by malloc each time, and the page faults cost more than the copies. The buffers go with
    the runner, at the end of the conversion."""

    def __init__(self, pool: ThreadPoolExecutor | None) -> None:
        self.pool = pool
        self.held = threading.local()

    def scratch(self, n: int, dtype: Any) -> Any:
        """This thread's buffer, as n values of `dtype` (grown if needed)."""
        import numpy as np

        size = n * np.dtype(dtype).itemsize
        buffer: Any = getattr(self.held, "buffer", None)
        if buffer is None or len(buffer) < size:
            buffer = np.empty(max(size, 1 << 20), dtype=np.uint8)
            self.held.buffer = buffer
        return buffer[:size].view(dtype)

    def each(self, task: Callable[[int], None], count: int) -> None:
        if self.pool is None or count < 2:
            for r in range(count):
                task(r)
            return
        for future in [self.pool.submit(task, r) for r in range(count)]:
            future.result()


def _gathered(plan: _Plan, runner: _Runner, fill: Callable[[int, int, Any], None], out: Any) -> None:
    """Fill `out` (output rows) from input rows: `fill(lo, hi, dst)` writes input rows
    [lo, hi) into `dst`."""
    import numpy as np

    if plan.selection is None:
        runner.each(lambda r: fill(plan.bounds[r], plan.bounds[r + 1], out[plan.out(r)]), plan.count)
        return
    if plan.wide:  # the whole column once, then takes from it
        rows_in = max(hi for _, hi in plan.spans)
        whole = np.empty(rows_in, dtype=out.dtype)
        edges = [*range(0, rows_in, plan.range_rows), rows_in]
        runner.each(lambda r: fill(edges[r], edges[r + 1], whole[edges[r]:edges[r + 1]]), len(edges) - 1)

        def take_whole(r: int) -> None:
            np.take(whole, plan.selection[plan.out(r)], out=out[plan.out(r)])

        runner.each(take_whole, plan.count)
        return

    def take_local(r: int) -> None:
        lo, hi = plan.spans[r]
        buffer = runner.scratch(hi - lo, out.dtype)
        fill(lo, hi, buffer)
        np.take(buffer, plan.local[r], out=out[plan.out(r)])

    runner.each(take_local, plan.count)


def _numbers(column: pa.ChunkedArray, plan: _Plan, runner: _Runner, dtype: Any) -> Any:
    """A fixed-width column as a numpy array (floats: NaN for null) or, for ints with nulls,
    a nullable IntegerArray."""
    import numpy as np
    import pandas as pd

    source = _Column(column)
    values = np.empty(plan.rows, dtype=dtype)
    nan = values.dtype.kind == "f"
    with_mask = bool(column.null_count) and not nan
    mask = np.empty(plan.rows, dtype=bool) if with_mask else None

    def fill_values(lo: int, hi: int, dst: Any) -> None:
        for _, piece, at in source.pieces(lo, hi):
            part = dst[at:at + len(piece)]
            part[:] = _view(piece, dtype)
            if nan and piece.null_count:
                part[~_valid(piece)] = np.nan

    _gathered(plan, runner, fill_values, values)
    if mask is None:
        return values
    mask_out = mask

    def fill_mask(lo: int, hi: int, dst: Any) -> None:
        for _, piece, at in source.pieces(lo, hi):
            ok = _valid(piece)
            dst[at:at + len(piece)] = False if ok is None else ~ok

    _gathered(plan, runner, fill_mask, mask_out)
    return pd.arrays.IntegerArray(values.astype(np.int64, copy=False), mask_out)


def _timestamps(column: pa.ChunkedArray, plan: _Plan, runner: _Runner) -> Any:
    """A timestamp column as datetime64 with its zone, in the frame's own (writable) memory."""
    import numpy as np
    import pandas as pd

    kind = column.type
    if not kind.tz or column.null_count:  # not the log's ts: pandas' own conversion
        taken = _arrow(column, plan, runner)
        return taken.to_pandas()
    values = _numbers(column, plan, runner, np.int64)
    # pandas' constructor from Arrow (`DatetimeTZDtype.__from_arrow__`) ends in this call; the
    # public ones copy the values or localise them again.
    array_type: Any = pd.arrays.DatetimeArray
    dtype = pd.DatetimeTZDtype(unit=kind.unit, tz=kind.tz)
    return array_type._simple_new(values.view(f"M8[{kind.unit}]"), dtype=dtype)


def _categorical(column: pa.ChunkedArray, plan: _Plan, runner: _Runner) -> Any:
    """A low-cardinality column as a pandas categorical, categories in order of first appearance
    (unused ones dropped): the same categories, and so the same group-by order, as
    dictionary-encoding the values. Each chunk's dictionary is mapped onto the categories once;
    its indices are looked up into codes (no string per row)."""
    import numpy as np
    import pandas as pd

    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    source = _Column(column)
    code_of: dict[Any, int] = {}
    tables = []
    for chunk in source.chunks:
        words = chunk.dictionary.to_pylist()
        tables.append(np.array([-1 if w is None else code_of.setdefault(w, len(code_of)) for w in words], np.int64))
    k = len(code_of)
    kind = np.int8 if k < 2**7 else np.int16 if k < 2**15 else np.int32
    lookups = [None if len(t) and (t == np.arange(len(t))).all() else np.r_[t, -1].astype(kind) for t in tables]
    codes: Any = np.empty(plan.rows, kind)

    def fill(lo: int, hi: int, dst: Any) -> None:
        for c, piece, at in source.pieces(lo, hi):
            indices = _view(piece.indices, piece.indices.type.to_pandas_dtype())
            part = dst[at:at + len(piece)]
            lookup = lookups[c]
            if lookup is None:  # the dictionary's order is the categories'
                part[:] = indices
            else:
                np.take(lookup, indices, out=part, mode="clip")  # (an empty dictionary: all null)
            valid = _valid(piece)
            if valid is not None:
                part[~valid] = -1

    _gathered(plan, runner, fill, codes)
    first = _first_seen(codes, k, plan.bounds)
    if len(first) == 0:  # all null (or no rows): the same category dtype
        return pd.Categorical.from_codes(np.full(plan.rows, -1, np.int8), categories=pd.Index([], dtype="str"))
    words = np.array(list(code_of), dtype=object)
    if len(first) != k or (first != np.arange(k)).any():
        recode = np.full(k + 1, -1, dtype=kind)  # the last slot: code -1 (null)
        recode[first] = np.arange(len(first), dtype=kind)

        def apply(r: int) -> None:
            part = codes[plan.out(r)]
            np.take(recode, part, out=part, mode="wrap")  # -1 wraps to the last slot: null

        runner.each(apply, plan.count)
        words = words[first]
    categories = pd.Index(words.tolist(), dtype="str")
    return pd.Categorical.from_codes(codes, categories=categories, validate=False)


_FEW = 64  # up to this many categories, first appearances are found by one compare per category


def _first_seen(codes: Any, k: int, bounds: list[int]) -> Any:
    """The codes (0 .. k-1) present in `codes`, in order of first appearance. With few
    categories, each is looked for range by range from the start (the first rows hold every
    category in practice: a scan of a few cached ranges, no hash table or count per row)."""
    import numpy as np
    import pandas as pd

    if k > _FEW:
        found: Any = pd.unique(codes)
        return found[found >= 0]
    at: list[tuple[int, int]] = []
    missing = list(range(k))
    for a, b in pairwise(bounds):
        part = codes[a:b]
        still = []
        for code in missing:
            hit = part == code
            where = int(hit.argmax())
            if hit[where]:
                at.append((a + where, code))
            else:
                still.append(code)
        missing = still
        if not missing:
            break
    return np.array([code for _, code in sorted(at)], dtype=np.int64)


def _arrow(column: pa.ChunkedArray, plan: _Plan, runner: _Runner, cast_to: pa.DataType | None = None) -> pa.ChunkedArray:
    """The column's output rows as Arrow chunks (one per range; as they are without a
    selection), cast to `cast_to` if given. Arrow's take and cast release the GIL."""
    import pyarrow.compute as pc

    pool = memory_pool()
    if plan.selection is None:
        chunks = [c for c in column.chunks if len(c)]
        out: list[Any] = [None] * len(chunks)

        def cast_chunk(i: int) -> None:
            out[i] = chunks[i] if cast_to is None else pc.cast(chunks[i], cast_to, memory_pool=pool)

        runner.each(cast_chunk, len(chunks))
        return pa.chunked_array(out, type=cast_to or column.type)
    source = _Column(column)
    whole = pa.concat_arrays(source.chunks) if plan.wide and source.chunks else None
    out = [None] * (plan.count)

    def take(r: int) -> None:
        if whole is not None:
            array = pc.take(whole, take_indices(plan.selection[plan.out(r)]), memory_pool=pool)
        else:
            lo, hi = plan.spans[r]
            parts = [piece for _, piece, _ in source.pieces(lo, hi)]
            span = parts[0] if len(parts) == 1 else pa.concat_arrays(parts, memory_pool=pool)
            array = pc.take(span, take_indices(plan.local[r]), memory_pool=pool)
        out[r] = array if cast_to is None else pc.cast(array, cast_to, memory_pool=pool)

    runner.each(take, len(out))
    return pa.chunked_array(out, type=cast_to or column.type)


def _series(column: pa.ChunkedArray, name: str, plan: _Plan, runner: _Runner, categorical: Collection[str]) -> Any:
    """One Arrow column's output rows as a pandas array (or numpy array) with the log's dtypes."""
    import pandas as pd

    kind = column.type
    if name in categorical:
        return _categorical(column, plan, runner)
    if pa.types.is_timestamp(kind):
        return _timestamps(column, plan, runner)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        return _numbers(column, plan, runner, kind.to_pandas_dtype())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # pandas keeps its Arrow-backed strings as large_string: cast once, range by range.
        return _arrow(column, plan, runner, pa.large_string()).to_pandas()
    taken = _arrow(column, plan, runner)
    if pa.types.is_boolean(kind) and taken.null_count:
        return taken.to_pandas(types_mapper={kind: pd.BooleanDtype()}.get, memory_pool=memory_pool())
    return taken.to_pandas(memory_pool=memory_pool())


def _all_null(n: int, field: pa.Field, runner: _Runner, bounds: list[int], categorical: Collection[str]) -> Any:
    """A column no piece has, with the dtype an all-null one converts to, made directly:
    zeroed memory the kernel hands out lazily where the dtype allows (no Arrow nulls first)."""
    import numpy as np
    import pandas as pd

    kind = field.type
    if field.name in categorical:
        return pd.Categorical.from_codes(np.full(n, -1, np.int8), categories=pd.Index([], dtype="str"))
    if n == 0:  # no rows, so no nulls: the dtypes of an empty log
        plan = _plan(0, None, _RANGE_ROWS)
        return _series(pa.chunked_array([], type=kind), field.name, plan, runner, categorical)
    if pa.types.is_integer(kind):
        return pd.arrays.IntegerArray(_zeros(n, np.int64), np.ones(n, dtype=bool))
    if pa.types.is_boolean(kind):
        return pd.arrays.BooleanArray(_zeros(n, bool), np.ones(n, dtype=bool))
    if pa.types.is_floating(kind):
        values = np.empty(n, dtype=kind.to_pandas_dtype())

        def fill(r: int) -> None:
            values[bounds[r]:bounds[r + 1]] = np.nan

        runner.each(fill, len(bounds) - 1)
        return values
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        # Validity and offsets all zero, in pages untouched until read.
        buffers = [pa.py_buffer(_zeros((n + 7) // 8, np.uint8)), pa.py_buffer(_zeros(n + 1, np.int64)),
                   pa.py_buffer(b"")]
        nulls = pa.Array.from_buffers(pa.large_string(), n, buffers, null_count=n)
        return pa.chunked_array([nulls]).to_pandas()
    return pa.chunked_array([pa.nulls(n, kind)]).to_pandas()


def frame_from_table(holder: list[pa.Table], fields: Sequence[pa.Field] | None = None, selection: Any = None, *,
                     categorical: Collection[str] = ()) -> pd.DataFrame:
    """The table in `holder` (the rows `selection` picks, in that order; all if None) as a
    DataFrame, consumed one column at a time (each Arrow column is freed once converted, so
    the peak is the table plus about one column; an int `selection` is overwritten). `fields`
    are the frame's columns in order; those the table lacks are all null. Columns named in
    `categorical` become categoricals."""
    import pandas as pd

    table = holder.pop()
    names = table.column_names
    columns: list[pa.ChunkedArray | None] = list(table.columns)
    plan = _plan(table.num_rows, selection, _RANGE_ROWS)
    del table, selection
    fields = list(fields) if fields is not None else [pa.field(name, pa.null()) for name in names]
    index = {name: i for i, name in enumerate(names)}
    workers = min(os.cpu_count() or 1, 8)
    threaded = workers > 1 and plan.count > 1
    with ThreadPoolExecutor(max_workers=workers) if threaded else nullcontext() as threads:
        runner = _Runner(threads)
        out: dict[str, Any] = {}
        freed = Freed()
        for f in fields:
            if f.name not in index:
                out[f.name] = _all_null(plan.rows, f, runner, plan.bounds, categorical)
                continue
            i = index[f.name]
            column = cast("pa.ChunkedArray", columns[i])
            columns[i] = None  # the frame's column replaces it
            out[f.name] = _series(column, f.name, plan, runner, categorical)
            freed.add(column.nbytes)
            del column  # its pages go back at the next trim (see log/memory.py)
    return pd.DataFrame({name: pd.Series(values, copy=False) for name, values in out.items()}, copy=False)

