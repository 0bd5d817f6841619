"""Fitting: the VQ-VAE's and the prior's fits, their typed options, and the one loop that trains every model.

    from vqvae_prior.training import VQVAEFit, PriorFit, fit_vqvae, fit_prior

    fit_vqvae(VQVAEFit(out="runs/mnist", dataset="mnist", data_root="../shared/data/mnist", epochs=4))
    fit_prior(PriorFit(out="runs/mnist-prior", vqvae="runs/mnist/vqvae.pt", epochs=12))

The modules, one concept each: ``options`` (the typed options every fit takes), ``loop`` (the loop and the
:class:`Task` it drives), ``vqvae_fit`` and ``prior_fit`` (the two fits), ``codes`` (the cached code maps a prior
is fitted on), ``steps`` (device, optimizer, schedule, mixed precision, divergence), ``batching``, ``run_folder``
(the output folder's files), ``averaging`` (a moving average of the weights), ``lock`` (one fit per folder),
``resume`` (what a resumed fit may change and how its state is put back), ``distributed`` (torchrun's data-parallel
fits).
"""

from vqvae_prior.training.averaging import WeightAverage
from vqvae_prior.training.loop import Task, train
from vqvae_prior.training.options import FitOptions
from vqvae_prior.training.prior_fit import PriorFit, fit_prior
from vqvae_prior.training.steps import retain_freed_memory
from vqvae_prior.training.vqvae_fit import VQVAEFit, fit_vqvae

__all__ = [
    "FitOptions", "PriorFit", "Task", "VQVAEFit", "WeightAverage", "fit_prior", "fit_vqvae", "retain_freed_memory",
    "train",
]
