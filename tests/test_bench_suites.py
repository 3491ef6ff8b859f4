"""Every benchmark suite's quick tier, end to end through the one CLI: the results follow the one
layout (``hf_autolr.bench.schema``), the shared report step writes ``table.md`` (with the footer
naming the command and machine) and the plots, and ``--report-only`` redoes it from the file.
The numbers of a quick tier are not checked, only the plumbing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hf_autolr.bench import schema
from hf_autolr.bench.cli import SUITES, main


def _results(out):
    results = json.loads((out / "results.json").read_text())
    assert schema.check(results) == [], schema.check(results)
    table = (out / "table.md").read_text()
    assert f"Suite `{results['suite']}` ({results['tier']} tier): `{results['command']}`" in table
    return results, table


def _report_again(suite, out):
    before = (out / "table.md").read_text()
    main([suite, "--quick", "--out", str(out), "--report-only"])
    assert (out / "table.md").read_text() == before  # the report comes from results.json alone


def _png(path):
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_adascale_quick(tmp_path):
    main(["adascale", "--quick", "--out", str(tmp_path)])
    results, table = _results(tmp_path)
    assert results["suite"] == "adascale" and results["tier"] == "quick"
    assert results["command"] == f"python -m hf_autolr.bench adascale --quick --out {tmp_path}"
    runs = results["runs"].values()
    assert {(r["method"], r["scale"]) for r in runs} == {("none", 1)} | {(m, s) for m in ("adascale", "lsw", "tuned", "none") for s in (4, 8, 16)}
    assert {r["momentum"] for r in runs} == {0.9, 0.0}  # the ablation without momentum
    gained = [r for r in runs if r["method"] == "adascale"]
    assert all(1.0 <= r["mean_gain"] <= r["scale"] and r["final_progress"] >= r["t_si"] and r["gains"] for r in gained)
    assert table.count("| 16 | 256 |") == 2
    _png(tmp_path / "scaling.png")
    _report_again("adascale", tmp_path)


def test_adascale_lr_sweep_needs_an_out_folder(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["adascale", "--tune-lr"])
    assert "--tune-lr needs --out" in capsys.readouterr().err
    main(["adascale", "--tune-lr", "--seeds", "1", "--out", str(tmp_path)])
    results, table = _results(tmp_path)
    assert {r["lr"] for r in results["runs"].values()} == {0.02, 0.05, 0.1, 0.2} and "S=1 LR sweep" in table


def test_large_batch_quick(tmp_path):
    main(["large_batch", "--quick", "--out", str(tmp_path)])
    results, table = _results(tmp_path)
    config = results["config"]
    assert (config["n_train"], config["n_val"], config["n_test"], config["batch"]) == (1100, 247, 450, 275)
    large = [r for r in results["runs"].values() if r["phase"] == "large"]
    assert {r["arm"] for r in large} == {"sgd_ls", "sgd_ls_warmup", "sgd", "lars_warmup", "lars", "clars", "lars_all", "clars_all"}
    assert all(len(r["train_loss"]) == r["steps"] == 15 * 4 for r in large)
    assert all(len(r["coherence"]) == r["steps"] for r in large if r["arm"] in ("clars", "clars_all"))
    assert "CLARS-like, all tensors adapted, no warmup: coherence" in table
    _png(tmp_path / "curves.png")
    _report_again("large_batch", tmp_path)


def test_clars_cost_quick(tmp_path):
    main(["clars_cost", "--quick", "--out", str(tmp_path)])
    results, table = _results(tmp_path)
    runs = results["runs"]
    assert set(runs) == {f"{w}|{a}" for w in ("mlp", "cnn") for a in ("sgd", "lars", "clars")}
    assert runs["mlp|sgd"]["overhead"] == 0.0 and all(r["ms_per_step"] > 0 for r in runs.values())
    assert all(r["peak_mb"] > r["growth_mb"] > 0 for k, r in runs.items() if k.startswith("mlp"))  # quick: mlp's memory only
    assert "| clars |" in table and "### cnn" in table


def test_overhead_quick(tmp_path):
    methods = ["constant", "autolr_gp", "lrtuner", "clars"]
    main(["overhead", "--quick", "--out", str(tmp_path), "--methods", ",".join(methods)])
    results, table = _results(tmp_path)
    runs = results["runs"]
    assert set(runs) == {f"overhead|{w}|{m}" for w in ("digits_mlp", "embedded_qa_minilm") for m in methods}
    for record in runs.values():
        assert record["ms_per_step"] > 0 and record["reference_ms_per_step"] > 0 and record["param_bytes"] > 0
    assert runs["overhead|digits_mlp|constant"]["extra_state_bytes"] == 0  # AdamW against itself
    clars = runs["overhead|digits_mlp|clars"]
    assert clars["extra_state_bytes"] < 0  # momentum only, AdamW keeps two moments
    assert (clars["lr"], clars["reference_lr"]) == (1.0, 5e-5)  # AdamW at its own LR, not CLARS's
    assert "### embedded_qa_minilm" in table and "| lrtuner |" in table
    _report_again("overhead", tmp_path)


def test_adascale_cost_quick(tmp_path):
    """Two real gloo processes (and the one-process accumulation): S counted as processes ×
    micro-batches, both arms timed."""
    main(["adascale_cost", "--quick", "--out", str(tmp_path), "--workloads", "digits_mlp"])
    results, table = _results(tmp_path)
    runs = {r["setting"]: r for r in results["runs"].values()}
    assert set(runs) == {"ddp", "ddp_accumulate", "accumulate"}
    assert {k: r["scale"] for k, r in runs.items()} == {"ddp": 2, "ddp_accumulate": 4, "accumulate": 2}
    assert all(r["constant_ms_per_step"] > 0 and r["adascale_ms_per_step"] > 0 for r in runs.values())
    assert "| digits_mlp | ddp (2 × 1) | 2 |" in table
    _report_again("adascale_cost", tmp_path)


def test_report_only_needs_a_results_file(tmp_path):
    with pytest.raises(SystemExit, match="no .*results.json"):
        main(["clars_cost", "--report-only", "--out", str(tmp_path)])


def test_unknown_names_are_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["overhead", "--methods", "tuned_cosine"])  # a grid baseline has no overhead to measure
    assert "--methods: unknown tuned_cosine" in capsys.readouterr().err


def test_a_results_folder_holds_one_suite(tmp_path):
    main(["adascale", "--quick", "--out", str(tmp_path), "--scales", "1", "4", "--no-ablation"])
    with pytest.raises(SystemExit, match="holds suite 'adascale'"):
        main(["--quick", "--out", str(tmp_path), "--workloads", "digits_mlp", "--methods", "constant"])


def test_legacy_quality_results_are_resumed_in_the_suite_layout():
    from hf_autolr.bench.quality import upgrade_legacy

    legacy = {"runs": {"eval|w|m|0.001|0": {"phase": "eval", "metric": 90.0}},
              "overhead": {"w|autolr_gp": {"workload": "w", "method": "autolr_gp", "overhead": 0.01}},
              "meta": {"command": "benchmark.py", "tier": "full", "machine": {}, "eval_seeds": [0]}}
    upgraded = upgrade_legacy(legacy)
    assert set(upgraded) == set(schema.TOP_LEVEL) and upgraded["config"] == {"eval_seeds": [0]}
    assert set(upgraded["machine"]) >= set(schema.MACHINE)
    assert upgraded["runs"]["overhead|w|autolr_gp"] == {"workload": "w", "method": "autolr_gp", "overhead": 0.01, "phase": "overhead"}


def test_module_entry_point_lists_every_suite():
    done = subprocess.run([sys.executable, "-m", "hf_autolr.bench", "adascale", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m hf_autolr.bench adascale")
    assert all(name in done.stdout for name in SUITES)
