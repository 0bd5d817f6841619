"""What a hostile user tries: each wrong input is refused in one line naming it, or converted where a user would
expect it, before any long work; signals end a fit as Ctrl-C does; generation is bounded; data that changed under
the same path is never mistaken for the data a cache or a fit was made of.

Tiny models and fits (seconds each); the fits are those of conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_pipeline import tiny_pair
from vqvae_prior import VQPriorPipeline
from vqvae_prior.errors import UsageError


@pytest.fixture
def pipe() -> VQPriorPipeline:
    """A tiny class-conditional pipeline (3 classes, 28 x 28 images, 7 x 7 codes), in memory."""
    return VQPriorPipeline(*tiny_pair(), (7, 7), ["a", "b", "c"])


# ---------------------------------------------------------------------------------------------- the library's API


@pytest.mark.parametrize("call, named", [
    (lambda p: p(2, labels=[0.0, 1.7]), "labels: expected whole class indices"),  # not truncated to [0, 1]
    (lambda p: p(2, labels=torch.tensor([0.0, 1.0])), "labels: expected whole class indices"),
    (lambda p: p(4, labels=torch.zeros(2, 2, dtype=torch.long)), r"labels: .* got torch\.int64 \(2, 2\)"),  # not flattened
    (lambda p: p(2, labels=[True, False]), "labels: expected whole class indices"),
    (lambda p: p(2, labels=["a", "zebra"]), r"labels: \['zebra'\] are not class names"),
    (lambda p: p(2.5, labels=[0, 1, 2]), "n must be a whole number >= 1, got float 2.5"),
    (lambda p: p(True, labels=[0]), "n must be a whole number >= 1, got bool"),
    (lambda p: p(2, labels=[0, 1], temperature="hot"), "temperature must be a finite number > 0"),
    (lambda p: p(2, labels=[0, 1], method="fast"), "method must be one of"),
    (lambda p: p.complete(torch.full((1, 1, 28, 28), float("nan")), 3, [0]), "x: expected finite inputs"),
    (lambda p: p.complete(torch.rand(0, 1, 28, 28), 3, []), "x: expected at least one input"),
    (lambda p: p.complete(["a"], 3, [0]), "x: expected"),
    (lambda p: p.complete(torch.rand(1, 1, 28, 28), 2.5, [0]), r"keep \(code rows\) must be a whole number in 0 \.\. 7"),
    (lambda p: p.complete(torch.rand(1, 1, 28, 28), 2, [0], completions=1.5), "completions must be a whole number"),
])
def test_the_pipeline_refuses_wrong_arguments_naming_them(pipe, call, named):
    with pytest.raises(UsageError, match=named):
        call(pipe)


def test_the_pipeline_takes_what_users_would_expect(pipe):
    by_name = pipe(2, labels=["a", "c"], generator=torch.Generator().manual_seed(0))
    by_index = pipe(2, labels=np.array([0, 2]), generator=torch.Generator().manual_seed(0))
    assert by_name.labels.tolist() == [0, 2] and torch.equal(by_name.codes, by_index.codes)
    x = np.random.default_rng(0).random((2, 1, 28, 28))  # float64, NumPy's default
    done = pipe.complete(x, 3, labels=np.int64([0, 1]), generator=torch.Generator().manual_seed(0))
    same = pipe.complete(torch.from_numpy(x).float(), 3, [0, 1], generator=torch.Generator().manual_seed(0))
    assert done.inputs.dtype == torch.float32 and torch.equal(done.codes, same.codes)
