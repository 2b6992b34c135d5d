"""`make bench`: the transfer engine's benchmarks (issue 3, item 7), each a ratio against a baseline measured in the same run.

Run `python -m tests.bench` (full size, several minutes, needs ~30 GB free under /var/tmp and root for cold
runs) or `python -m tests.bench --quick` (a scaled-down smoke run). Not part of `make test`; the figures
are printed, and a missed goal never fails the build.
"""
