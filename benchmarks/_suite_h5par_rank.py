"""``python -m h5par ARGS`` on one rank, then this rank's peak RSS into a small JSON file.

    mpirun -n N python benchmarks/_suite_h5par_rank.py run JOB --quiet --report R.json

Exactly what ``python -m h5par`` runs (``h5par.app.cli.main``); afterwards each rank writes
``{"rank": r, "vmhwm_kib": ...}`` (VmHWM from /proc/self/status) to
``$H5PAR_SUITE_RSS.<rank>.json`` when that variable is set. Nothing else is added to the run.

For tuning experiments only, ``H5PAR_SUITE_PATCH="module.NAME=VALUE;..."`` sets module
constants before the run (VALUE is a Python literal), e.g.
``--h5par-variant "u16:env:H5PAR_SUITE_PATCH=h5par.engine.plan.UNITS_PER_DATASET=16"``: a way
to measure a proposed change to h5par without editing it.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import sys

from _suite_data import vmhwm_kib  # this script runs from benchmarks/

from h5par.app.cli import main

_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "SLURM_PROCID")


def _patch(text: str) -> None:
    """Apply ``module.NAME=VALUE;...`` (an experiment; the name must already exist)."""
    for item in filter(None, (part.strip() for part in text.split(";"))):
        target, _, value = item.partition("=")
        module_name, _, name = target.strip().rpartition(".")
        module = importlib.import_module(module_name)
        if not hasattr(module, name):
            raise SystemExit(f"H5PAR_SUITE_PATCH: {module_name} has no {name}")
        setattr(module, name, ast.literal_eval(value.strip()))


def _record(status: int) -> None:
    prefix = os.environ.get("H5PAR_SUITE_RSS")
    if not prefix:
        return
    rank = next((int(os.environ[v]) for v in _RANK_VARS if os.environ.get(v, "").isdigit()), 0)
    with open(f"{prefix}.{rank}.json", "w") as out:
        json.dump({"rank": rank, "vmhwm_kib": vmhwm_kib(), "status": status}, out)


if __name__ == "__main__":
    _patch(os.environ.get("H5PAR_SUITE_PATCH", ""))
    code = main(sys.argv[1:])
    _record(code)
    sys.exit(code)
