"""The quality suite: the --quick tier end to end (run without a suite name, as
``scripts/benchmark.py`` runs it), resumability, and the report's definitions on hand-made runs.
The numbers of the quick tier are not checked, only the plumbing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from hf_autolr.bench import schema
from hf_autolr.bench.cli import main, parse_args
from hf_autolr.bench.methods import BASELINES, METHODS
from hf_autolr.bench.report import _time_to_target, select_grid, summarise

SQUAD_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "squad_v2_dev_sample.json"


def _run(phase, method, lr, seed, val_loss, metric, evals=None, workload="w", cpu=1.0):
    return {"phase": phase, "workload": workload, "method": method, "lr": lr, "seed": seed, "val_loss": val_loss,
            "metric": metric, "diverged": val_loss is None, "evals": evals or [(10, val_loss, cpu)], "train_cpu_s": cpu,
            "ms_per_step": 1.0, "steps": 10, "multiplier": 1.0, "lr_trace": [], "loss_trace": []}


def test_grid_selection_uses_mean_validation_loss_and_counts_divergence_as_worst():
    runs = [
        _run("grid", "tuned_cosine", 1e-3, 100, 0.50, 90), _run("grid", "tuned_cosine", 1e-3, 101, 0.30, 91),  # mean 0.40
        _run("grid", "tuned_cosine", 1e-2, 100, 0.20, 95), _run("grid", "tuned_cosine", 1e-2, 101, None, 0),  # diverged once
        _run("grid", "tuned_cosine", 1e-4, 100, 0.45, 80), _run("grid", "tuned_cosine", 1e-4, 101, 0.44, 80),
    ]
    assert select_grid(runs, "w", "tuned_cosine") == 1e-3
    assert select_grid(runs, "w", "tuned_linear") is None


def test_ratio_target_time_to_target_and_compute():
    runs = [_run("grid", "tuned_linear", 1e-3, 100, 0.4, 90, cpu=5.0), _run("grid", "tuned_linear", 1e-2, 100, 0.5, 88, cpu=7.0)]
    runs += [_run("eval", "tuned_linear", 1e-3, s, 0.4 + 0.01 * s, 90 + s, evals=[(5, 0.6, 1.0), (10, 0.4 + 0.01 * s, 2.0)]) for s in range(3)]
    runs += [_run("eval", "tuned_cosine", 1e-3, s, 0.5, 80) for s in range(3)]
    runs += [_run("eval", "autolr_gp", 5e-5, s, 0.35, 89.1, evals=[(5, 0.41, 1.5), (10, 0.35, 3.0)]) for s in range(3)]
    runs += [_run("eval", "constant", 5e-5, s, 0.9, 50, evals=[(5, 1.0, 1.0), (10, 0.9, 2.0)]) for s in range(3)]
    runs.append(dict(_run("hint", "autolr_gp", 5e-4, 0, 0.3, 45.5), multiplier=10.0))
    summary = summarise({"runs": {str(i): r for i, r in enumerate(runs)}})["w"]
    assert summary["tuned"] == "tuned_linear"  # the better baseline on the evaluation seeds
    assert summary["target_val_loss"] == pytest.approx(0.41)  # median final loss of tuned
    rows = summary["rows"]
    assert rows["tuned_linear"]["ratio"] == pytest.approx(1.0)
    assert rows["autolr_gp"]["ratio"] == pytest.approx(89.1 / 91)
    assert rows["autolr_gp"]["ttt_steps"] == 5 and rows["autolr_gp"]["compute_to_target_s"] == pytest.approx(1.5)
    assert rows["constant"]["ttt_steps"] == math.inf
    assert rows["tuned_linear"]["compute_to_target_s"] == pytest.approx(12.0 + 2.0)  # whole grid + its own time
    assert summary["hint_ratios"]["autolr_gp"] == {10.0: pytest.approx(0.5), 1.0: pytest.approx(89.1 / 91)}
    assert _time_to_target({"evals": [(1, None, 0.1), (2, 0.2, 0.3)]}, 0.25) == (2.0, 0.3)


def test_unknown_names_are_rejected_with_the_accepted_values(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--methods", "autolr_gp,sgd_magic"])
    err = capsys.readouterr().err
    assert "--methods: unknown sgd_magic" in err and "schedule_free_adamw" in err


def test_the_qa_workload_needs_a_squad_file(tmp_path):
    with pytest.raises(SystemExit, match="--squad-file"):
        main(["--quick", "--workloads", "squad_minilm", "--out", str(tmp_path), "--no-progress"])


def test_quick_tier_end_to_end_and_resume(tmp_path):
    workloads = ["digits_mlp", "digits_cnn_full", "vision_resnet_trainer"]  # every method; QA: the next test
    argv = ["--quick", "--out", str(tmp_path), "--no-progress", "--workloads", ",".join(workloads)]
    main(argv)
    results = json.loads((tmp_path / "results.json").read_text())
    assert schema.check(results) == [] and results["suite"] == "quality" and results["tier"] == "quick"
    runs = [r for r in results["runs"].values() if r["phase"] not in ("untrained", "overhead")]
    for w in workloads:
        done = {(r["method"], r["phase"]) for r in runs if r["workload"] == w}
        for m, method in METHODS.items():
            assert (m, "eval") in done, (w, m)
            assert (m, "grid" if m in BASELINES else "hint") in done or not (m in BASELINES or method.takes_hint)
        overheads = {o["method"] for o in results["runs"].values() if o["workload"] == w and o["phase"] == "overhead"}
        assert overheads == (set() if w == "vision_resnet_trainer" else set(METHODS) - set(BASELINES))
        floor = [r for r in results["runs"].values() if r["workload"] == w and r["phase"] == "untrained"]
        assert len(floor) == 1 and 0 <= floor[0]["metric"] <= 100
    assert all(r["steps"] > 0 and len(r["evals"]) >= 1 and r["lr_trace"] for r in runs)
    # the Trainer workload ran our scheduler from TrainingArguments(lr_scheduler_type="autolr_gp")
    trainer_gp = [r for r in runs if r["workload"] == "vision_resnet_trainer" and r["method"] == "autolr_gp"]
    assert trainer_gp and all(r["decisions"].get("switch_reason") for r in trainer_gp)
    table = (tmp_path / "table.md").read_text()
    assert all(w in table.splitlines()[1] for w in workloads)
    assert "untrained model (the floor) = " in table and "## What each method decided" in table
    assert all(f"| {m} |" in table for m in METHODS)
    for png in ("ratio_to_tuned.png", "curves.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    summary = json.loads((tmp_path / "summary.json").read_text())
    for w in workloads:
        assert summary[w]["rows"][summary[w]["tuned"]]["ratio"] == pytest.approx(1.0)

    # resumable: a second invocation runs nothing again (every record is kept as it was)
    main(argv + ["--no-overhead"])
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["runs"] == results["runs"] and len(again["invocations"]) == 2



def test_quick_tier_qa_workloads(tmp_path):
    """Both QA workloads (real SQuAD text when the sample is there, the embedded set always), a
    few methods: the data, model, F1 and floor plumbing (every method is covered above)."""
    workloads = ["embedded_qa_minilm"] + (["squad_minilm"] if SQUAD_SAMPLE.exists() else [])
    methods = ["tuned_linear", "autolr_gp", "schedule_free_adamw"]
    main(["--quick", "--out", str(tmp_path), "--no-progress", "--no-overhead", "--workloads", ",".join(workloads),
          "--methods", ",".join(methods), "--squad-file", str(SQUAD_SAMPLE)])
    results = json.loads((tmp_path / "results.json").read_text())
    for w in workloads:
        done = {(r["method"], r["phase"]) for r in results["runs"].values() if r["workload"] == w}
        assert {(m, "eval") for m in methods} | {("tuned_linear", "grid"), ("autolr_gp", "hint"), ("none", "untrained")} <= done
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(0 <= summary[w]["untrained_metric"] <= 100 and summary[w]["tuned"] == "tuned_linear" for w in workloads)


@pytest.mark.slow
def test_full_benchmark(tmp_path):
    """The full tier (hours on 2 cores): opt-in with ``pytest -m slow``."""
    from hf_autolr.bench.quality import FULL
    from hf_autolr.bench.workloads import WORKLOADS

    main(["--out", str(tmp_path), "--no-progress", "--squad-file", str(SQUAD_SAMPLE)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) == set(WORKLOADS)
    for name, w in summary.items():
        seeds = len(WORKLOADS[name].eval_seeds or FULL["eval_seeds"])
        assert all(row["seeds"] >= seeds for row in w["rows"].values())
        assert w["tuned_metric"] > w["untrained_metric"]  # the benchmark discriminates


def test_decided_column_reports_each_seeds_outcome():
    from hf_autolr.bench.report import markdown

    runs = [_run("eval", "tuned_linear", 1e-3, s, 0.4, 90) for s in range(2)]
    gp = [dict(_run("eval", "autolr_gp", 5e-5, s, 0.4, 90)) for s in range(2)]
    gp[0]["outcome"], gp[1]["outcome"] = "test@12×2.5", "cap@50×10"
    results = {"runs": {str(i): r for i, r in enumerate(runs + gp)}}
    summary = summarise(results)
    assert summary["w"]["rows"]["autolr_gp"]["decided"] == "test@12×2.5, cap@50×10"
    assert summary["w"]["rows"]["tuned_linear"]["decided"] is None
    summary["w"]["grid_lr"] = {"tuned_linear": 1e-3}
    table = markdown(summary, results)
    assert "## What each method decided" in table and "| autolr_gp | test@12×2.5, cap@50×10 |" in table


def test_trainer_recipes_are_what_a_user_writes():
    from hf_autolr.bench.workloads import WORKLOADS

    vision = WORKLOADS["vision_resnet_trainer"]
    assert METHODS["autolr_gp"].trainer(vision.steps, vision) == {"args": {"lr_scheduler_type": "autolr_gp"}, "optimizer": None}
    cosine = METHODS["tuned_cosine"].trainer(200, vision)["args"]
    assert cosine == {"lr_scheduler_type": "cosine", "warmup_steps": 10}  # 5 % of 200 steps
    adascale = METHODS["adascale"].trainer(vision.steps, vision)["args"]  # gradient samples = accumulated micro-batches
    assert adascale["per_device_train_batch_size"] * adascale["gradient_accumulation_steps"] == vision.batch_size
    assert adascale["per_device_train_batch_size"] == vision.micro_batch
    assert METHODS["prodigy"].trainer(vision.steps, vision)["optimizer"] is not None
    assert METHODS["hf_warmup_stable_decay"].trainer(100, vision)["args"]["lr_scheduler_kwargs"] == {"num_decay_steps": 20}
