"""Benchmarks of napari-seem, run as ``python -m benchmarks <name>``.

- ``model-speed`` (:mod:`benchmarks.model_speed`): image encoding and per-prompt decoding
  time, peak memory and size of the SEEM variants on this machine.

Each benchmark module provides ``add_arguments(parser)`` and ``main(args) -> exit code``
for the command line, and a function API for scripts and tests; results are written as
JSON plus a Markdown table (``benchmarks/results/``) headed by the machine they ran on.
"""
