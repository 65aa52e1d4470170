"""Converters from the distributed NYUv2 / Taskonomy formats into the HDF5 schema."""
