"""``python -m hf_autolr.bench <suite> [--quick] [--out DIR]``: see :mod:`hf_autolr.bench.cli`."""

from hf_autolr.bench.cli import main

main()
