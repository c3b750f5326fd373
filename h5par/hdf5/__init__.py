"""h5py wrappers: files and drivers, reads and writes of blocks, hierarchy copy, listing."""
