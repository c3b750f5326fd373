"""Subfiled output: one part file per rank, virtual datasets over them in the output file.

With ``layout = "subfiled"`` each rank writes the units it owns into its own *part file*
with serial HDF5 (no MPI-IO, no locking between ranks: file-per-process speed, and no need
for parallel HDF5). The output file holds the whole hierarchy like a single-file output,
but every dataset the run writes is an HDF5 virtual dataset (VDS, HDF5 >= 1.10) mapping
each unit to the part that holds it; any HDF5 reader opens it like a normal dataset::

    out.h5                  the hierarchy; processed datasets are virtual
    out.h5.parts/part-00000.h5, part-00001.h5, ...   one per rank, datasets at the same paths

Part datasets are chunked, so each part only stores the chunks its rank wrote. The
virtual datasets name their parts by a path relative to the output file, so the output and
its ``.parts`` folder move together. ``h5par consolidate`` turns the pair into one ordinary
file (:func:`h5par.consolidate`).

The owner of each unit is fixed by the number of parts (the ranks of the first run), so a
stopped subfiled run resumes on the same number of ranks; on another it starts over.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py

from h5par.core.decomposition import Index
from h5par.core.layout import CHUNKED_KEYS, row_chunks
from h5par.core.units import Target, assign, merged, output_boxes
from h5par.hdf5.hierarchy import create_dataset, create_type, vds_name

__all__ = [
    "part_datasets",
    "part_path",
    "parts_folder",
    "virtual_dataset",
]


def parts_folder(output: Path) -> Path:
    """The folder holding the part files of ``output`` (``out.h5`` -> ``out.h5.parts``)."""
    return output.with_name(output.name + ".parts")


def part_path(folder: Path, rank: int) -> Path:
    """Part file of ``rank`` in ``folder``."""
    return folder / f"part-{rank:05d}.h5"


def virtual_dataset(
    target: Target, blocks: Sequence[Index], nparts: int, output: Path
) -> dict[str, Any]:
    """The ``create`` arguments of ``target`` in the output file: a virtual dataset.

    Each unit's output boxes map to the same boxes of the part owning the unit.
    """
    kept = create_type(target.create)  # an HDF5 type the input kept, else the dtype
    dtype = h5py.Datatype(kept) if isinstance(kept, h5py.h5t.TypeID) else target.out_dtype
    layout = h5py.VirtualLayout(shape=target.out_shape, dtype=dtype)
    folder = parts_folder(output).name
    for rank, mine in enumerate(assign(range(len(blocks)), nparts)):
        boxes = merged(itertools.chain.from_iterable(output_boxes(target, blocks[u]) for u in mine))
        if not boxes:
            continue
        source = h5py.VirtualSource(
            vds_name(f"{folder}/{part_path(Path(), rank).name}"),
            vds_name(target.path),
            shape=target.out_shape,
            dtype=target.out_dtype,
        )
        for box in boxes:
            if box:
                layout[box] = source[box]
            else:  # a scalar dataset
                layout[...] = source
    return {"virtual": layout, "fillvalue": target.create.get("fillvalue")}


def part_datasets(part: h5py.File, targets: Iterable[Target]) -> None:
    """Create the datasets of ``targets`` in a part file (those it lacks: a resumed run)."""
    for target in targets:
        if target.path in part:
            continue
        create = dict(target.create)
        shape = target.out_shape
        if "chunks" not in create and shape and 0 not in shape:
            create["chunks"] = row_chunks(shape, target.out_dtype.itemsize)  # only what is written
        create.pop("maxshape", None)
        create["fill_time"] = "never"  # a part is written whole and never extended
        if 0 in shape:  # HDF5 cannot chunk an axis fixed at length 0 (nothing is written)
            create = {k: v for k, v in create.items() if k not in CHUNKED_KEYS}
        create_dataset(part, target.path, create)
