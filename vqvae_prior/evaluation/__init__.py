"""Evaluation of fitted models: what the checks (``pipelines.image_check``, ``pipelines.audio_check``) and the fits
measure, one concept a module.

- :mod:`~vqvae_prior.evaluation.classifier`: the judging classifier, its training, its predictions, its disk cache.
- :mod:`~vqvae_prior.evaluation.metrics`: the figures of a judged set (accuracy, inception-style score, Frechet
  distance beside the real-vs-real floor; the lowest of several families' means).
- :mod:`~vqvae_prior.evaluation.copying`: whether generated code maps copy train ones.
- :mod:`~vqvae_prior.evaluation.reports`: a check's report file, its timings and shared printed lines.
- :mod:`~vqvae_prior.evaluation.image_judges`: the image check's classifier training (augmentation, epochs).
- :mod:`~vqvae_prior.evaluation.audio_judges`: the audio check's judges: their families (front end and augmentation),
  training, cache key.
- :mod:`~vqvae_prior.evaluation.lsd`: an audio VQ-VAE's held-out log-spectral distance after Griffin-Lim.
"""
