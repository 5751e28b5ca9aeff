"""Python execution environments: interpreter discovery, prefixes, packing (issue #3)."""

# The gzip level of envs. Measured with benchmarks/pack.py (README "pack"; 96 MB trimmed pandas/sklearn env,
# 2 CPUs, threads): level 1: 2.2 s / 96 MB, 4: 2.6 s / 88 MB, 6: 5.3 s / 85 MB, 9: 15.5 s / 84.5 MB.
# Extraction time, paid at each model load, does not depend on the level. 4 is within 5% of 9's size at 1/6
# the time. Here, not in condapack.py, so that the CLI can show it without importing conda-pack.
DEFAULT_LEVEL = 4
