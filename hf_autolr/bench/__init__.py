"""The benchmark: every method and peer against a tuned baseline, offline (``hf-autolr-bench``)."""
