"""Optimizers: CLARS-like (reconstructed) with its per-sample gradient-norm hooks, and a factory
for CLARS and the ``pytorch_optimizer`` LARS / LAMB / AdamP. Pure torch."""

from hf_autolr.optim.clars import CLARS
from hf_autolr.optim.factory import available_optimizers, get_optimizer_cls
from hf_autolr.optim.per_sample_norms import PerSampleGradNorms

__all__ = ["CLARS", "PerSampleGradNorms", "available_optimizers", "get_optimizer_cls"]
