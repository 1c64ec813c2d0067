"""Data layer: the canonical HDF5 file and the synthetic source."""

from mmolre_cli.data.canonical import (
    FORMAT,
    MOSEI_EMOTIONS,
    SPLITS,
    CanonicalData,
    Split,
    read_canonical,
    summarize,
    validate,
    write_canonical,
)
from mmolre_cli.data.synthetic import (
    BUILTIN_LIKE,
    BUILTIN_SCALE,
    BUILTIN_SEED,
    builtin_dataset_path,
    generate_synthetic,
)

__all__ = [
    "BUILTIN_LIKE",
    "BUILTIN_SCALE",
    "BUILTIN_SEED",
    "FORMAT",
    "MOSEI_EMOTIONS",
    "SPLITS",
    "CanonicalData",
    "Split",
    "builtin_dataset_path",
    "generate_synthetic",
    "read_canonical",
    "summarize",
    "validate",
    "write_canonical",
]
