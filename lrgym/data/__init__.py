"""Datasets as in-memory arrays, loaded offline from torchvision's on-disk layout or generated."""

from lrgym.data.datasets import DATA_DIR_ENV, DATASETS, ArrayDataset, candidate_roots, load_dataset

__all__ = ["DATASETS", "DATA_DIR_ENV", "ArrayDataset", "candidate_roots", "load_dataset"]
