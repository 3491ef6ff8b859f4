"""The benchmark (issue #7): every hf_autolr method and the peers against a tuned baseline.

    python scripts/benchmark.py            # full run (about an hour on 2 CPU cores) -> results/benchmark/
    python scripts/benchmark.py --quick    # smoke tier (minutes) -> results/tmp/benchmark_quick/

See ``python scripts/benchmark.py --help`` and the README's "Benchmark" section.
"""

from hf_autolr.bench.cli import main

if __name__ == "__main__":
    main()
