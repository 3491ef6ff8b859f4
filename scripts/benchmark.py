"""The benchmark: every hf_autolr method and the peers (Prodigy, Schedule-Free, D-Adaptation, HF's schedules) against a tuned baseline.

    python scripts/benchmark.py            # full run (about 4 hours on 2 CPU cores) -> results/benchmark/
    python scripts/benchmark.py --quick    # smoke tier (minutes) -> results/tmp/benchmark_quick/

See ``python scripts/benchmark.py --help`` and the README's "Benchmark" section.
"""

import sys
from pathlib import Path

from hf_autolr.bench.cli import main

SQUAD_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad" / "squad_v2_dev_sample.json"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--squad-file" not in argv and SQUAD_SAMPLE.exists():  # the repository's ../shared, beside the clone
        argv += ["--squad-file", str(SQUAD_SAMPLE)]
    main(argv)
