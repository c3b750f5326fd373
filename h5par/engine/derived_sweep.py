"""The data pass of a derived dataset: a sweep whose step reads every input's part.

Units are boxes of the result; in each step a rank reads, for each input, the box that
numpy's broadcasting maps to its unit (one independent read per input), evaluates the
formula, runs the kernels and writes the block. Everything else (steps, agreements,
checkpoints, resume) is :class:`~h5par.engine.sweep.Sweep`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from h5par.core.broadcast import source_box
from h5par.core.decomposition import index_shape
from h5par.core.units import Target, nbytes
from h5par.engine.config import Work
from h5par.engine.journal import Journaling
from h5par.engine.sweep import (
    Record,
    Sweep,
    _as_output,
    _Block,
    _naming,
    run_pass,
    statistics,
    sweep_of,
)
from h5par.hdf5.io import File, read_block
from h5par.kernels.derive import Derivation
from h5par.parallel.agreement import collective_errors

if TYPE_CHECKING:
    from h5par.parallel.comm import Comm

__all__ = ["DerivedSweep", "derived_sweep", "run_derived"]


@dataclasses.dataclass(kw_only=True)
class DerivedSweep(Sweep):
    """A sweep over a derived dataset's result, reading its ``inputs`` by name."""

    inputs: Mapping[str, h5py.Dataset]
    derivation: Derivation

    def read(self, u: int | None) -> Iterable[_Block]:
        """Read, for each input, the part of it unit ``u`` needs (None: empty reads)."""
        index = None if u is None else self.blocks[u]
        data = {}
        for source in self.target.sources:
            box = None if index is None else source_box(index, source.shape)
            data[source.name] = read_block(self.inputs[source.name], box)
            self.read_bytes += 0 if box is None else nbytes(box, source.dtype)
        return [_Block(index, data)]

    def compute(self, u: int | None, blocks: Iterable[_Block]) -> np.ndarray:
        """Evaluate the formula on the unit's input blocks, then the kernels."""
        (block,) = blocks
        target = self.target
        if block.index is None:
            return np.empty(0, target.out_dtype)
        fills = {s.name: s.fill for s in target.sources if s.fill is not None}
        shape = index_shape(block.index)
        with _naming(self):
            result = self.derivation.evaluate(block.data, shape, fills, target.fill, target.dtype)
            out, parts = self.chain.apply(result, block.index, target.fill, None, self.scratch)
            out = _as_output(out, target)
        self.add_parts(parts)
        return out


def derived_sweep(
    work: Work,
    target: Target,
    comm: Comm,
    inputs: Mapping[str, h5py.Dataset],
    dout: h5py.Dataset,
    journal: Journaling,
    record: Record,
) -> DerivedSweep:
    """The sweep of the units of ``target`` still to do, reading ``inputs`` by name."""
    spec = work.derived_spec(target.path)
    first = inputs[target.sources[0].name]
    base = sweep_of(work, target, spec.chain, comm, first, dout, journal=journal, record=record)
    fields: dict[str, Any] = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return DerivedSweep(**fields, inputs=inputs, derivation=spec.derivation)


def run_derived(
    work: Work,
    targets: list[Target],
    files: tuple[h5py.File, h5py.File],
    driver: str,
    comm: Comm,
    journal: Journaling,
    record: Record,
) -> dict[str, dict[str, Any]]:
    """The sweeps of the derived ``targets`` from the input and output ``files``. Collective.

    The other files they read are opened by every rank (read-only, with ``driver``),
    in the same order, and closed at the end. Returns the statistics of their reductions.
    """
    fin, fout = files
    others = sorted({s.file for t in targets for s in t.sources if s.file is not None})
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        opened: dict[str | None, h5py.File] = {None: fin}
        with collective_errors(comm, "open", fault="open"):
            for name in others:
                opened[name] = stack.enter_context(File(name, "r", comm, driver))
        for target in targets:
            inputs = {s.name: opened[s.file][s.path] for s in target.sources}
            sweep = derived_sweep(work, target, comm, inputs, fout[target.path], journal, record)
            results[target.path] = statistics(sweep.chain, run_pass(sweep), target.dtype)
    return {path: found for path, found in results.items() if found}
