"""hf_autolr: automatic learning-rate control for Hugging Face Transformers and Accelerate.

``import hf_autolr`` makes every method name a transformers ``lr_scheduler_type``
(``TrainingArguments(lr_scheduler_type="autolr_gp")``, ``--lr_scheduler_type autolr_gp``,
``get_scheduler("autolr_gp", ...)``), makes an unmodified ``Trainer`` feed them its loss, and adds
the optimizers ``clars``, ``lars``, ``lamb`` and ``adamp`` as ``TrainingArguments.optim``. It does
so when transformers is imported (before or after), so the algorithms
(:mod:`hf_autolr.schedulers`, :mod:`hf_autolr.optim`) stay pure torch: importing them imports and
patches nothing else.
"""

from hf_autolr.integrations.registration import register, register_on_import
from hf_autolr.registry import available_methods, build_scheduler, method_options
from hf_autolr.schedulers import FeedbackScheduler

__version__ = "0.1.0"

register_on_import()

__all__ = ["FeedbackScheduler", "available_methods", "build_scheduler", "method_options", "register"]
