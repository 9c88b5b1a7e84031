"""Embedded default models (class-conditional DiT and Flux on Fashion-MNIST) and their training."""

from ditcache.models.defaults import MODELS, NULL_CLASS, DefaultModel, build, load_default
from ditcache.models.train import TrainConfig, train_default

__all__ = ["MODELS", "NULL_CLASS", "DefaultModel", "TrainConfig", "build", "load_default", "train_default"]
