"""Pure index arithmetic: decomposition, units of work, halos, selections, path globs, layouts.

Standard library and numpy only: everything here is tested without MPI or HDF5.
"""
