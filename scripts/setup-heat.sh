#!/usr/bin/env bash
# The benchmark suite's optional HeAT method, in its own virtual environment (./.venv-heat),
# so that torch (~5.5 GB with its CUDA libraries) never lands in ./.venv, `make setup`,
# `make test` or CI. Idempotent; `make bench-heat-setup` runs it, `make bench` then adds the
# heat column (benchmarks/suite.py --heat-python .venv-heat/bin/python).
#   1. scripts/setup.sh with H5PAR_VENV=.venv-heat: the same pinned numpy, mpi4py and h5py
#      built against parallel HDF5 (pip reuses the wheel it built for .venv), h5par itself;
#   2. torch and torchvision (HEAT_TORCH), then HeAT without its dependencies: HeAT 1.8 pins
#      torch < 2.11.1 but runs with the torch below (its other dependencies, mpi4py, scipy
#      and h5py, are already there), so `pip check` reports that pin and nothing else.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${H5PAR_HEAT_VENV:-$ROOT/.venv-heat}"
read -r -a TORCH <<< "${HEAT_TORCH:-torch==2.14.1 torchvision==0.29.1}"
HEAT="${HEAT_VERSION:-heat==1.8.0}"
STAMP="$VENV/.h5par-heat-setup"

say() { printf '[setup-heat] %s\n' "$*"; }

fingerprint() {
    { cat "$ROOT/scripts/setup-heat.sh"; echo "${TORCH[*]} $HEAT"; } | sha256sum | cut -d' ' -f1
}

heat_ok() {
    [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(fingerprint)" ] &&
        "$VENV/bin/python" -c 'import heat, h5py; assert h5py.get_config().mpi' 2>/dev/null
}

H5PAR_VENV="$VENV" "$ROOT/scripts/setup.sh"
if heat_ok; then
    say "HeAT in $VENV up to date"
else
    pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$ROOT/constraints.txt")
    say "installing ${TORCH[*]} into $VENV (several GB the first time)"
    "${pip[@]}" "${TORCH[@]}"
    say "installing $HEAT without its dependencies (its torch pin is older than ${TORCH[0]})"
    "${pip[@]}" --no-deps "$HEAT"
    "$VENV/bin/python" -m pip check --disable-pip-version-check | grep -v '^heat .* torch' || true
    fingerprint > "$STAMP"
fi
say "ready: $("$VENV/bin/python" -c 'import heat, torch, h5py; print("heat", heat.__version__, "torch", torch.__version__, "h5py MPI", h5py.get_config().mpi)' 2>/dev/null)"
