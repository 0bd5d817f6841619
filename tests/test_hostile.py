"""What a hostile user tries: each wrong input is refused in one line naming it, or converted where a user would
expect it, before any long work; signals end a fit as Ctrl-C does; generation is bounded; data that changed under
the same path is never mistaken for the data a cache or a fit was made of.

Tiny models and fits (seconds each); the fits are those of conftest.py.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from data import DataError, load_dataset
from files import write_idx
from fits import PRIOR_2_LAYERS, VQVAE_16_CODES, TinyFit, ctrl_c_as_default, logged_epochs, run_prior
from pipelines import cli, demo, fit_prior, fit_vqvae, generate, image_check, quickstart
from test_pipeline import tiny_pair
from test_reliability import run_cli, scripted
from vqvae_prior import VQPriorPipeline, files
from vqvae_prior.audio import read_wave
from vqvae_prior.checkpoint import CheckpointError, load_checkpoint, load_vqvae
from vqvae_prior.errors import UsageError
from vqvae_prior.modality import Images
from vqvae_prior.training import vqvae_fit
from vqvae_prior.training.lock import LOCK_NAME
from vqvae_prior.training.run_folder import RunFolder


@pytest.fixture
def pipe() -> VQPriorPipeline:
    """A tiny class-conditional pipeline (3 classes, 28 x 28 images, 7 x 7 codes), in memory."""
    return VQPriorPipeline(*tiny_pair(), (7, 7), ["a", "b", "c"])


# ---------------------------------------------------------------------------------------------- the library's API


@pytest.mark.parametrize("call, named", [
    (lambda p: p(2, labels=[0.0, 1.7]), "labels: expected whole class indices"),  # not truncated to [0, 1]
    (lambda p: p(2, labels=torch.tensor([0.0, 1.0])), "labels: expected whole class indices"),
    (lambda p: p(4, labels=torch.zeros(2, 2, dtype=torch.long)), r"labels: .* torch\.int64 \(2, 2\)"),  # not flat
    (lambda p: p(2, labels=[True, False]), "labels: expected whole class indices"),
    (lambda p: p(2, labels=["a", "zebra"]), r"labels: \['zebra'\] are not class names"),
    (lambda p: p(2.5, labels=[0, 1, 2]), "n must be a whole number >= 1, got float 2.5"),
    (lambda p: p(True, labels=[0]), "n must be a whole number >= 1, got bool"),
    (lambda p: p(2, labels=[0, 1], temperature="hot"), "temperature must be a finite number > 0"),
    (lambda p: p(2, labels=[0, 1], method="fast"), "method must be one of"),
    (lambda p: p.complete(torch.full((1, 1, 28, 28), float("nan")), 3, [0]), "x: expected finite inputs"),
    (lambda p: p.complete(torch.rand(0, 1, 28, 28), 3, []), "x: expected at least one input"),
    (lambda p: p.complete(["a"], 3, [0]), "x: expected"),
    (lambda p: p.complete(torch.rand(1, 1, 28, 28), 2.5, [0]), r"keep \(code rows\) must be a whole number in 0 "),
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


# ---------------------------------------------------------------------------------------------- the command lines

ENTRY_POINTS = ("fit_vqvae", "fit_prior", "generate", "image_check", "audio_check", "audio_eval", "quickstart",
                "receptive_field", "package_model", "demo")
SEED_OPTIONS = ("--seed", "--classifier-seed")
# values some options take on purpose: audio_eval --clips < 1 means every clip
VALID = {("audio_eval", "--clips", "-1")}
READ_ONLY = Path("/sys")


def bad_values(action: argparse.Action, blocked: Path) -> list[list[str]]:
    """A few wrong values of one option, each as the words that follow it; ``blocked``: a path below a file, which
    can be neither read nor made."""
    if action.choices is not None:
        return [["bogus"]]
    if action.type is int:
        values = [["-1"], ["abc"]] + ([["99999999999999999999999"]] if action.option_strings[0] in SEED_OPTIONS else [])
        return [v * action.nargs if isinstance(action.nargs, int) else v for v in values]
    if action.type is float:
        return [["nan"], ["inf"], ["-1"], ["abc"]]
    flag = action.option_strings[0]
    if flag == "--device":
        return [["tpu"], ["meta"], ["cuda:7"]]
    if flag in ("--vqvae-args", "--prior-args"):
        return [["--out X"], ["--channels '8"], ["--chanels 8"]]
    if flag in ("--labels", "--families", "--label-pattern"):
        return [["zebra"]]
    name = "x.png" if flag in ("--out", "--samples") else "x"
    # sysfs: a folder that exists and in which nobody, root included, can create a file
    read_only = [[f"/sys/{name}" if name != "x" else "/sys"]] if READ_ONLY.is_dir() and flag != "--data-root" else []
    return [[str(blocked / name)], *read_only]


def base_argv(digit_folder: Path, fit: TinyFit, tmp_path: Path) -> dict[str, list[str]]:
    """For each entry point, arguments that run it (on the tiny fits), writing into ``tmp_path``: one bad option
    more must be refused."""
    vqvae, prior = str(fit.vqvae), str(fit.prior)
    checks = ["--vqvae", vqvae, "--prior", prior, "--cache-dir", str(tmp_path / "cache"), "--classifier-epochs", "1"]
    return {
        "fit_vqvae": ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(tmp_path / "vq"),
                      "--epochs", "1", "--batch-size", "16", "--no-progress", "--device", "cpu", *VQVAE_16_CODES],
        "fit_prior": ["--vqvae", vqvae, "--out", str(tmp_path / "prior"), "--epochs", "1", "--batch-size", "16",
                      "--no-progress", "--device", "cpu", *PRIOR_2_LAYERS],
        "generate": ["--vqvae", vqvae, "--prior", prior, "--labels", "all", "--out", str(tmp_path / "s.png")],
        "image_check": [*checks, "--per-class", "2", "--out", str(tmp_path / "check.json")],
        "audio_check": [*checks, "--per-class", "2", "--out", str(tmp_path / "check.json")],
        "audio_eval": ["--vqvae", vqvae],
        "quickstart": ["--out", str(tmp_path / "qs"), "--samples", str(tmp_path / "qs.png"), "--vqvae-epochs", "1",
                       "--prior-epochs", "1", "--no-progress", "--codebook-size", "16", "--vqvae-args",
                       "--channels 16 --residual-channels 8 --code-dim 8",
                       "--prior-args", " ".join(PRIOR_2_LAYERS)],
        "receptive_field": ["--arch", "gated", "--out", str(tmp_path / "field.png")],
        "package_model": ["--name", "tiny", "--vqvae", vqvae, "--prior", prior, "--root", str(tmp_path / "models")],
        "demo": ["--vqvae", vqvae, "--prior", prior, "--port", "0", "--device", "cpu"],
    }


def test_every_option_of_every_entry_point_refuses_bad_values_in_one_line(digit_folder, digit_folder_fit, tmp_path,
                                                                          capsys, monkeypatch):
    monkeypatch.setattr(demo, "serve", lambda server: server.server_close())  # a value taken: no error line
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    wrong, runs = [], 0
    for name in ENTRY_POINTS:
        module = importlib.import_module(f"pipelines.{name}")
        parser = module.get_args_parser()
        for action in parser._actions:  # argparse keeps no public list of them
            if not action.option_strings or action.nargs == 0:  # --help and switches take no value
                continue
            flag = action.option_strings[0]
            for value in bad_values(action, blocked):
                if (name, flag, value[0]) in VALID:
                    continue
                folder = tmp_path / f"{len(list(tmp_path.iterdir()))}"
                argv = [*base_argv(digit_folder, digit_folder_fit, folder)[name], flag, *value]
                runs += 1
                code, err = None, ""
                try:
                    cli.run(module.main, module.get_args_parser(), argv)
                except SystemExit as e:
                    code = e.code
                except BaseException as e:  # noqa: BLE001: a traceback is what this test looks for
                    err = f"{type(e).__name__}: {e}"
                err = err or capsys.readouterr().err
                lines = err.strip().splitlines()
                if code != 2 or len(lines) != 1 or not lines[0].startswith(f"{parser.prog}: error: ") or not any(
                    word in lines[0] for word in (flag, value[0], flag.lstrip("-").replace("-", "_"))
                ):
                    wrong.append(f"{name} {flag} {' '.join(value)}: exit {code}: {err.strip()[-300:]}")
    assert runs > 200 and not wrong, "\n".join(wrong)


def png(path: Path, height: int, width: int, rows: bytes, crc_ok: bool = True) -> Path:
    """A gray 8-bit PNG file written byte by byte: its header may claim any size, its data be anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) ^ (0 if crc_ok else 1)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def test_completing_a_corrupt_or_huge_png_is_refused_in_one_line(digit_folder_fit, tmp_path, capsys):
    rows = b"".join(b"\x00" + bytes(range(28)) for _ in range(28))
    files = {"bad-crc.png": png(tmp_path / "bad-crc.png", 28, 28, rows, crc_ok=False),
             "bomb.png": png(tmp_path / "bomb.png", 20000, 20000, rows)}  # 400 M pixels claimed, a few bytes
    for name, path in files.items():
        line = run_cli(generate, ["--vqvae", str(digit_folder_fit.vqvae), "--prior", str(digit_folder_fit.prior),
                                  "--complete", str(path), "--keep-rows", "2", "--labels", "1", "--out",
                                  str(tmp_path / "c.png")], capsys)
        assert name in line, line
    assert not (tmp_path / "c.png").exists()


def test_a_full_disk_while_saving_a_checkpoint_stops_in_one_line_and_keeps_the_fit(digit_folder, tmp_path, capsys,
                                                                                 monkeypatch):
    argv = ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(tmp_path), "--batch-size",
            "16", "--no-progress", "--device", "cpu", "--lr-schedule", "constant", *VQVAE_16_CODES]
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args([*argv, "--epochs", "1"]))
    state = lambda: {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.suffix != ".png"}  # noqa: E731
    before = state()

    fsync = os.fsync

    def full(fd: int) -> None:  # the disk fills up as the next last checkpoint is written
        if ".vqvae-last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(files.os, "fsync", full)
    line = run_cli(fit_vqvae, [*argv, "--epochs", "2", "--resume"], capsys)
    assert "cannot write" in line and "vqvae-last.pt (No space left on device)" in line, line
    monkeypatch.undo()
    assert state() == before  # the checkpoints and metrics as they were, no temporary, no lock
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args([*argv, "--epochs", "2", "--resume"]))
    assert logged_epochs(tmp_path) == [1, 2]


# ---------------------------------------------------------------------------------------------- signals, late checks


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_a_fit_in_one_line_releasing_its_lock(digit_folder, tmp_path, signum):
    argv = [sys.executable, "-m", "pipelines.fit_vqvae", "--dataset", "image-folder", "--data-root", str(digit_folder),
            "--out", str(tmp_path), "--epochs", "100000", "--batch-size", "16", "--no-progress", "--device", "cpu",
            "--lr-schedule", "constant", *VQVAE_16_CODES]
    fit = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           cwd=Path(__file__).resolve().parents[1], preexec_fn=ctrl_c_as_default)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "metrics.jsonl").is_file() and time.monotonic() < deadline and fit.poll() is None:
            time.sleep(0.05)
        fit.send_signal(signum)
        err = fit.communicate(timeout=60)[1]
    finally:  # a fit the signal did not end must not outlive the test
        fit.kill()
        fit.wait()
    assert fit.returncode == 128 + signum, err
    assert err.splitlines()[-1].startswith("fit_vqvae.py: interrupted after epoch ") and "Traceback" not in err, err
    assert "--resume continues the fit" in err
    epoch = load_checkpoint(tmp_path / "vqvae-last.pt")["epoch"]
    assert f"interrupted after epoch {epoch}:" in err and logged_epochs(tmp_path) == list(range(1, epoch + 1))
    assert not (tmp_path / LOCK_NAME).exists() and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
def test_a_signal_while_an_epoch_is_written_takes_effect_once_its_files_are(digit_folder, tmp_path, capsys,
                                                                           monkeypatch):
    argv = ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(tmp_path), "--epochs", "5",
            "--batch-size", "16", "--no-progress", "--device", "cpu", "--lr-schedule", "constant", *VQVAE_16_CODES]
    fsync, save_epoch, saving = os.fsync, RunFolder.save_epoch, []

    def interrupted(fd: int) -> None:  # SIGTERM arrives as epoch 2's last checkpoint is written
        if saving == [2] and ".vqvae-last.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            os.kill(os.getpid(), signal.SIGTERM)
        fsync(fd)

    def recorded(self, model, metrics, *args):
        saving[:] = [metrics["epoch"]]
        return save_epoch(self, model, metrics, *args)

    monkeypatch.setattr(files.os, "fsync", interrupted)
    monkeypatch.setattr(RunFolder, "save_epoch", recorded)
    with pytest.raises(SystemExit) as exit_info:
        cli.run(fit_vqvae.main, fit_vqvae.get_args_parser(), argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 128 + signal.SIGTERM and "Traceback" not in err, err
    assert "interrupted after epoch 2:" in err  # epoch 2 whole: its checkpoints and its line of metrics
    assert load_checkpoint(tmp_path / "vqvae-last.pt")["epoch"] == 2 and logged_epochs(tmp_path) == [1, 2]
    assert not (tmp_path / LOCK_NAME).exists() and not list(tmp_path.glob(".*.tmp"))


def test_quickstart_refuses_a_bad_guidance_before_fitting(tmp_path, capsys):
    line = run_cli(quickstart, ["--out", str(tmp_path / "qs"), "--samples", str(tmp_path / "s.png"), "--guidance",
                                "nan"], capsys)
    assert "--guidance must be a finite number >= 0, got nan" in line and not (tmp_path / "qs").exists()


def test_a_beta_beyond_float32_is_refused_before_the_fit(digit_folder, tmp_path, capsys):
    line = run_cli(fit_vqvae, ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(tmp_path),
                               "--quantizer", "loss", "--beta", "1e39"], capsys)
    assert "--beta 1e+39 is beyond float32" in line and not (tmp_path / "metrics.jsonl").exists()


def test_empty_and_truncated_checkpoints_say_what_is_wrong(digit_folder_fit, tmp_path, capsys):
    whole = digit_folder_fit.vqvae.read_bytes()
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    for name, says in (("empty.pt", "is empty (0 bytes)"), ("cut.pt", "is truncated or corrupt")):
        with pytest.raises(CheckpointError, match=rf"{name} {re.escape(says)}"):
            load_vqvae(tmp_path / name)
        line = run_cli(generate, ["--vqvae", str(tmp_path / name), "--prior", str(digit_folder_fit.prior),
                                  "--labels", "all", "--out", str(tmp_path / "s.png")], capsys)
        assert says in line and "Errno" not in line and not line.rstrip().endswith(":"), line


# ---------------------------------------------------------------------------------------------- bounded generation


@pytest.mark.parametrize("ask, named", [
    (["--n", "1000000000"], "--n 1000000000 asks for 1000000000 samples"),
    (["--labels", "all", "--repeat", "1000000000"], "--repeat 1000000000 asks for 1000000000 samples"),
    (["--labels", "all", "--repeat", "1000"], r"--labels \(3\) x --repeat 1000 asks for 3000 samples; one call makes "
                                              "at most 2048"),
])
def test_generate_refuses_more_samples_than_fit_before_any_work(digit_folder_fit, tmp_path, capsys, monkeypatch, ask,
                                                              named):
    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled")

    monkeypatch.setattr(VQPriorPipeline, "__call__", no_sampling)
    prior = digit_folder_fit.prior if "--labels" in ask else tmp_path / "absent.pt"  # --n: refused before loading
    line = run_cli(generate, ["--vqvae", str(digit_folder_fit.vqvae), "--prior", str(prior), *ask, "--out",
                              str(tmp_path / "s.png")], capsys)
    assert re.search(named, line), line
    assert not (tmp_path / "s.png").exists()


def test_the_pipeline_refuses_more_samples_than_fit(pipe):
    with pytest.raises(UsageError, match="n=1000000000 asks for 1000000000 samples; one call makes at most 2048"):
        pipe(10**9, labels=None)
    with pytest.raises(UsageError, match=r"2 inputs x completions=3000 asks for 6000 samples"):
        pipe.complete(torch.rand(2, 1, 28, 28), 3, [0, 1], completions=3000)
    with pytest.raises(UsageError, match="n=1025 asks for 1025 samples; one call makes at most 1024 under guidance"):
        pipe(1025, labels=[0] * 1025, guidance=2.0)  # guidance samples each map twice


def test_image_check_refuses_more_samples_than_fit_before_training_its_classifier(digit_folder_fit, tmp_path, capsys):
    line = run_cli(image_check, ["--vqvae", str(digit_folder_fit.vqvae), "--prior", str(digit_folder_fit.prior),
                                 "--per-class", "1000", "--cache-dir", str(tmp_path / "cache"), "--out",
                                 str(tmp_path / "check.json")], capsys)
    assert "--per-class 1000 x 3 classes asks for 3000 samples" in line and not any((tmp_path / "cache").iterdir())


# ---------------------------------------------------------------------------------------------- shapes across splits


def test_idx_splits_of_two_image_sizes_are_refused(tmp_path, capsys):
    for prefix, size in (("train", 28), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte", np.zeros((4, size, size)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", np.array([0, 1, 2, 3]))
    with pytest.raises(DataError, match=r"train items are \(1, 28, 28\) .* but its held-out items \(1, 20, 20\)"):
        load_dataset("mnist", tmp_path)
    line = run_cli(fit_vqvae, ["--dataset", "mnist", "--data-root", str(tmp_path), "--out", str(tmp_path / "vq")],
                   capsys)
    assert "held-out items (1, 20, 20)" in line and not (tmp_path / "vq" / "vqvae.pt").exists()


def test_a_prior_is_fitted_and_used_only_on_items_of_its_vqvaes_size(digit_folder_fit, tmp_path, capsys):
    small = tmp_path / "small"
    for digit in ("1", "4", "7"):
        (small / digit).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((8, 8), 40 * i, dtype=np.uint8)).save(small / digit / f"{i}.png")
    line = run_cli(fit_prior, ["--vqvae", str(digit_folder_fit.vqvae), "--data-root", str(small), "--out",
                               str(tmp_path / "prior"), "--device", "cpu", *PRIOR_2_LAYERS], capsys)
    assert "--data-root" in line and "holds items (1, 8, 8)" in line and "fitted on items (1, 28, 28)" in line, line
    assert not (tmp_path / "prior" / "prior.pt").exists()
    payload = torch.load(digit_folder_fit.prior, weights_only=True)
    payload["code_shape"] = [2, 2]  # as the fit above made it before it was refused
    torch.save(payload, tmp_path / "prior-2x2.pt")
    line = run_cli(generate, ["--vqvae", str(digit_folder_fit.vqvae), "--prior", str(tmp_path / "prior-2x2.pt"),
                              "--labels", "all", "--out", str(tmp_path / "s.png")], capsys)
    assert "models code maps (2, 2)" in line and "makes (7, 7)" in line and not (tmp_path / "s.png").exists(), line


# ---------------------------------------------------------------------------------------------- inputs read rightly


def test_16_bit_pngs_are_scaled_to_8_bits_not_clipped(tmp_path):
    levels = np.array([[0, 60, 120], [180, 240, 255]], dtype=np.uint16)  # 8-bit values, stored 16-bit (x 257)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(levels * 257).save(tmp_path / name / f"{i}.png")  # mode I;16
    splits = load_dataset("image-folder", tmp_path)
    assert torch.equal(splits.train.images[0, 0], torch.from_numpy(levels.astype(np.uint8)))
    x = Images().read(tmp_path / "a" / "0.png", (1, 2, 3))  # as --complete reads it
    assert torch.equal(x[0], torch.from_numpy(levels).float() / 255)


def test_a_link_loop_in_an_image_folder_is_refused_not_followed(tmp_path, make_digit_folder):
    folder = make_digit_folder(tmp_path / "digits", per_class=2)
    (folder / "1" / "up").symlink_to("..")  # digits/1/up -> digits: every class again, as class 1, and again ...
    with pytest.raises(DataError, match=r"1/up leads back to .*digits, a folder this image folder already holds"):
        load_dataset("image-folder", folder)


def test_a_truncated_wav_is_refused_not_read_as_a_shorter_clip(tmp_path):
    sf.write(tmp_path / "7_x_0.wav", np.sin(np.arange(8000) / 10).astype(np.float32), 8000, subtype="PCM_16")
    whole = (tmp_path / "7_x_0.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[: len(whole) // 2])
    assert read_wave(tmp_path / "7_x_0.wav", 8000).shape == (8000,)
    with pytest.raises(DataError, match=r"cut\.wav is truncated: its header declares 16000 bytes of samples"):
        read_wave(tmp_path / "cut.wav", 8000)


def test_resume_refuses_a_corrupt_best_checkpoint_it_cannot_rebuild(digit_folder, tmp_path, capsys, monkeypatch):
    argv = ["--dataset", "image-folder", "--data-root", str(digit_folder), "--out", str(tmp_path), "--batch-size",
            "16", "--no-progress", "--device", "cpu", "--lr-schedule", "constant", *VQVAE_16_CODES]
    monkeypatch.setattr(vqvae_fit, "evaluate", scripted(vqvae_fit, "test_mse", [0.3, 0.5, 0.4]))
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args([*argv, "--epochs", "2"]))  # the best: epoch 1
    whole = (tmp_path / "vqvae.pt").read_bytes()
    (tmp_path / "vqvae.pt").write_bytes(whole[: len(whole) // 2])
    line = run_cli(fit_vqvae, [*argv, "--epochs", "3", "--resume"], capsys)
    assert "vqvae.pt cannot be read" in line and "records epoch 1 as the best" in line, line
    assert load_checkpoint(tmp_path / "vqvae-last.pt")["epoch"] == 2  # nothing trained
    (tmp_path / "vqvae.pt").unlink()  # as the message says: delete it to go on
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args([*argv, "--epochs", "3", "--resume"]))
    assert "vqvae.pt is missing, the best epoch (1) with it" in capsys.readouterr().err
    assert load_checkpoint(tmp_path / "vqvae.pt")["epoch"] == 3 and logged_epochs(tmp_path) == [1, 2, 3]


# ---------------------------------------------------------------------------------------------- data changed in place


def test_resume_refuses_data_that_changed_under_the_same_path(tmp_path, make_digit_folder, capsys):
    folder = make_digit_folder(tmp_path / "digits", per_class=4)
    argv = ["--dataset", "image-folder", "--data-root", str(folder), "--out", str(tmp_path / "vq"), "--batch-size",
            "16", "--no-progress", "--device", "cpu", "--lr-schedule", "constant", *VQVAE_16_CODES]
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args([*argv, "--epochs", "1"]))
    image = next((folder / "4").iterdir())
    Image.fromarray(255 - np.array(Image.open(image))).save(image)  # same name, same size, other pixels
    line = run_cli(fit_vqvae, [*argv, "--epochs", "2", "--resume"], capsys)
    assert "--resume: the data set" in line and "changed since the fit" in line, line
    assert logged_epochs(tmp_path / "vq") == [1]


def test_cached_code_maps_are_keyed_on_the_data_not_its_path(digit_folder_fit, tmp_path, make_digit_folder):
    folder = make_digit_folder(tmp_path / "digits", digits=(1, 4, 7), per_class=3)
    cache = tmp_path / "cache"
    args = ["--data-root", str(folder), "--cache-dir", str(cache), "--batch-size", "4", "--samples-per-class", "0"]
    run_prior(digit_folder_fit.vqvae, tmp_path / "p1", *args)
    assert load_checkpoint(tmp_path / "p1" / "prior.pt")["label_names"] == ["1", "4", "7"]
    make_digit_folder(folder, digits=(9,), per_class=3)  # a class more, under the same path
    run_prior(digit_folder_fit.vqvae, tmp_path / "p2", *args)
    assert load_checkpoint(tmp_path / "p2" / "prior.pt")["label_names"] == ["1", "4", "7", "9"]
    assert len(list(cache.glob("codes-*.pt"))) == 2
