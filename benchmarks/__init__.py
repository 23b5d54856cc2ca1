"""Benchmarks of napari-seem, run as ``python -m benchmarks <name>``.

- ``model-speed`` (:mod:`benchmarks.model_speed`): image encoding and per-prompt decoding
  time, peak memory and size of the SEEM variants on this machine.
- ``engine`` (:mod:`benchmarks.engine_latency`): per-click latency in process vs through the
  server, prefetch, server memory.
- ``batch`` (:mod:`benchmarks.batch_throughput`): whole-image MP/s and peak memory, 1 vs 2
  Dask workers.
- ``all`` (:mod:`benchmarks.all`): everything in one run, side by side with the peers
  (:mod:`benchmarks.peers`), whole images through the engine (:mod:`benchmarks.whole_image`),
  napari responsiveness (:mod:`benchmarks.gui_stall`), CUDA (:mod:`benchmarks.gpu`) and
  quality (:mod:`napari_seem.evaluation`); writes ``results/all.json`` and ``RESULTS.md``.

Each benchmark module provides ``add_arguments(parser)`` and ``main(args) -> exit code``
for the command line, and a function API for scripts and tests; results are written as
JSON plus a Markdown table (``benchmarks/results/``) headed by the machine they ran on.
"""
