"""hf_autolr: automatic learning-rate control for Hugging Face Transformers and Accelerate.

``import hf_autolr`` registers every method name as a transformers ``lr_scheduler_type``
(``TrainingArguments(lr_scheduler_type="autolr_gp")``, ``--lr_scheduler_type autolr_gp``,
``get_scheduler("autolr_gp", ...)``) and makes an unmodified ``Trainer`` feed them its loss; it
also registers the optimizers ``clars``, ``lars``, ``lamb`` and ``adamp`` as ``TrainingArguments.optim``.
The algorithms themselves (:mod:`hf_autolr.schedulers`) are pure torch.
"""

from hf_autolr.registry import available_methods, build_scheduler, method_options
from hf_autolr.schedulers import FeedbackScheduler

__version__ = "0.1.0"


def register() -> list[str]:
    """Register our names with transformers and hook the Trainer (idempotent; done at import)."""
    from hf_autolr.integrations import patch_trainer_create_scheduler, register_with_transformers  # noqa: PLC0415
    from hf_autolr.integrations.optimizer_names import register_optimizer_names  # noqa: PLC0415

    names = register_with_transformers()
    patch_trainer_create_scheduler()
    register_optimizer_names()  # optim="clars" / "lars" / "lamb" / "adamp"
    return names


register()

__all__ = ["FeedbackScheduler", "available_methods", "build_scheduler", "method_options", "register"]
