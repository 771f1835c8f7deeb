"""Building-block components. One sub-package per block, one module per backend."""
