"""Helper for test_foreign_tools.py: write and check files with netCDF4-python and PyTables.

Each command runs in its own process: those libraries bring their own HDF5 builds, which
must not share a process with the parallel HDF5 h5py uses.

    python foreign_tools.py write-netcdf PATH | check-netcdf IN OUT
    python foreign_tools.py write-tables PATH | check-tables IN OUT
    python foreign_tools.py write-climate PATH [SHAPE [VARIABLE...]] | check-climate IN OUT [VARIABLE...]
    python foreign_tools.py check-selection IN OUT EXPECTED_JSON
    python foreign_tools.py write-netcdf3 PATH FORMAT   (NETCDF3_CLASSIC, NETCDF3_64BIT_OFFSET)
"""

from __future__ import annotations

import sys

import numpy as np


def temperature() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.normal(loc=2.0, scale=5.0, size=(6, 10, 12)).astype(np.float32)


def write_netcdf(path: str) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w") as nc:
        nc.title = "h5par round trip"
        for name, n in (("time", None), ("lat", 10), ("lon", 12)):
            nc.createDimension(name, n)
        nc.createVariable("time", "f8", ("time",))[:] = np.arange(6) * 3600.0
        nc.createVariable("lat", "f4", ("lat",))[:] = np.linspace(-45, 45, 10)
        nc.createVariable("lon", "f4", ("lon",))[:] = np.linspace(0, 330, 12)
        t = nc.createVariable("t2m", "f4", ("time", "lat", "lon"), fill_value=-999.0, zlib=True)
        t.units = "degC"
        data = temperature()
        data[0, 0, :3] = -999.0
        t[:] = np.ma.masked_equal(data, -999.0)


def check_netcdf(src: str, out: str) -> None:
    import netCDF4

    with netCDF4.Dataset(src) as a, netCDF4.Dataset(out) as b:
        assert b.title == a.title
        assert {k: len(v) for k, v in b.dimensions.items()} == {
            k: len(v) for k, v in a.dimensions.items()
        }
        assert b.dimensions["time"].isunlimited()
        for name in ("time", "lat", "lon"):
            assert np.array_equal(b[name][:], a[name][:]), name
        assert b["t2m"].dimensions == ("time", "lat", "lon") and b["t2m"].units == "degC"
        got, src_data = b["t2m"][:], a["t2m"][:]
        assert np.array_equal(got.mask, src_data.mask), "missing values moved"
        expected = np.clip(src_data.filled(0), 0, None)
        assert np.array_equal(got.filled(0)[~got.mask], expected[~got.mask])
    print("netCDF4 round trip OK")


def write_climate(path: str, shape: str = "3,4,6,8", *names: str) -> None:
    """T and u (or ``names``) of (time, z, y, x) in float64, ``shape`` "3,4,6,8" by default;
    coordinates time, y, x; z only a dimension."""
    import netCDF4

    rng = np.random.default_rng(22)
    nt, nz, ny, nx = (int(n) for n in shape.split(","))
    with netCDF4.Dataset(path, "w") as nc:
        for name, n in (("time", None), ("z", nz), ("y", ny), ("x", nx)):
            nc.createDimension(name, n)
        nc.createVariable("time", "f8", ("time",))[:] = np.arange(nt) * 3600.0 + 0.1
        y = nc.createVariable("y", "f8", ("y",))
        y[:], y.units = np.linspace(-45.1, 45.1, ny), "degrees_north"
        nc.createVariable("x", "f4", ("x",))[:] = np.linspace(0, 330, nx)
        for name in names or ("T", "u"):
            var = nc.createVariable(name, "f8", ("time", "z", "y", "x"), zlib=True)
            var[:] = rng.normal(size=(nt, nz, ny, nx))


def check_climate(src: str, out: str, *converted: str) -> None:
    """``converted`` variables became float32 (astype); everything else is unchanged."""
    import netCDF4

    with netCDF4.Dataset(src) as a, netCDF4.Dataset(out) as b:
        sizes = {k: len(v) for k, v in b.dimensions.items()}
        assert sizes == {k: len(v) for k, v in a.dimensions.items()}, sizes
        assert b.dimensions["time"].isunlimited()
        assert set(b.variables) == set(a.variables), set(b.variables)
        for name, var in a.variables.items():
            got = b[name]
            assert got.dimensions == var.dimensions, (name, got.dimensions)
            want = var[:].astype(np.float32) if name in converted else var[:]
            assert got.dtype == want.dtype, (name, got.dtype)
            assert got[:].tobytes() == want.tobytes(), name
    print("netCDF4 read the output OK")


def select(array: np.ndarray, text: str) -> np.ndarray:
    """``array[text]`` as h5py reads it: a coordinate list keeps its axis where it is."""
    items = eval(f"np.s_[{text}]")  # test data: the selections the tests write
    axis = 0
    for item in items if isinstance(items, tuple) else (items,):
        if isinstance(item, slice):
            array = array[(slice(None),) * axis + (item,)]
        else:
            array = np.take(array, item, axis=axis)
        axis += 0 if isinstance(item, int) else 1
    return array


def check_selection(src: str, out: str, expected: str) -> None:
    """netCDF4-python reads ``out`` as ``expected`` (JSON) says, values bitwise numpy's.

    ``expected`` holds ``variables``: ``{name: [selection or null, [dimension, ...]]}``
    (numpy index syntax on the input's variable of that name), ``coordinates``: ``{name:
    [input variable, selection]}``, optionally ``unlimited`` (dimension names) and ``only``
    (the output's variables, all of them).
    """
    import json

    import netCDF4

    spec = json.loads(expected)
    with netCDF4.Dataset(src) as a, netCDF4.Dataset(out) as b:
        a.set_auto_mask(False)
        b.set_auto_mask(False)
        for name, (text, dims) in spec["variables"].items():
            want = a[name][:] if text is None else select(a[name][:], text)
            assert b[name].dimensions == tuple(dims), (name, b[name].dimensions)
            sizes = tuple(len(b.dimensions[d]) for d in dims)
            assert sizes == want.shape == b[name].shape, (name, sizes, want.shape)
            got = b[name][:]
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), name
        for name, (source, text) in spec.get("coordinates", {}).items():
            want = select(a[source][:], text)
            assert b[name].dimensions == (name,), (name, b[name].dimensions)
            assert b[name][:].tobytes() == want.tobytes(), name
            assert b[name].ncattrs() == a[source].ncattrs(), name
        for name in spec.get("unlimited", []):
            assert b.dimensions[name].isunlimited(), name
        if "only" in spec:
            assert sorted(b.variables) == sorted(spec["only"]), sorted(b.variables)
    print("netCDF4 read the selection OK")


def write_netcdf3(path: str, kind: str) -> None:
    import netCDF4

    with netCDF4.Dataset(path, "w", format=kind) as nc:
        nc.createDimension("x", 4)
        nc.createVariable("t", "f4", ("x",))[:] = temperature()[0, 0, :4]


def write_tables(path: str) -> None:
    import tables

    class Reading(tables.IsDescription):
        station = tables.StringCol(8)
        value = tables.Float64Col()

    with tables.open_file(path, "w", title="h5par tables") as f:
        group = f.create_group("/", "run", "a run")
        f.create_array(group, "field", temperature().astype(np.float64), "a field")
        table = f.create_table(group, "readings", Reading, "readings")
        row = table.row
        for i in range(20):
            row["station"], row["value"] = f"st{i % 4}", i - 10.0
            row.append()
        table.flush()


def check_tables(src: str, out: str) -> None:
    import tables

    with tables.open_file(src) as a, tables.open_file(out) as b:
        assert b.title == a.title and b.root.run._v_title == "a run"
        assert np.array_equal(b.root.run.field.read(), np.clip(a.root.run.field.read(), 0, None))
        assert b.root.run.field.title == "a field"
        assert np.array_equal(b.root.run.readings.read(), a.root.run.readings.read())
        assert b.root.run.readings.attrs.CLASS == "TABLE"
    print("PyTables round trip OK")


if __name__ == "__main__":
    commands = {
        "write-netcdf": write_netcdf,
        "check-netcdf": check_netcdf,
        "write-tables": write_tables,
        "check-tables": check_tables,
        "write-climate": write_climate,
        "write-netcdf3": write_netcdf3,
        "check-climate": check_climate,
        "check-selection": check_selection,
    }
    commands[sys.argv[1]](*sys.argv[2:])
