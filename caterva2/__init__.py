"""Caterva2: on-demand access to Blosc2 and HDF5 datasets."""
