"""The algorithms are pure torch; ``import hf_autolr`` registers with transformers lazily, and
warns once (instead of failing) when transformers' internals have moved. Each case runs in a
fresh interpreter, since what is imported and patched is process state."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# Every method and optimizer, built and stepped with losses, then a report of what got imported.
USE_THE_CORE = """
import json, sys, warnings
import torch
import hf_autolr, hf_autolr.optim
from hf_autolr.optim import CLARS
warnings.simplefilter("error")  # the core itself warns about nothing here
lrs = {}
for name in hf_autolr.available_methods():
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = hf_autolr.build_scheduler(name, opt, num_training_steps=200).attach(model)  # long enough to decide
    for step in range(40):
        for _ in range(2):  # two micro-batches: AdaScale needs two gradient samples per step
            loss = model(torch.randn(8, 3)).pow(2).mean() / 2
            loss.backward()
        scheduler.before_optimizer_step()
        opt.step(); opt.zero_grad()
        scheduler.observe(loss); scheduler.step()
        if step == 20:
            lrs[name] = scheduler.get_last_lr()[0]
clars = CLARS(torch.nn.Linear(3, 1).parameters(), lr=0.1)
print(json.dumps({"lrs": lrs, "transformers": "transformers" in sys.modules,
                  "accelerate": "accelerate" in sys.modules}))
"""


TESTS = str(Path(__file__).resolve().parent)


def python(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout)


def last_json(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_core_runs_where_transformers_and_accelerate_are_not_installed():
    blocked = "import sys\nsys.modules['transformers'] = None\nsys.modules['accelerate'] = None\n"
    report = last_json(python(blocked + USE_THE_CORE))
    assert set(report["lrs"]) == {"autolr_gp", "adascale", "autodrop", "lrtuner"}
    assert all(lr > 0 for lr in report["lrs"].values())


def test_importing_the_core_imports_and_patches_nothing_until_transformers_is_used():
    report = last_json(python(USE_THE_CORE))
    assert not report["transformers"] and not report["accelerate"]
    # ...and the documented contract holds as soon as the user imports transformers.
    after = last_json(python("""
        import json, hf_autolr.schedulers.autolr_gp, sys
        before = "transformers" in sys.modules
        from transformers import Trainer, TrainingArguments
        args = TrainingArguments("out", lr_scheduler_type="autolr_gp", optim="clars", report_to="none")
        print(json.dumps({"before": before, "type": args.lr_scheduler_type.value, "optim": args.optim.value,
                          "wrapped": [getattr(getattr(Trainer, a), "_hf_autolr_wrapped", False)
                                      for a in ("create_scheduler", "create_optimizer", "get_optimizer_cls_and_kwargs")]}))
    """))
    assert after == {"before": False, "type": "autolr_gp", "optim": "clars", "wrapped": [True, True, True]}


def test_registers_when_transformers_was_imported_first():
    report = last_json(python("""
        import json
        from transformers import Trainer, TrainingArguments
        import hf_autolr
        args = TrainingArguments("out", lr_scheduler_type="lrtuner", report_to="none")
        print(json.dumps({"type": args.lr_scheduler_type.value,
                          "wrapped": getattr(Trainer.create_scheduler, "_hf_autolr_wrapped", False)}))
    """))
    assert report == {"type": "lrtuner", "wrapped": True}


ALTERATIONS = {
    "scheduler table gone": "import transformers.optimization as m; del m.TYPE_TO_SCHEDULER_FUNCTION",
    "optimizer lookup no longer a staticmethod": (
        "from transformers import Trainer\n"
        "Trainer.get_optimizer_cls_and_kwargs = lambda self, args, model=None: None"
    ),
}


@pytest.mark.parametrize("alteration", list(ALTERATIONS), ids=list(ALTERATIONS))
def test_moved_internals_warn_once_and_the_fallback_trains(alteration, tmp_path):
    report = last_json(python(ALTERATIONS[alteration] + "\n" + f"""
import json, sys, warnings
import torch
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import hf_autolr
    from transformers import Trainer, TrainingArguments
    import transformers.trainer
from hf_autolr.integrations import AutoLRCallback
sys.path.insert(0, {TESTS!r})
from tiny import RegressionData, TinyRegressor

model = TinyRegressor()
opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
scheduler = hf_autolr.build_scheduler("lrtuner", opt, num_training_steps=6)
args = TrainingArguments({str(tmp_path)!r}, max_steps=6, per_device_train_batch_size=4, report_to="none",
                         save_strategy="no", use_cpu=True, disable_tqdm=True)
Trainer(model=model, args=args, train_dataset=RegressionData(24), optimizers=(opt, scheduler),
        callbacks=[AutoLRCallback()]).train()
messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
print(json.dumps({{"messages": messages, "observed": scheduler.num_observed}}))
"""))
    assert len(report["messages"]) == 1, report["messages"]
    assert "could not register" in report["messages"][0] and "build_scheduler" in report["messages"][0]
    assert report["observed"] == 6


def test_explicit_register_raises_when_internals_moved():
    result = python(ALTERATIONS["scheduler table gone"] + "\nimport hf_autolr\nhf_autolr.register()\n")
    assert result.returncode != 0 and "RegistrationError" in result.stderr


def test_plots_leave_the_users_matplotlib_backend_alone(tmp_path):
    report = last_json(python(f"""
        import json, sys, matplotlib
        matplotlib.use("svg")  # the user's choice
        import torch, hf_autolr
        from hf_autolr.plotting import plot_schedule
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = hf_autolr.build_scheduler("autolr_gp", opt, num_training_steps=40)
        plot_schedule({{"step": [0.0, 1.0], "lr": [0.01, 0.02], "loss": [1.0, 0.9]}}, scheduler, {str(tmp_path / "lr.png")!r})
        print(json.dumps({{"backend": matplotlib.get_backend(), "pyplot": "matplotlib.pyplot" in sys.modules}}))
    """))
    assert report == {"backend": "svg", "pyplot": False}
