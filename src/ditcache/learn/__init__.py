"""Training of the learned methods' artifacts (L2C routers, TokenCache predictors, HyCa calibrations) on a frozen
model: a shipped default (``learn.l2c.train_l2c(model, config)``, ...) or a user's diffusers pipeline, on
trajectories recorded from its own calls (``learn.train_l2c(pipe, prompts=..., steps=...)``, ...)."""

from .pipeline import record_pipeline, train_hyca, train_l2c, train_tokencache

__all__ = ["record_pipeline", "train_hyca", "train_l2c", "train_tokencache"]
