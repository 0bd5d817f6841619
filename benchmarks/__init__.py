"""Benchmarks (run from the repository root; results and the commands behind them are in BENCHMARKS.md).

- ``python -m benchmarks.sampling``: reference vs cached sampler of the gated PixelCNN prior, and ``generate()``.
- ``python -m benchmarks.pipeline``: ``generate()`` per call (of this code and of an earlier checkout) against a
  ``VQPriorPipeline`` loaded once, and whether their samples are bit-identical.
- ``python -m benchmarks.training``: training throughput of the VQ-VAE and of the prior.
- ``python -m benchmarks.profile_sampler``: where the cached sampler's time goes.
"""
