"""kubegate's benchmarks: every figure measured beside a baseline in the same run.

`python -m kubegate_bench` (what `bench/run` runs) drives the benchmarks of issue 6, one module
each (`b1_throughput` ... `b7_scale`), prints the table (`report`), writes
`bench/out/results.json` and draws `bench/out/bench.png` (`plot`).
"""
