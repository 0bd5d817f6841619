"""Evaluation of fitted models: what the checks (``pipelines.image_check``, ``pipelines.audio_check``) and the fits
measure, one concept a module.

- :mod:`~vqvae_prior.evaluation.lsd`: an audio VQ-VAE's held-out log-spectral distance after Griffin-Lim.
"""
