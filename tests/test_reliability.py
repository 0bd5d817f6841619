"""Nothing lost, nothing silently wrong: one fit per output folder, exact and honest --resume, best-epoch
checkpoints, refusal of diverged fits and non-finite inputs, and bad input refused in one line before any work.

Tiny fits on a folder of 60 digit images take about a second each; the SIGKILL loop is in test_fault_injection.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from data import DataError, load_dataset
from files import write_idx
from fits import PRIOR_2_LAYERS, VQVAE_16_CODES, assert_equal_weights, logged, logged_epochs, run_prior
from pipelines import cli, fit_prior, fit_vqvae, generate
from pipelines.generate import parse_labels
from vqvae_prior.training import prior_fit, run_folder, vqvae_fit
from vqvae_prior.training.lock import LOCK_NAME
from vqvae_prior.training.run_folder import RunFolder, RunFolderError
from vqvae_prior.training.steps import DivergedError
from vqvae_prior.checkpoint import CheckpointError, load_checkpoint, load_prior, load_vqvae, save_checkpoint
from vqvae_prior.errors import UsageError
from vqvae_prior.files import stale_temporaries
from vqvae_prior.sampling.draw import sample_from_logits
from vqvae_prior.vqvae import VQVAE, VQVAEConfig


@pytest.fixture
def vq_args(digit_folder):
    """Arguments of a tiny fit_vqvae on the digit folder, into ``out``, at a constant learning rate of 1e-3 (so that
    a resumed fit may ask for more epochs)."""
    def args(out, *extra):
        return ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(out), "--epochs", "1",
                "--batch-size", "16", "--no-progress", "--device", "cpu", "--lr", "1e-3", "--lr-schedule",
                "constant", *VQVAE_16_CODES, *extra]
    return args


def fit_vq(args):
    return fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(args))


def fit_pr(vqvae, out, *extra):
    """A tiny fit_prior at batch size 16 and a constant learning rate: the prior of ``digit_folder_fit``."""
    return run_prior(vqvae, out, "--batch-size", "16", "--lr-schedule", "constant", *PRIOR_2_LAYERS, *extra)


def scripted(module, metric: str, values: list[float]):
    """``module.evaluate`` with the held-out ``metric`` of epoch e replaced by ``values[e - 1]``."""
    original, calls = module.evaluate, []

    def evaluate(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append(None)
        value = values[len(calls) - 1]
        return {**result, metric: value} if isinstance(result, dict) else value

    return evaluate


# ---------------------------------------------------------------------------------------------- 1. one fit per folder


def test_a_second_fit_into_the_same_folder_is_refused_naming_the_lock_and_the_process(tmp_path, vq_args):
    with RunFolder(tmp_path, "vqvae", "test_mse"):
        assert f"pid {os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
        with pytest.raises(RunFolderError, match=rf"in use by another fit: pid {os.getpid()}, .* holds .*fit\.lock"):
            fit_vq(vq_args(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()  # released at exit
    assert not (tmp_path / "vqvae.pt").exists() and not (tmp_path / "metrics.jsonl").exists()
    fit_vq(vq_args(tmp_path))
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.faults
def test_a_stale_lock_of_a_dead_process_is_reported_and_taken_over(tmp_path, vq_args, capsys):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / LOCK_NAME).write_text(f"pid {dead.stdout.strip()}, started then: python -m pipelines.fit_vqvae\n")
    fit_vq(vq_args(tmp_path))
    assert f"left by a fit that is no longer running (pid {dead.stdout.strip()}" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "vqvae.pt")["epoch"] == 1 and not (tmp_path / LOCK_NAME).exists()


# ---------------------------------------------------------------------------------------------- 2. honest --resume


def test_resume_refuses_another_data_set_and_other_training_options(tmp_path, vq_args):
    fit_vq(vq_args(tmp_path))
    before = (tmp_path / "vqvae-last.pt").read_bytes()
    with pytest.raises(UsageError, match="--dataset 'image-folder'.*asks for --dataset 'mnist-sample'"):
        fit_vq([*vq_args(tmp_path, "--resume", "--epochs", "2"), "--dataset", "mnist-sample"])
    with pytest.raises(UsageError, match="with --lr 0.001; this call asks for --lr 1e-05"):
        fit_vq(vq_args(tmp_path, "--resume", "--epochs", "2", "--lr", "1e-5"))
    with pytest.raises(UsageError, match="--batch-size 16.*--batch-size 8"):
        fit_vq(vq_args(tmp_path, "--resume", "--epochs", "2", "--batch-size", "8"))
    with pytest.raises(UsageError, match="with --downsample 4, --levels 1; this call asks for --downsample 2, --levels 2"):
        fit_vq(vq_args(tmp_path, "--resume", "--epochs", "2", "--levels", "2", "--downsample", "2"))
    assert (tmp_path / "vqvae-last.pt").read_bytes() == before  # nothing rewritten
    assert logged_epochs(tmp_path) == [1]
    # a fit from before --levels existed was of one level
    last = torch.load(tmp_path / "vqvae-last.pt", weights_only=True)
    del last["args"]["levels"]
    torch.save(last, tmp_path / "vqvae-last.pt")
    with pytest.raises(UsageError, match="with --levels 1; this call asks for --levels 2"):
        fit_vq(vq_args(tmp_path, "--resume", "--epochs", "2", "--levels", "2", "--downsample", "4"))
    fit_vq(vq_args(tmp_path, "--resume", "--epochs", "2"))
    assert logged_epochs(tmp_path) == [1, 2]


def test_resume_records_the_options_it_may_change(tmp_path, vq_args):
    fit_vq(vq_args(tmp_path))
    fit_vq(vq_args(tmp_path, "--resume", "--epochs", "2", "--patience", "5"))
    for name in ("vqvae.pt", "vqvae-last.pt"):
        ckpt = load_checkpoint(tmp_path / name)
        if ckpt["epoch"] == 2:
            assert ckpt["args"]["epochs"] == 2 and ckpt["args"]["lr"] == 1e-3 and ckpt["args"]["patience"] == 5
            assert ckpt["resumes"] == [{"epoch": 1, "changed": {"epochs": [1, 2], "patience": [None, 5]}}]
    # a cosine schedule's length is the number of epochs: it may not change
    cosine = tmp_path / "cosine"
    fit_vq(vq_args(cosine, "--lr-schedule", "cosine"))
    with pytest.raises(UsageError, match="--epochs not under --lr-schedule cosine"):
        fit_vq(vq_args(cosine, "--lr-schedule", "cosine", "--resume", "--epochs", "2"))
    with pytest.raises(UsageError, match="--epochs 1: the fit .* has done 2 epochs"):
        fit_vq(vq_args(tmp_path, "--resume", "--epochs", "1", "--patience", "5"))


# ---------------------------------------------------------------------------------------------- 3. divergence


def test_a_diverged_fit_stops_with_an_error_and_writes_nothing(tmp_path, vq_args):
    with pytest.raises(DivergedError, match=r"not finite at epoch 1, step \d of 4.*no checkpoint was written"):
        fit_vq(vq_args(tmp_path, "--lr", "1e30"))
    assert not (tmp_path / "vqvae.pt").exists() and not (tmp_path / "vqvae-last.pt").exists()
    with pytest.raises(UsageError, match="--beta must be a finite number >= 0, got nan"):
        fit_vq(vq_args(tmp_path / "beta", "--beta", "nan"))


def test_divergence_leaves_the_last_good_checkpoints_untouched(tmp_path, vq_args, monkeypatch):
    fit_vq(vq_args(tmp_path))
    files = {name: (tmp_path / name).read_bytes() for name in ("vqvae.pt", "vqvae-last.pt", "metrics.jsonl")}
    forward = VQVAE.forward

    def nan_loss(self, x):
        out = forward(self, x)
        out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(VQVAE, "forward", nan_loss)
    with pytest.raises(DivergedError, match=r"epoch 2, step 1 of 4.*vqvae-last\.pt \(epoch 1\) and .*vqvae\.pt "
                                            r"\(epoch 1, the best\) are left as they were"):
        fit_vq(vq_args(tmp_path, "--resume", "--epochs", "2"))
    assert {name: (tmp_path / name).read_bytes() for name in files} == files


def test_checkpoints_with_non_finite_weights_are_refused(tmp_path):
    model = VQVAE(VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=8))
    with torch.no_grad():
        model.decoder.conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        save_checkpoint(tmp_path / "nan.pt", "vqvae", model)
    payload = {"format": "vqvae_prior", "version": 1, "kind": "vqvae", "config": dataclasses.asdict(model.config),
               "model": model.state_dict(), "data": {"name": "mnist-sample"}}
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"nan\.pt: 1 tensors hold NaN or infinite values \(decoder"):
        load_vqvae(tmp_path / "nan.pt")


# ---------------------------------------------------------------------------------------------- 4. temperature


def test_tiny_temperatures_draw_the_most_likely_code_and_non_finite_ones_are_refused(tiny_prior):
    logits = torch.randn(64, 32, generator=torch.Generator().manual_seed(0))
    u = torch.rand(64, generator=torch.Generator().manual_seed(1))
    for temperature in (1e-300, 1e-45, 1e-30, 1e-8):  # 1e-300 is 0 in float32
        assert torch.equal(sample_from_logits(logits, u, temperature), logits.argmax(-1))
    assert torch.equal(sample_from_logits(logits, torch.zeros(64), 1e-45), logits.argmax(-1))  # even for u = 0
    model = tiny_prior(num_classes=2)
    labels = torch.tensor([0, 1, 1])
    greedy = torch.zeros(3, 4, 5, dtype=torch.long)  # decoded by hand, the most likely code at each position
    with torch.no_grad():
        for r in range(4):
            for c in range(5):
                greedy[:, r, c] = model(greedy, labels)[:, :, r, c].argmax(1)
    for method in ("cached", "reference"):
        assert torch.equal(model.sample(3, (4, 5), labels, temperature=1e-45, method=method), greedy)
        for bad in (float("nan"), float("inf"), 0.0, -1.0):
            with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
                model.sample(3, (4, 5), labels, temperature=bad, method=method)


def test_generate_refuses_a_non_finite_temperature(digit_folder_fit, tmp_path, capsys):
    vqvae, prior = digit_folder_fit.vqvae, digit_folder_fit.prior
    with pytest.raises(UsageError, match="temperature must be a finite number > 0, got nan"):
        generate.generate(vqvae, prior, 2, labels=[0, 1], temperature=float("nan"), device="cpu")
    with pytest.raises(SystemExit, match="2"):
        cli.run(generate.main, generate.get_args_parser(), ["--vqvae", str(vqvae), "--prior", str(prior), "--labels",
                "all", "--temperature", "nan", "--out", str(tmp_path / "s.png")])
    assert "--temperature must be a finite number > 0, got nan" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- 5. metrics


@pytest.mark.faults
def test_a_kill_before_the_metrics_are_written_never_duplicates_an_epoch(tmp_path, vq_args, monkeypatch):
    write = RunFolder.write_metrics

    def killed_at_epoch_2(self):
        if self.epochs_done == 2:
            raise KeyboardInterrupt  # after both checkpoints, before metrics.jsonl
        write(self)

    monkeypatch.setattr(RunFolder, "write_metrics", killed_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit_vq(vq_args(tmp_path, "--epochs", "3"))
    assert logged_epochs(tmp_path) == [1] and load_checkpoint(tmp_path / "vqvae-last.pt")["epoch"] == 2
    monkeypatch.setattr(RunFolder, "write_metrics", write)
    fit_vq(vq_args(tmp_path, "--epochs", "3", "--resume"))
    assert logged_epochs(tmp_path) == [1, 2, 3]


@pytest.mark.faults
def test_a_kill_between_the_last_and_the_best_checkpoint_is_repaired_on_resume(tmp_path, vq_args, monkeypatch):
    fit_vq(vq_args(tmp_path / "straight", "--epochs", "2"))
    monkeypatch.setattr(vqvae_fit, "evaluate", scripted(vqvae_fit, "test_mse", [0.5, 0.4]))  # epoch 2 is the best
    save = run_folder.save_checkpoint

    def killed_before_the_best(path, *args, **kwargs):
        if Path(path).name == "vqvae.pt" and kwargs["epoch"] == 2:
            raise KeyboardInterrupt
        save(path, *args, **kwargs)

    monkeypatch.setattr(run_folder, "save_checkpoint", killed_before_the_best)
    with pytest.raises(KeyboardInterrupt):
        fit_vq(vq_args(tmp_path / "killed", "--epochs", "2"))
    assert load_checkpoint(tmp_path / "killed" / "vqvae.pt")["epoch"] == 1
    monkeypatch.undo()
    fit_vq(vq_args(tmp_path / "killed", "--epochs", "2", "--resume"))  # nothing left to train: repairs only
    best = load_checkpoint(tmp_path / "killed" / "vqvae.pt")
    assert best["epoch"] == 2 and "optimizer" not in best
    straight = load_checkpoint(tmp_path / "straight" / "vqvae-last.pt")
    assert_equal_weights(straight, best, "the repaired best checkpoint")
    assert logged_epochs(tmp_path / "killed") == [1, 2]


def test_a_new_fit_does_not_append_to_an_old_metrics_file(tmp_path, vq_args, capsys):
    tmp_path.joinpath("metrics.jsonl").write_text('{"epoch": 1, "test_mse": 9}\n{"epoch": 2, "test_mse": 9}\n')
    fit_vq(vq_args(tmp_path))
    assert logged_epochs(tmp_path) == [1] and "left by a fit that wrote no checkpoint" in capsys.readouterr().err
    with pytest.raises(RunFolderError, match="holds a vqvae fit .* its own --out, as their metrics.jsonl would mix"):
        fit_pr(tmp_path / "vqvae.pt", tmp_path)  # a prior into the VQ-VAE's folder
    assert logged_epochs(tmp_path) == [1]


# ---------------------------------------------------------------------------------------------- best epoch, patience


def test_the_best_epoch_is_kept_and_patience_stops_a_fit_that_does_not_improve(tmp_path, vq_args, monkeypatch):
    fit_vq(vq_args(tmp_path / "two", "--epochs", "2"))
    monkeypatch.setattr(vqvae_fit, "evaluate", scripted(vqvae_fit, "test_mse", [0.5, 0.3, 0.4, 0.45, 0.2, 0.1]))
    metrics = fit_vq(vq_args(tmp_path / "run", "--epochs", "6", "--patience", "2"))
    run = tmp_path / "run"
    logged_metrics = logged(run)
    assert [m["epoch"] for m in logged_metrics] == [1, 2, 3, 4]  # epochs 3 and 4 did not improve on epoch 2: stopped
    assert [m["kept"] for m in logged_metrics] == [True, True, False, False]
    assert [m["best_epoch"] for m in logged_metrics] == [1, 2, 2, 2] and metrics == logged_metrics[-1]
    best, last = load_checkpoint(run / "vqvae.pt"), load_checkpoint(run / "vqvae-last.pt")
    assert best["epoch"] == 2 and best["best"] == {"epoch": 2, "metric": "test_mse", "value": 0.3}
    assert last["epoch"] == 4 and last["best"]["epoch"] == 2
    two = load_checkpoint(tmp_path / "two" / "vqvae-last.pt")  # a fit of 2 epochs: the weights of epoch 2
    assert_equal_weights(two, best, "the best checkpoint")
    assert not all(torch.equal(last["model"][k], v) for k, v in two["model"].items())
    assert load_vqvae(run / "vqvae.pt")[1]["epoch"] == 2  # what fit_prior and generate read


def test_resume_after_a_best_epoch_continues_from_the_last_one(tmp_path, vq_args, monkeypatch):
    fit_vq(vq_args(tmp_path / "straight", "--epochs", "4"))
    monkeypatch.setattr(vqvae_fit, "evaluate", scripted(vqvae_fit, "test_mse", [0.5, 0.3, 0.4, 0.6]))
    fit_vq(vq_args(tmp_path / "resumed", "--epochs", "3"))
    assert load_checkpoint(tmp_path / "resumed" / "vqvae.pt")["epoch"] == 2
    fit_vq(vq_args(tmp_path / "resumed", "--epochs", "4", "--resume"))
    straight, resumed = (load_checkpoint(tmp_path / d / "vqvae-last.pt") for d in ("straight", "resumed"))
    assert resumed["epoch"] == 4
    assert_equal_weights(straight, resumed, "the resumed fit")
    assert load_checkpoint(tmp_path / "resumed" / "vqvae.pt")["epoch"] == 2 and logged_epochs(tmp_path / "resumed") \
        == [1, 2, 3, 4]


def test_the_prior_keeps_its_best_epoch(digit_folder_fit, tmp_path, monkeypatch):
    vqvae = digit_folder_fit.vqvae
    monkeypatch.setattr(prior_fit, "evaluate", scripted(prior_fit, "test_bits_per_code", [5.0, 4.0, 4.5, 4.6]))
    fit_pr(vqvae, tmp_path, "--epochs", "4", "--patience", "2")
    assert logged_epochs(tmp_path) == [1, 2, 3, 4]
    best = load_prior(tmp_path / "prior.pt")[1]
    assert best["epoch"] == 2 and best["best"]["metric"] == "test_bits_per_code"
    assert load_checkpoint(tmp_path / "prior-last.pt")["epoch"] == 4
    assert generate.generate(vqvae, tmp_path / "prior.pt", 2, labels=[0, 2], device="cpu").images.shape[0] == 2


# ---------------------------------------------------------------------------------------------- 6-8. data, cache


def test_an_image_folder_without_a_held_out_image_is_refused_at_load(tmp_path, vq_args, make_digit_folder):
    make_digit_folder(tmp_path / "one", per_class=1)
    with pytest.raises(DataError, match="every class has a single image"):
        load_dataset("image-folder", tmp_path / "one")
    with pytest.raises(DataError, match="single image"):
        fit_vq(vq_args(tmp_path / "out", "--data-root", str(tmp_path / "one")))


def test_the_code_cache_is_written_where_the_fit_writes_and_a_corrupt_one_is_rebuilt(digit_folder_fit, tmp_path,
                                                                                      capsys):
    vqvae = digit_folder_fit.vqvae
    before = sorted(p.name for p in vqvae.parent.iterdir())
    fit_pr(vqvae, tmp_path / "a")
    assert sorted(p.name for p in vqvae.parent.iterdir()) == before  # the VQ-VAE's folder may be read-only
    assert not list(vqvae.parent.glob("codes-*"))
    (cache,) = (tmp_path / "a").glob("codes-*.pt")
    cache.write_bytes(b"cut short")
    metrics = fit_pr(vqvae, tmp_path / "b", "--cache-dir", str(tmp_path / "a"))
    assert f"the code cache {cache} is unreadable" in capsys.readouterr().err and math.isfinite(
        metrics["test_bits_per_code"])
    assert torch.load(cache, weights_only=True)["test"][0].shape[1:] == (7, 7)  # rebuilt
    assert not list((tmp_path / "b").glob("codes-*.pt"))


def test_mnist_labels_outside_0_to_9_are_refused_at_load(tmp_path):
    for prefix, labels in (("train", [0, 1, 10, 3]), ("t10k", [1, 2])):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", np.zeros((len(labels), 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.array(labels))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte holds label 10; mnist labels must lie in 0-9"):
        load_dataset("mnist", tmp_path)


# ---------------------------------------------------------------------------------------------- 9-10. outputs


def test_an_unwritable_out_is_refused_before_any_work(tmp_path, vq_args, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):  # what a read-only folder answers, even to root
        if Path(path).parent == tmp_path / "ro" and flags & os.O_CREAT:
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(vqvae_fit.data, "load_dataset", lambda *a, **k: pytest.fail("loaded data"))
    with pytest.raises(RunFolderError, match=r"--out .*ro is not writable: cannot create .*fit\.lock"):
        fit_vq(vq_args(tmp_path / "ro"))


def test_generate_checks_its_output_name_before_sampling(digit_folder_fit, tmp_path, monkeypatch):
    vqvae, prior = digit_folder_fit.vqvae, digit_folder_fit.prior
    monkeypatch.setattr(generate, "generate", lambda *a, **k: pytest.fail("sampled"))
    parse = generate.get_args_parser().parse_args
    args = ["--vqvae", str(vqvae), "--prior", str(prior), "--labels", "all"]
    (tmp_path / "some_dir").mkdir()
    with pytest.raises(UsageError, match="some_dir is a folder; expected an image file name"):
        generate.main(parse([*args, "--out", str(tmp_path / "some_dir") + "/"]))
    with pytest.raises(UsageError, match=r"\.xyz is not an image format"):
        generate.main(parse([*args, "--out", str(tmp_path / "samples.xyz")]))
    with pytest.raises(UsageError, match="no extension is not an image format"):
        generate.main(parse([*args, "--out", str(tmp_path / "samples")]))


@pytest.mark.faults
def test_stale_temporaries_of_a_killed_write_are_removed_at_the_next_write(tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    model = VQVAE(VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=8))
    stale = [tmp_path / f".vq.pt.{dead}.{'0' * 16}.tmp", tmp_path / ".vq.pt.abc_1234.tmp"]  # and mkstemp's naming
    live = [tmp_path / f".vq.pt.{os.getpid()}.{'1' * 16}.tmp", tmp_path / f".other.pt.{dead}.{'2' * 16}.tmp",
            tmp_path / f".vq.pt.x.{dead}.{'3' * 16}.tmp"]  # a write of this process, of other targets
    for path in stale + live:
        path.write_bytes(b"partial")
    assert sorted(stale_temporaries(tmp_path / "vq.pt")) == sorted(stale)
    save_checkpoint(tmp_path / "vq.pt", "vqvae", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["vq.pt", *(p.name for p in live)])


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_checkpoint_write_takes_effect_once_it_is_written(tmp_path, monkeypatch, signum,
                                                                           ctrl_c_raises):
    model = VQVAE(VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=8))
    write_record = torch._C.PyTorchFileWriter.write_record
    sent = []

    def interrupted(writer, *args):  # the signal arrives between two records of the zip file torch.save writes
        if not sent:
            sent.append(os.kill(os.getpid(), signum))
        return write_record(writer, *args)

    monkeypatch.setattr(torch._C.PyTorchFileWriter, "write_record", interrupted)
    with cli._signals_interrupt([]), pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path / "vq.pt", "vqvae", model)
    monkeypatch.undo()
    assert sent and [p.name for p in tmp_path.iterdir()] == ["vq.pt"]  # written whole, no temporary left
    loaded, _ = load_vqvae(tmp_path / "vq.pt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_checkpoints_get_the_permissions_of_any_new_file(tmp_path):
    model = VQVAE(VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=8))
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "vq.pt", "vqvae", model)
        os.umask(0o027)
        save_checkpoint(tmp_path / "vq2.pt", "vqvae", model)
    finally:
        os.umask(old)
    assert (tmp_path / "vq.pt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "vq2.pt").stat().st_mode & 0o777 == 0o640


# ---------------------------------------------------------------------------------------------- 11. one-line errors


def run_cli(module, argv, capsys) -> str:
    """Run an entry point as its command line does; returns the one line it printed (exit status 2)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.run(module.main, module.get_args_parser(), argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_bad_arguments_get_one_line_naming_them(tmp_path, vq_args, digit_folder_fit, capsys):
    vqvae, prior = digit_folder_fit.vqvae, digit_folder_fit.prior
    assert "--batch-size must be >= 1, got 0" in run_cli(fit_vqvae, vq_args(tmp_path, "--batch-size", "0"), capsys)
    assert "--epochs must be >= 1, got 0" in run_cli(fit_vqvae, vq_args(tmp_path, "--epochs", "0"), capsys)
    assert "--codebook-size must be >= 2, got 1" in run_cli(fit_vqvae, vq_args(tmp_path, "--codebook-size", "1"),
                                                            capsys)
    assert "--image-size takes S (S x S) or H W" in run_cli(fit_vqvae, vq_args(tmp_path, "--image-size", "16", "20",
                                                                               "24"), capsys)
    assert "downsample must be a power of 2" in run_cli(fit_vqvae, vq_args(tmp_path, "--downsample", "3"), capsys)
    assert "--epochs must be >= 1" in run_cli(fit_prior, ["--vqvae", str(vqvae), "--epochs", "0"], capsys)
    gen = ["--vqvae", str(vqvae), "--prior", str(prior), "--out", str(tmp_path / "s.png")]
    assert "--nrow must be >= 1, got -3" in run_cli(generate, [*gen, "--labels", "all", "--nrow", "-3"], capsys)
    assert "--repeat gives the samples per label of --labels" in run_cli(generate, [*gen, "--repeat", "3"], capsys)
    assert "is class-conditional: pass --labels" in run_cli(generate, gen, capsys)
    assert not list(tmp_path.iterdir())  # refused before any work


def test_bad_checkpoints_get_one_line_naming_the_file(digit_folder_fit, tmp_path, capsys):
    vqvae, prior = digit_folder_fit.vqvae, digit_folder_fit.prior
    payload = torch.load(vqvae, weights_only=True)
    del payload["kind"]
    torch.save(payload, tmp_path / "no_kind.pt")
    with pytest.raises(CheckpointError, match=r"no_kind\.pt lacks 'kind'"):
        load_vqvae(tmp_path / "no_kind.pt")
    payload = torch.load(vqvae, weights_only=True)
    del payload["model"]["decoder.conv.weight"]
    torch.save(payload, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing\.pt: its weights do not fit .*\(missing decoder\.conv\."):
        load_vqvae(tmp_path / "missing.pt")
    payload = torch.load(vqvae, weights_only=True)
    payload["config"]["codebook_size"] = 8  # K edited by hand: the codebook has 16 rows
    torch.save(payload, tmp_path / "k.pt")
    with pytest.raises(CheckpointError, match=r"k\.pt: .*shape of quantizer\.codebook \(16, 8\) instead of \(8, 8\)"):
        load_vqvae(tmp_path / "k.pt")
    for bad in ("no_kind.pt", "missing.pt", "k.pt"):
        line = run_cli(generate, ["--vqvae", str(tmp_path / bad), "--prior", str(prior), "--labels", "all", "--out",
                                  str(tmp_path / "s.png")], capsys)
        assert bad in line and line.startswith(f"{generate.get_args_parser().prog}: error: ")


def test_real_bugs_keep_their_traceback():
    def main(args):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        cli.run(main, generate.get_args_parser(), ["--vqvae", "v.pt", "--prior", "p.pt"])


@pytest.mark.filterwarnings("ignore:'pipelines.generate' found in sys.modules:RuntimeWarning")  # imported above
def test_the_command_line_prints_one_line_and_exits_2(digit_folder_fit, tmp_path, monkeypatch, capsys):
    vqvae, prior = digit_folder_fit.vqvae, digit_folder_fit.prior
    monkeypatch.setattr(sys, "argv", ["generate.py", "--vqvae", str(vqvae), "--prior", str(prior), "--labels", "all",
                                      "--nrow", "-3", "--out", str(tmp_path / "s.png")])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("pipelines.generate", run_name="__main__")  # as python -m pipelines.generate
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["generate.py: error: --nrow must be >= 1, got -3"]


# ---------------------------------------------------------------------------------------------- 12. small ones


def test_numeric_class_names_are_read_as_names_only():
    assert parse_labels(["7", "3"], ["3", "7"]) == [1, 0]
    with pytest.raises(UsageError, match="class names are numbers .* takes those names, not indices; '1'"):
        parse_labels(["1"], ["3", "7"])
    assert parse_labels(["1", "0"], ["0", "1", "2"]) == [1, 0]  # names 0 .. K-1: both readings agree
    assert parse_labels(["1", "cat"], ["cat", "dog"]) == [1, 0]  # no numeric names: numbers are indices
    with pytest.raises(UsageError, match="class indices run from 0 to 1"):
        parse_labels(["2"], ["cat", "dog"])
    assert parse_labels(["all"], ["3", "7"]) == [0, 1]
