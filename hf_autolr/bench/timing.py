"""The one way the benchmark times a step: arms paired in one process, in alternating blocks, in CPU time.

Every arm trains on the same batches; the arm that goes first rotates from block to block, so a
change in machine load hits all arms alike; one warm-up block is not counted. Process CPU time
with one torch thread is the step's own compute, little disturbed by other jobs on the machine.
An arm's overhead is the median over blocks of its time / the reference's, minus 1; an arm
compared with a copy of itself shows the noise of the measurement.

    timed = paired_cpu_time({"sgd": sgd_step, "clars": clars_step}, batches, "sgd", blocks=5, block_steps=10)
    timed["clars"]["overhead"]  # e.g. 0.04: 4 % slower per step than SGD
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any


def paired_cpu_time(steps: Mapping[str, Callable[[Any], object]], batches: Iterator[Any], reference: str, *,
                    blocks: int, block_steps: int) -> dict[str, dict[str, float]]:
    """Per arm (``steps``: name -> one training step on a batch): ``ms_per_step`` (CPU) and its
    ``overhead`` against ``reference`` (median of the per-block ratios − 1, and their min and max)."""
    names = list(steps)
    spent: dict[str, list[float]] = {name: [] for name in names}
    for index in range(blocks + 1):  # block 0 warms every arm up and is not counted
        block = [next(batches) for _ in range(block_steps)]
        turn = index % len(names)
        for name in names[turn:] + names[:turn]:
            start = time.process_time()
            for batch in block:
                steps[name](batch)
            if index:
                spent[name].append(time.process_time() - start)
    out = {}
    for name in names:
        ratios = [mine / max(ref, 1e-9) for mine, ref in zip(spent[name], spent[reference])]
        out[name] = {"ms_per_step": 1000 * sum(spent[name]) / (blocks * block_steps),
                     "overhead": statistics.median(ratios) - 1.0, "overhead_min": min(ratios) - 1.0,
                     "overhead_max": max(ratios) - 1.0}
    return out
