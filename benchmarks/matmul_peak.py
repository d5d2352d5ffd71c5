"""This CPU's sustained fp32 matmul throughput (GFLOP/s), the ceiling `kdlic profile` uses.

For each thread count and matrix side, an n x n fp32 matmul (2 n^3 FLOPs) is run
``--repeats`` times after one warm-up; the median and best GFLOP/s are printed, with the
load average (other processes on the machine lower the figure: say so when quoting it).

    python benchmarks/matmul_peak.py --threads 1,2 --sizes 512,1024,2048
"""

from __future__ import annotations

import argparse
import sys

from kdlic.evaluation.profile import measure_matmul_peak
from kdlic.utils.device import host_info


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--threads", default="1,2", help="comma list of torch thread counts")
    p.add_argument("--sizes", default="1024,2048", help="comma list of matrix sides")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    host = host_info()
    print(f"{host['cpu']}, {host['logical_cpus']} logical CPUs, torch {host['torch']}")
    print(f"{'threads':>7s} {'n':>6s} {'median GFLOP/s':>15s} {'best GFLOP/s':>13s}  load avg")
    rows = []
    for threads in (int(t) for t in args.threads.split(",")):
        for n in (int(s) for s in args.sizes.split(",")):
            r = measure_matmul_peak(threads, n, args.repeats, args.device)
            rows.append(r)
            print(f"{threads:7d} {n:6d} {r['median_gflops_per_s']:15.1f} {r['gflops_per_s']:13.1f}"
                  f"  {r['loadavg']}", flush=True)
    if args.json:
        from kdlic.utils.files import write_json

        write_json(args.json, {"host": host, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
