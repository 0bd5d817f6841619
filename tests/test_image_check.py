"""pipelines.image_check end to end on a folder of synthesized PNGs (three shapes that any classifier separates),
with tiny models fitted for one epoch; and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from files import grid_tiles
from pipelines import check_summary, cli, fit_prior, fit_vqvae, image_check
from vqvae_prior.checkpoint import CheckpointError, save_checkpoint
from vqvae_prior.errors import UsageError
from vqvae_prior.evaluation import image_judges
from vqvae_prior.vqvae import VQVAE, VQVAEConfig

SHAPES = ("bar", "column", "ring")
TINY_VQVAE = ["--channels", "8", "--residual-channels", "4", "--codebook-size", "16", "--code-dim", "4"]
TINY_PRIOR = ["--layers", "2", "--channels", "8", "--head-channels", "16", "--samples-per-class", "1"]
COMMON = ["--epochs", "1", "--batch-size", "16", "--device", "cpu", "--no-progress"]
TINY_CLASSIFIER = ["--classifier-epochs", "15", "--classifier-batch-size", "16", "--classifier-channels", "4",
                   "--device", "cpu"]


def _shape(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A 16 x 16 uint8 image: a horizontal bar, a vertical bar or a ring, placed at random, on faint noise."""
    img = rng.uniform(0, 40, (16, 16))
    r, c = rng.integers(4, 12, 2)
    if kind == "bar":
        img[r - 1 : r + 1, 2:14] = 255
    elif kind == "column":
        img[2:14, c - 1 : c + 1] = 255
    else:
        yy, xx = np.mgrid[:16, :16]
        img[np.abs(np.hypot(yy - 8, xx - 8) - 5) < 1] = 255
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    """90 PNGs, 30 of each shape: 27 train and 3 held out per class."""
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for kind in SHAPES:
        (root / kind).mkdir()
        for i in range(30):
            Image.fromarray(_shape(kind, rng)).save(root / kind / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def fitted(shapes_folder, tmp_path_factory) -> dict[str, Path]:
    """A tiny VQ-VAE (4 x 4 codes) and three priors over its codes: class-conditional without label dropout (no
    guidance), unconditional, and class-conditional with label dropout 0.5 (for guidance)."""
    runs = tmp_path_factory.mktemp("runs")
    fit_vqvae.main(fit_vqvae.get_args_parser().parse_args(
        ["--dataset", "image-folder", "--data-root", str(shapes_folder), "--out", str(runs / "vq"), *TINY_VQVAE,
         *COMMON]))
    paths = {"runs": runs, "vqvae": runs / "vq" / "vqvae.pt"}
    for name, extra in (("prior", ["--label-dropout", "0"]), ("unconditional", ["--unconditional"]),
                        ("guided", ["--label-dropout", "0.5"])):
        fit_prior.main(fit_prior.get_args_parser().parse_args(
            ["--vqvae", str(paths["vqvae"]), "--out", str(runs / name), *TINY_PRIOR, *COMMON, *extra]))
        paths[name] = runs / name / "prior.pt"
    return paths


def run_check(fitted: dict[str, Path], out: Path, *extra: str, prior: str = "prior") -> dict:
    args = ["--vqvae", str(fitted["vqvae"]), "--prior", str(fitted[prior]), "--out", str(out),
            "--cache-dir", str(fitted["runs"] / "cache"), *TINY_CLASSIFIER, *extra]
    return image_check.main(image_check.get_args_parser().parse_args(args))


@pytest.fixture(scope="module")
def report(fitted) -> dict:
    return run_check(fitted, fitted["runs"] / "check" / "report.json", "--per-class", "4", "--worst", "5")


def test_report_structure_and_invariants(fitted, report):
    assert json.loads((fitted["runs"] / "check" / "report.json").read_text()) == report
    assert report["label_names"] == list(SHAPES) and report["classifier"]["train_images"] == 81
    real = report["real"]
    assert real["n"] == 9 and real["accuracy"] == 1.0  # three shapes a classifier cannot confuse
    assert sorted(real["per_class"]) == sorted(SHAPES)
    generated = report["generated"]
    assert generated["n"] == 12 and set(generated["per_class"]) == set(SHAPES)
    assert np.array(generated["confusion"]).sum(axis=1).tolist() == [4, 4, 4]
    for name in ("real", "reconstructed", "generated"):
        assert 1 - 1e-9 <= report[name]["inception_score"] <= 3 + 1e-9
        assert 0 <= report[name]["accuracy"] <= 1
    for name in ("reconstructed", "generated"):
        fd = report[name]["frechet"]
        assert fd["m"] == 4 and fd["distance"] >= 0 and fd["floor"] > 0  # m = min(12, 9 // 2)
        assert fd["ratio"] == pytest.approx(fd["distance"] / fd["floor"])
    assert report["reconstructed"]["frechet"]["floor"] == report["generated"]["frechet"]["floor"]
    copying = report["copying"]
    assert copying["generated_n"] == 12 and 0 <= copying["generated_exact_copies"] <= 12
    assert 0 <= copying["generated_mean_distance"] <= 1 and 0 <= copying["held_out_mean_distance"] <= 1
    worst = report["worst"]
    assert len(worst) == 5 and [w["probability"] for w in worst] == sorted(w["probability"] for w in worst)
    assert all(w["asked"] in SHAPES and w["recognized"] in SHAPES for w in worst)
    assert Path(report["worst_png"]).name == "report-worst.png"
    grid_tiles(Path(report["worst_png"]), 5, nrow=10, tile=(16, 16))  # the 5 worst samples in a row
    assert set(report["seconds"]) == {"data", "classifier", "real", "reconstructed", "generate", "generated", "copying"}


def test_a_cache_hit_gives_the_same_classifier_and_report(fitted, report):
    assert not report["classifier"]["cached"]
    again = run_check(fitted, fitted["runs"] / "again.json", "--per-class", "4", "--worst", "5")
    assert again["classifier"]["cached"]
    for name in ("real", "reconstructed", "generated", "copying", "worst"):
        assert again[name] == report[name], name
    other_seed = run_check(fitted, fitted["runs"] / "seed.json", "--per-class", "4", "--seed", "1", "--worst", "0")
    assert other_seed["classifier"]["cached"] and other_seed["real"] == report["real"]  # --seed: samples only
    assert other_seed["worst_png"] is None and not (fitted["runs"] / "seed-worst.png").exists()


def test_reports_of_several_seeds_pool_into_one_summary(fitted, report, tmp_path):
    other = run_check(fitted, tmp_path / "s1.json", "--per-class", "4", "--seed", "1", "--worst", "0")
    paths = [str(fitted["runs"] / "check" / "report.json"), str(tmp_path / "s1.json")]
    summary = check_summary.main(check_summary.get_args_parser().parse_args([*paths, "--out", str(tmp_path / "p.json")]))
    pooled = summary["pooled"]["generated"]
    both = [report["generated"], other["generated"]]
    assert pooled["seeds"] == 2 and pooled["n"] == 24 and summary["seeds"] == [0, 1]
    assert pooled["accuracy"] == pytest.approx(sum(g["accuracy"] for g in both) / 2)
    fd = pooled["frechet"]  # the mean distance over the mean floor, the ratios' mean beside it
    assert fd["ratio"] == pytest.approx(sum(g["frechet"]["distance"] for g in both) / sum(g["frechet"]["floor"] for g in both))
    assert fd["mean_ratio"] == pytest.approx(sum(g["frechet"]["ratio"] for g in both) / 2)
    assert json.loads((tmp_path / "p.json").read_text())["pooled"]["generated"]["frechet"] == fd
    run_check(fitted, tmp_path / "guided.json", "--per-class", "4", "--seed", "2", prior="guided")
    for others, match in (([paths[0], str(tmp_path / "guided.json")], "judged other prior weights"),
                          ([paths[0], paths[0]], "are both of --seed 0"),
                          ([paths[0], str(tmp_path / "none.json")], "none.json: no such file")):
        with pytest.raises(UsageError, match=match):
            check_summary.main(check_summary.get_args_parser().parse_args(others))


def test_few_samples_compare_with_real_halves_of_their_size(fitted, tmp_path):
    """3 samples against 9 held-out images: FD on sets of m = min(3, 9 // 2) = 3."""
    report = run_check(fitted, tmp_path / "few.json", "--per-class", "1", "--worst", "0")
    assert report["generated"]["n"] == 3 and report["generated"]["frechet"]["m"] == 3
    assert report["reconstructed"]["frechet"]["m"] == 3


def test_guided_samples(fitted, tmp_path):
    """--guidance reaches the sampler: other samples than unguided ones from the same prior and seed."""
    guided = run_check(fitted, tmp_path / "g.json", "--per-class", "2", "--guidance", "2", "--worst", "0",
                       prior="guided")
    unguided = run_check(fitted, tmp_path / "u.json", "--per-class", "2", "--worst", "0", prior="guided")
    assert guided["args"]["guidance"] == 2.0 and guided["generated"]["n"] == 6
    assert guided["copying"] != unguided["copying"] or guided["generated"] != unguided["generated"]


def test_unconditional_prior_gets_score_and_distance_only(fitted, tmp_path):
    report = run_check(fitted, tmp_path / "u.json", "--n", "10", prior="unconditional")
    generated = report["generated"]
    assert generated["n"] == 10 and "accuracy" not in generated and "per_class" not in generated
    assert 1 <= generated["inception_score"] <= 3 + 1e-9 and generated["frechet"]["m"] == 4
    assert all(w["asked"] is None for w in report["worst"])


@pytest.mark.parametrize("out, extra, prior, match", [
    ("r.json", ["--per-class", "0"], "prior", "--per-class must be >= 1, got 0"),
    ("r.json", ["--per-class", "10"], "unconditional", "unconditional.*pass --n"),
    ("r.json", ["--n", "10"], "prior", "--n is for an unconditional prior"),
    ("r.json", ["--temperature", "0"], "prior", "--temperature must be a finite number > 0"),
    ("r.json", ["--temperature", "1", "0.8"], "prior", r"--temperature: 2 values \[1.0, 0.8\] for a prior of 1 level"),
    ("r.json", ["--guidance", "1", "0", "0"], "prior", "--guidance takes one number, or two"),
    ("r.json", ["--guidance", "1"], "prior", "--guidance 1.0: .* without --label-dropout"),
    ("r.json", ["--classifier-epochs", "0"], "prior", "--classifier-epochs must be >= 1"),
    (".", [], "prior", "is a folder; expected the report's file name"),
])
def test_refusals_of_options(fitted, tmp_path, out, extra, prior, match):
    with pytest.raises(UsageError, match=match):
        run_check(fitted, tmp_path / out, *extra, prior=prior)
    assert not (tmp_path / "r.json").exists()


def test_refusals_of_checkpoints(fitted, tmp_path):
    audio = tmp_path / "audio.pt"
    config = VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=16)
    save_checkpoint(audio, "vqvae", VQVAE(config), data={"name": "audio-folder", "spectrogram": {}})
    with pytest.raises(UsageError, match="fitted on recordings.*pipelines.audio_check"):
        image_check.main(image_check.get_args_parser().parse_args(
            ["--vqvae", str(audio), "--prior", str(fitted["prior"]), "--out", str(tmp_path / "r.json")]))
    other = tmp_path / "other.pt"
    save_checkpoint(other, "vqvae", VQVAE(config), data={"name": "image-folder"})
    with pytest.raises(CheckpointError, match="other VQ-VAE weights"):
        image_check.main(image_check.get_args_parser().parse_args(
            ["--vqvae", str(other), "--prior", str(fitted["prior"]), "--out", str(tmp_path / "r.json")]))
    assert not (tmp_path / "r.json").exists()


def test_command_line_error_is_one_line(fitted, tmp_path, capsys):
    argv = ["--vqvae", str(fitted["vqvae"]), "--prior", str(fitted["prior"]), "--per-class", "0",
            "--out", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as exit_info:
        cli.run(image_check.main, image_check.get_args_parser(), argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().endswith("error: --per-class must be >= 1, got 0")


def test_augment_moves_and_keeps_shape():
    x = torch.zeros(4, 1, 16, 12)
    x[:, :, 6:10, 4:8] = 1
    g = torch.Generator().manual_seed(0)
    still = image_judges.augment(x, image_judges.AugmentSettings(shift=0, rotate=0), g)
    torch.testing.assert_close(still, x)  # no distortion: the identity
    moved = image_judges.augment(x, image_judges.AugmentSettings(shift=2, rotate=10), g)
    assert moved.shape == x.shape and not torch.allclose(moved, x)
    assert (moved.sum((1, 2, 3)) - x.sum((1, 2, 3))).abs().max() < 3  # moved, not lost


def test_default_epochs():
    assert image_judges.default_epochs(4500) == 34 and image_judges.default_epochs(60000) == 3
    assert image_judges.default_epochs(10**6) == 2
