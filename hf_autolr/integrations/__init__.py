"""The only place that knows transformers' Trainer and Accelerate."""

from hf_autolr.integrations.accelerate import AcceleratorFeedback
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
    "RegistrationError",
    "add_diagnostics",
    "attach_autolr_callback",
    "patch_trainer_create_scheduler",
    "register_with_transformers",
]
