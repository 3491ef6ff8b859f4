"""LR-control methods: pure torch, one module each, all :class:`FeedbackScheduler` subclasses."""

from hf_autolr.schedulers.adascale import AdaScale
from hf_autolr.schedulers.base import FeedbackScheduler

__all__ = ["AdaScale", "FeedbackScheduler"]
