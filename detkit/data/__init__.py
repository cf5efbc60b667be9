"""Datasets: the canonical on-disk contract, format converters, validation, statistics, splits, augmentation."""

from detkit.data.classmap import ClassMap
from detkit.data.dataset import DatasetSpec, SplitSpec, load_dataset

__all__ = ["ClassMap", "DatasetSpec", "SplitSpec", "load_dataset"]
