"""The baseline for the runner's throughput: a bare ``as_completed`` loop over the same tasks.

For P groups it submits R replicate tasks and one aggregation task per group (the aggregation
depends on the group's replicates), all at once with two ``client.map`` calls (the fastest way to
submit many tasks from a client), and consumes every future with ``distributed.as_completed``;
nothing is written anywhere. Prints one JSON line:
``{"tasks": N, "wall_seconds": S, "tasks_per_second": N / S}``.

Run: ``python bench/bare_loop.py --scheduler tcp://127.0.0.1:8786 --groups 1000 --replicates 4``
(the study folder ``bench/studies`` must be importable on the workers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from distributed import Client, as_completed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheduler", required=True, help="Dask scheduler address")
    parser.add_argument("--groups", type=int, default=1000, help="parameter sets P")
    parser.add_argument("--replicates", type=int, default=4, help="replicates R per group")
    parser.add_argument("--mean-seconds", type=float, default=0.0, help="task duration")
    parser.add_argument("--result-kib", type=int, default=1, help="result size per replicate")
    args = parser.parse_args(argv)
    import lognormal  # on PYTHONPATH: the bench study folder

    params = {"sigma": 1.0, "mean_seconds": args.mean_seconds, "result_kib": args.result_kib}
    with Client(args.scheduler) as client:
        t0 = time.perf_counter()
        seeds = list(range(args.groups * args.replicates))
        reps = client.map(lognormal.simulate, [params] * len(seeds), seeds, pure=False)
        by_group = [
            reps[g * args.replicates : (g + 1) * args.replicates] for g in range(args.groups)
        ]
        aggs = client.map(lognormal.mean_value, by_group, [params] * args.groups, pure=False)
        futures = reps + aggs
        n = 0
        for f in as_completed(futures):
            f.result()
            n += 1
        wall = time.perf_counter() - t0
    print(json.dumps({"tasks": n, "wall_seconds": wall, "tasks_per_second": n / wall}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
