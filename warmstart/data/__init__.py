"""Data ingestion: sources (builtin, CIFAR-10, ImageFolder; local or S3) into one canonical
in-memory form, content-addressed sharded storage in S3 (read whole or streamed), and seeded stratified / k-shot splits."""

from warmstart.data import formats  # noqa: F401  (register the shipped dataset kinds)
from warmstart.data.builtins import list_builtins, register_builtin
from warmstart.data.dataset import ImageDataset
from warmstart.data.kinds import DatasetKind, list_dataset_kinds, register_dataset_kind
from warmstart.data.sources import load_source
from warmstart.data.spec import SourceSpec, parse_spec
from warmstart.data.splits import Splits, load_splits, make_splits, store_splits
from warmstart.data.store import DatasetRef, load_dataset, open_dataset, store_dataset

__all__ = [
    "DatasetKind",
    "DatasetRef",
    "ImageDataset",
    "SourceSpec",
    "Splits",
    "list_builtins",
    "list_dataset_kinds",
    "load_dataset",
    "load_source",
    "load_splits",
    "make_splits",
    "open_dataset",
    "parse_spec",
    "register_builtin",
    "register_dataset_kind",
    "store_dataset",
    "store_splits",
]
