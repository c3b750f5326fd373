#!/usr/bin/env bash
# Set up everything h5par needs on a Debian machine, idempotently:
#   Open MPI + parallel HDF5 + hdf5-tools, and netCDF's and NCO's command-line tools (the
#   tests read outputs with ncdump and ncks) from Debian (needs root if anything is missing),
#   a virtual environment at ./.venv with numpy, mpi4py, h5py built against parallel HDF5,
#   the test tools, the benchmark suite's dask and matplotlib (its CI smoke test runs them)
#   and h5par itself (editable, console script `h5par`).
# A second run only checks and skips (a few seconds).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${H5PAR_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.h5par-setup"
APT_PKGS=(openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools pkg-config netcdf-bin nco)

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

system_packages() {
    local missing=() p
    command -v dpkg-query >/dev/null 2>&1 || die "this setup needs Debian/Ubuntu (apt); elsewhere use the conda environment: conda env create -f environment.yml"
    for p in "${APT_PKGS[@]}"; do installed "$p" || missing+=("$p"); done
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    "$PYTHON" -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null || missing+=(python3-dev)
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    if [ ${#missing[@]} -eq 0 ]; then say "system packages present"; return; fi
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages: ${missing[*]} (installing them needs root: sudo make ...), or use the conda environment: conda env create -f environment.yml"
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

fingerprint() {
    cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1
}

venv_ok() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] &&
        "$VENV/bin/python" -c 'import h5py, mpi4py, h5par; assert h5py.get_config().mpi' 2>/dev/null
}

python_packages() {
    local pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt")
    [ -x "$VENV/bin/python" ] || { say "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
    "${pip[@]}" --upgrade pip setuptools wheel
    "${pip[@]}" numpy mpi4py Cython pkgconfig
    if ! "$VENV/bin/python" -c 'import h5py; assert h5py.get_config().mpi' 2>/dev/null; then
        say "building h5py against parallel HDF5 (a few minutes the first time, cached by pip after)"
        # --no-build-isolation: build against the venv's numpy/mpi4py instead of compiling
        # mpi4py from source inside an isolated build environment (slow and memory hungry).
        CC=mpicc HDF5_MPI=ON HDF5_PKGCONFIG_NAME=hdf5-openmpi \
            "${pip[@]}" --no-build-isolation --no-binary=h5py --force-reinstall --no-deps h5py
    fi
    "${pip[@]}" --no-build-isolation -e "$ROOT[test,dev,bench]"
    "$VENV/bin/python" -c 'import h5py; assert h5py.get_config().mpi, "h5py was built without MPI"'
    fingerprint > "$STAMP"
}

system_packages
if venv_ok; then say "virtual environment $VENV up to date"; else python_packages; fi
# Bytecode for the editable h5par (pip compiles installed packages, not editable ones; with
# PYTHONDONTWRITEBYTECODE set, every start would compile h5par again: about 0.1 s per rank).
"$VENV/bin/python" -m compileall -q "$ROOT/h5par"
say "ready: $("$VENV/bin/python" -c 'import h5py; print("h5py", h5py.__version__, "HDF5", h5py.version.hdf5_version, "MPI", h5py.get_config().mpi)')"
