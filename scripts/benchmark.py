"""Every benchmark suite of ``hf_autolr.bench``; without a suite name, the quality suite (every
hf_autolr method and the peers against a tuned baseline). The repository's SQuAD sample, beside
the clone, is passed to the suites that take ``--squad-file``.

    python scripts/benchmark.py                 # quality, full tier (about 4 hours on 2 CPU cores) -> results/quality/
    python scripts/benchmark.py --quick         # quality, smoke tier (minutes) -> results/tmp/quality_quick/
    python scripts/benchmark.py adascale        # or overhead, large_batch, clars_cost -> results/<suite>/

See ``python scripts/benchmark.py [suite] --help``, ``results/README.md`` and the README's "Benchmark" section.
"""

from pathlib import Path

from hf_autolr.bench.cli import main

SQUAD_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "squad_v2_dev_sample.json"

if __name__ == "__main__":
    main(defaults={"squad_file": str(SQUAD_SAMPLE)} if SQUAD_SAMPLE.exists() else None)
