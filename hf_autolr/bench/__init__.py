"""The benchmarks, offline, as suites of one system: ``python -m hf_autolr.bench <suite> [--quick] [--out DIR]``
(also ``hf-autolr-bench <suite>``; without a suite name, ``quality``).

Suites (each a module here, with a quick tier that checks the plumbing in seconds to a minute):

- ``quality``: every method and peer against a tuned baseline (:mod:`.quality`);
- ``overhead``: per-step cost and state of every method against AdamW at a constant LR (:mod:`.overhead`);
- ``adascale``: AdaScale's scaling at S = 4, 8, 16 (Johnson et al., ICML 2020, arXiv 2007.05105; :mod:`.adascale`);
- ``large_batch``: SGD / LARS / CLARS at a large batch (Huo et al., arXiv 2002.01576; :mod:`.large_batch`);
- ``clars_cost``: CLARS's step cost and peak memory against SGD and LARS (:mod:`.clars_cost`).

Shared by all: one digits loader (:mod:`.digits`), one way to time a step (:mod:`.timing`: arms
paired in one process, alternating blocks, CPU time), one results file (:mod:`.schema`) and one
report step (:mod:`.cli`: the suite's tables, then a footer with the command and machine, to
``table.md``; plots beside it). Default folders: ``results/<suite>/``, with ``--quick``
``results/tmp/<suite>_quick/``.

``<out>/results.json`` (strict JSON, a non-finite number is ``null``)::

    {
      "suite": "adascale",                 # the suite's name
      "tier": "full",                      # "full" | "quick"
      "command": "python -m hf_autolr.bench adascale",   # the invocation that last wrote the file
      "machine": {"cpu": "…", "cores": 2, "threads": 1, "platform": "…", "python": "3.11.7",
                  "torch": "2.13.0+cpu", "transformers": "5.24.0", "load_average": [1.9, 2.0, 2.1]},
      "created": "2026-12-02T18:00:00+00:00", "updated": "…",   # ISO 8601, UTC
      "invocations": [{"command": "…", "started": "…", "wall_s": 161.2}],  # resumed suites: several
      "config": {…},                       # the suite's parameters (seeds, grids, steps, …)
      "runs": {"<key>": {…}, …}            # one record per run or measurement, keyed by what it ran
    }

A suite module has ``RESUMABLE`` (keep the records of an earlier invocation, as ``quality``
does), ``add_arguments(parser)``, optionally ``check_arguments(parser, args)``,
``config(args)``, ``run(args, results, save)`` (fills ``results["runs"]``, calling ``save()``
as it goes) and ``report(results, out)`` (writes its plots, returns its markdown tables).

    python -m hf_autolr.bench adascale --quick            # -> results/tmp/adascale_quick/
    python -m hf_autolr.bench overhead --report-only      # table.md again from results/overhead/results.json
"""
