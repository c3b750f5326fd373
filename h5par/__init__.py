"""h5par: MPI-parallel HDF5 processing."""

__version__ = "0.1.0"
