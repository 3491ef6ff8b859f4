"""The only place that knows transformers' Trainer and Accelerate."""

from hf_autolr.integrations.accelerate import AcceleratorFeedback
from hf_autolr.integrations.clars_trainer import ClarsCallback
from hf_autolr.integrations.optimizer_names import optimizer_cls_and_kwargs, register_optimizer_names
from hf_autolr.integrations.trainer import (
    AutoLRCallback,
    AutoLRTrainer,
    AutoLRTrainerMixin,
    add_diagnostics,
    attach_autolr_callback,
    patch_trainer_create_scheduler,
)
from hf_autolr.integrations.transformers_names import RegistrationError, register_with_transformers

__all__ = [
    "AcceleratorFeedback",
    "AutoLRCallback",
    "AutoLRTrainer",
    "AutoLRTrainerMixin",
    "ClarsCallback",
    "RegistrationError",
    "add_diagnostics",
    "attach_autolr_callback",
    "optimizer_cls_and_kwargs",
    "patch_trainer_create_scheduler",
    "register_optimizer_names",
    "register_with_transformers",
]
