"""The moving average of the weights: its arithmetic, its swap into the model, and a prior fit that uses it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fits import run_prior
from vqvae_prior.checkpoint import load_checkpoint, load_prior
from vqvae_prior.errors import UsageError
from vqvae_prior.training.averaging import WeightAverage
from vqvae_prior.training.prior_fit import evaluate


def test_the_average_follows_its_definition_and_is_swapped_in_and_out_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    average = WeightAverage(model, decay=0.9)
    expected = None
    for n in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))  # a step of some optimizer
        average.update()
        current = [p.detach().clone() for p in model.parameters()]
        if expected is None:  # the first update copies the weights
            expected = current
        else:  # the n-th later update: decay min(0.9, (1 + n) / (10 + n)), n counting from 1
            d = min(0.9, (1 + n) / (10 + n))
            expected = [d * e + (1 - d) * c for e, c in zip(expected, current)]
    averaged = list(average.averaged.module.parameters())
    for a, e in zip(averaged, expected):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    with average.applied() as kept:
        assert all(torch.equal(p, a) for p, a in zip(model.parameters(), averaged))
        assert all(torch.equal(kept[k], v) for k, v in trained.items())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in trained.items())
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        WeightAverage(model, 1.0)


def test_a_prior_fit_with_an_average_evaluates_samples_and_saves_the_average(tmp_path, digit_folder_fit):
    args = ["--batch-size", "16", "--epochs", "2"]
    metrics = run_prior(digit_folder_fit.vqvae, tmp_path / "p", "--ema", "0.5", *args)
    best, last = load_checkpoint(tmp_path / "p" / "prior.pt"), load_checkpoint(tmp_path / "p" / "prior-last.pt")
    assert best["args"]["ema"] == 0.5 and "trained_model" not in best
    assert any(not torch.equal(last["trained_model"][k], v) for k, v in last["model"].items())
    # the held-out figure logged is the saved (averaged) weights' own
    model, _ = load_prior(tmp_path / "p" / "prior-last.pt", "cpu")
    codes = torch.load(next((tmp_path / "p").glob("codes-*.pt")), weights_only=True)
    test_codes, test_labels = codes["test"]
    found = evaluate(model, test_codes, test_labels, 16, torch.device("cpu"))["test_bits_per_code"]
    assert found == pytest.approx(metrics["test_bits_per_code"], rel=1e-6)
    # without an average the checkpoint holds the trained weights alone
    run_prior(digit_folder_fit.vqvae, tmp_path / "q", "--ema", "0", *args)
    assert "trained_model" not in load_checkpoint(tmp_path / "q" / "prior-last.pt")
    with pytest.raises(UsageError, match="--ema must be a decay in"):
        run_prior(digit_folder_fit.vqvae, tmp_path / "r", "--ema", "1", *args)
