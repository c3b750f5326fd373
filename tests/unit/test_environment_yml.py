"""environment.yml is the cluster path: it must parse and pin MPI builds."""

from pathlib import Path

import yaml

ENV = Path(__file__).resolve().parents[2] / "environment.yml"


def test_environment_yml_parses_and_pins_mpi_h5py() -> None:
    spec = yaml.safe_load(ENV.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    deps = [d for d in spec["dependencies"] if isinstance(d, str)]
    names = {d.split("=")[0].split(">")[0] for d in deps}
    assert {"python", "openmpi", "mpi4py", "h5py", "numpy", "pytest", "pytest-mpi"} <= names
    assert "h5py=*=mpi_openmpi_*" in deps
    assert "hdf5=*=mpi_openmpi_*" in deps
    assert "pytest-timeout>=2.2" in deps
