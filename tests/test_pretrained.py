"""Pretrained models: packaged from tiny fits into a temporary folder, listed, loaded (by the library and by
``generate --pretrained``), and refused when a file was changed, the name is unknown or the options contradict."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import pytest
import torch

from files import grid_tiles
from fits import TinyFit
from pipelines import generate, package_model
from test_reliability import run_cli
from vqvae_prior import VQPriorPipeline, pretrained
from vqvae_prior.errors import CheckpointError, UsageError


def package(fit, root: Path, name: str = "tiny", *check: Path) -> pretrained.PretrainedPaths:
    argv = ["--name", name, "--vqvae", str(fit.vqvae), "--prior", str(fit.prior), "--root", str(root)]
    if check:
        argv += ["--check", *map(str, check)]
    return package_model.main(package_model.get_args_parser().parse_args(argv))


@pytest.fixture
def models(digit_folder_fit, tmp_path, monkeypatch) -> Path:
    """A folder of pretrained models holding the tiny digit fit as "tiny", which the environment names."""
    root = tmp_path / "pretrained"
    package(digit_folder_fit, root)
    monkeypatch.setenv(pretrained.ENV, str(root))
    return root


def test_a_packaged_model_is_listed_verified_and_loads_as_its_checkpoints(models, digit_folder_fit):
    manifest = json.loads((models / "manifest.json").read_text())
    files = manifest["models"]["tiny"]["files"]
    assert {f["file"] for f in files.values()} == {"tiny-vqvae.pt", "tiny-prior.pt", "tiny.md"}
    for entry in files.values():
        assert entry["sha256"] == pretrained.sha256(models / entry["file"])
        assert entry["bytes"] == (models / entry["file"]).stat().st_size
    assert (models / "tiny-prior.pt").read_bytes() == digit_folder_fit.prior.read_bytes()
    assert list(pretrained.available()) == ["tiny"] and "image model of image-folder" in pretrained.available()["tiny"]
    pipe = VQPriorPipeline.from_pretrained("tiny", device="cpu")
    same = VQPriorPipeline.from_checkpoints(digit_folder_fit.vqvae, digit_folder_fit.prior, "cpu")
    a = pipe(3, labels=[0, 1, 2], generator=torch.Generator().manual_seed(0))
    b = same(3, labels=[0, 1, 2], generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.codes, b.codes) and torch.equal(a.images, b.images)


def test_the_card_says_what_the_checkpoints_and_the_check_record(digit_folder_fit, tmp_path):
    check = tmp_path / "check.json"
    report = {"vqvae": str(digit_folder_fit.vqvae), "prior": str(digit_folder_fit.prior), "args": {"per_class": 2,
              "seed": 0}, "real": {"n": 6, "accuracy": 0.5, "inception_score": 1.25},
              "reconstructed": {"n": 6, "accuracy": 0.75, "inception_score": 1.5,
                                "frechet": {"ratio": 3.125, "m": 3}},
              "generated": {"n": 6, "accuracy": 0.625, "inception_score": 1.75, "frechet": {"ratio": 4.5, "m": 3}},
              "copying": {"generated_exact_copies": 1, "generated_n": 6, "generated_mean_distance": 0.5,
                          "held_out_mean_distance": 0.25}}
    check.write_text(json.dumps(report))
    card = package(digit_folder_fit, tmp_path / "models", "tiny", check).card.read_text()
    vq = torch.load(digit_folder_fit.vqvae, weights_only=True)
    assert vq["data_digest"] in card and f"{digit_folder_fit.prior_metrics['test_bits_per_code']:.4g}" in card
    assert "python -m pipelines.fit_vqvae --out" in card and "--codebook-size 16" in card
    assert "| generated (n=6) | 0.625 | 1.75 | 4.50 (m=3) |" in card
    assert "python -m pipelines.image_check --per-class 2 --seed 0" in card and "1 exact copies" in card
    assert pretrained.sha256(digit_folder_fit.prior) in card
    source = vq["source"]  # this checkout's commit; None where the tests run from an installed package
    assert (f"- code: git commit {source['commit']}" if source else "- code: not recorded") in card


def test_the_card_of_an_audio_model_gives_its_check_by_judge_family(audio_fit, tmp_path):
    check = tmp_path / "check.json"
    recognized = {"real": {"accuracy": 0.75, "std": 0.125, "family": "log-mel", "by_family": {"log-mel": 0.75,
                                                                                               "mfcc": 0.875}},
                  "generated": {"accuracy": 0.5, "std": 0.25, "family": "mfcc", "by_family": {"log-mel": 0.625,
                                                                                               "mfcc": 0.5}}}
    check.write_text(json.dumps({"vqvae": str(audio_fit["vqvae"]), "prior": str(audio_fit["prior"]),
                                 "args": {"seeds": 2}, "families": {}, "recognized": recognized,
                                 "copying": {"generated_exact_copies": 0, "generated_n": 4,
                                             "generated_mean_distance": 0.5, "held_out_mean_distance": 0.25}}))
    fit = TinyFit(audio_fit["vqvae"], audio_fit["prior"], audio_fit["vq_metrics"], audio_fit["prior_metrics"])
    found = package(fit, tmp_path / "models", "tones", check)
    card = found.card.read_text()
    assert "| generated | 0.500 (mfcc judges) | 0.250 | log-mel 0.625, mfcc 0.500 |" in card
    assert "python -m pipelines.audio_check --seeds 2" in card and "--representation stft" in card
    assert pretrained.available(tmp_path / "models")["tones"].startswith("audio model of audio-folder")
    pipe = VQPriorPipeline.from_pretrained("tones", "cpu", tmp_path / "models")
    assert pipe(2, labels=[0, 1]).waveforms.shape[0] == 2


def test_generate_takes_a_pretrained_model_and_lists_them(models, tmp_path, capsys):
    out = tmp_path / "s.png"
    generate.main(generate.get_args_parser().parse_args(["--pretrained", "tiny", "--labels", "all", "--seed", "0",
                                                         "--out", str(out), "--device", "cpu"]))
    assert len(grid_tiles(out, 3, 8, (28, 28))) == 3
    capsys.readouterr()
    assert list(generate.main(generate.get_args_parser().parse_args(["--pretrained", "list"]))) == ["tiny"]
    assert capsys.readouterr().out.startswith("tiny: image model of image-folder")


@pytest.mark.parametrize("argv, named", [
    (["--pretrained", "tiny", "--prior", "p.pt"], "--pretrained tiny takes the place of --vqvae and --prior"),
    (["--pretrained", "tiny", "--vqvae", "v.pt"], "--pretrained tiny takes the place of --vqvae and --prior"),
    ([], "give --pretrained NAME"),
    (["--pretrained", "zebra"], r"--pretrained zebra: no pretrained model is named 'zebra'; those in .* are: tiny"),
])
def test_generate_refuses_contradicting_or_unknown_models_in_one_line(models, tmp_path, capsys, argv, named):
    line = run_cli(generate, [*argv, "--labels", "all", "--out", str(tmp_path / "s.png")], capsys)
    assert re.search(named, line), line
    assert not (tmp_path / "s.png").exists()


def test_a_changed_file_is_refused_naming_it_and_both_digests(models, tmp_path, capsys):
    expected = pretrained.sha256(models / "tiny-prior.pt")
    original = (models / "tiny-prior.pt").read_bytes()
    data = bytearray(original)
    data[-100] ^= 1  # one bit, the size unchanged
    (models / "tiny-prior.pt").write_bytes(data)
    with pytest.raises(CheckpointError, match=f"tiny-prior.pt has been changed .* expected {expected}, actual "
                                              f"{pretrained.sha256(models / 'tiny-prior.pt')}"):
        VQPriorPipeline.from_pretrained("tiny")
    line = run_cli(generate, ["--pretrained", "tiny", "--labels", "all", "--out", str(tmp_path / "s.png")], capsys)
    assert "tiny-prior.pt has been changed" in line and expected in line
    (models / "tiny-prior.pt").write_bytes(original)
    (models / "tiny.md").write_text("shorter")
    with pytest.raises(CheckpointError, match=r"tiny.md has been changed .* actual \(not read: 7 bytes"):
        pretrained.paths("tiny")


def test_unknown_names_and_bad_names_are_refused(models, tmp_path):
    with pytest.raises(UsageError, match=r"no pretrained model is named 'mnist'; those in .* are: tiny"):
        VQPriorPipeline.from_pretrained("mnist")
    assert pretrained.available(tmp_path / "empty") == {}
    with pytest.raises(UsageError, match="those in .* are: none"):
        pretrained.paths("tiny", tmp_path / "empty")
    for name in ("list", "../up", "Big", ""):
        with pytest.raises(UsageError, match="name .*: expected 1 to 40 lower-case letters"):
            pretrained.check_name(name)


@pytest.mark.parametrize("text", ["{", "[]", '{"format": "other", "models": {}}',
                                  '{"format": "vqvae_prior-pretrained", "version": 1, "models": {"a": 3}}'])
def test_a_damaged_manifest_is_refused_naming_it(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'manifest.json'} (cannot be read as|is not) a manifest"):
        pretrained.available(tmp_path)


def test_packaging_refuses_a_pair_that_does_not_belong_together_or_is_too_large(digit_folder_fit, mnist_sample_fit,
                                                                                tmp_path, capsys, monkeypatch):
    root = tmp_path / "models"
    line = run_cli(package_model, ["--name", "mixed", "--vqvae", str(mnist_sample_fit.vqvae), "--prior",
                                   str(digit_folder_fit.prior), "--root", str(root)], capsys)
    assert "models K=16 codes" in line or "other VQ-VAE weights" in line, line
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"vqvae": "a.pt", "prior": "b.pt", "args": {}, "copying": {}}))
    line = run_cli(package_model, ["--name", "tiny", "--vqvae", str(digit_folder_fit.vqvae), "--prior",
                                   str(digit_folder_fit.prior), "--root", str(root), "--check", str(other)], capsys)
    assert f"--check {other} reports on the vqvae a.pt" in line, line
    monkeypatch.setattr(pretrained, "MAX_BYTES", digit_folder_fit.prior.stat().st_size)
    line = run_cli(package_model, ["--name", "tiny", "--vqvae", str(digit_folder_fit.vqvae), "--prior",
                                   str(digit_folder_fit.prior), "--root", str(root)], capsys)
    assert "would take" in line and f"holds at most {pretrained.MAX_BYTES:,} of them" in line, line
    assert not root.exists() or not any(root.glob("*.pt"))


def test_packaging_again_replaces_the_model_and_keeps_the_others(digit_folder_fit, tmp_path):
    root = tmp_path / "models"
    package(digit_folder_fit, root, "one")
    package(digit_folder_fit, root, "two")
    first = json.loads((root / "manifest.json").read_text())
    package(digit_folder_fit, root, "one")
    assert json.loads((root / "manifest.json").read_text()) == first and sorted(pretrained.available(root)) == [
        "one", "two"]


def test_the_package_ships_its_manifest_and_what_packaging_writes(digit_folder_fit, tmp_path):
    package_folder = Path(pretrained.__file__).parent / "pretrained"
    assert pretrained.read_manifest(package_folder)["format"] == "vqvae_prior-pretrained"
    for name in pretrained.available(package_folder):
        pretrained.paths(name, package_folder)  # every file as the manifest says
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    shipped = pyproject["tool"]["setuptools"]["package-data"]["vqvae_prior"]  # what pip install copies
    found = package(digit_folder_fit, tmp_path / "models", "a-model_2")
    for path in (found.vqvae, found.prior, found.card, found.card.parent / "manifest.json"):
        assert any(fnmatch.fnmatch(f"pretrained/{path.name}", glob) for glob in shipped), path.name


# ---------------------------------------------------------------------------------------------- the shipped models


SHIPPED = Path(pretrained.__file__).parent / "pretrained"
# shipped models whose held-out split takes long to score (MNIST: 10,000 maps, 30 to 75 s on 2 cores): -m slow
SLOW_TO_SCORE = {"mnist"}


@pytest.mark.realdata
@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_TO_SCORE else [])
                                  for name in sorted(pretrained.available(SHIPPED))] or ["none"])
def test_each_shipped_models_held_out_bits_per_code_reproduce(name):
    """The card's held-out bits per code (the prior checkpoint's metrics) recomputed from the shipped files: the
    VQ-VAE encodes its data set's held-out split, the prior scores the codes. Skips where the data is absent."""
    if name == "none":
        pytest.skip("no pretrained models are shipped")
    from data import load_dataset
    from vqvae_prior.checkpoint import load_checkpoint
    from vqvae_prior.training.batching import as_tensors, batches
    from vqvae_prior.training.prior_fit import evaluate

    shipped = pretrained.paths(name, SHIPPED)
    spec = load_checkpoint(shipped.vqvae)["data"]
    if spec.get("root") is not None and not Path(spec["root"]).exists():
        pytest.skip(f"{name}: its data set is not at {spec['root']} (the project's ../shared/data)")
    recorded = load_checkpoint(shipped.prior)["metrics"]["test_bits_per_code"]
    pipe = VQPriorPipeline.from_checkpoints(shipped.vqvae, shipped.prior, "cpu")
    x, labels = as_tensors(load_dataset(**spec).test)  # (N, C, H, W), (N,)
    with torch.no_grad():
        maps = [pipe.vqvae.encode_levels(xb) for xb, _ in batches(x, labels, 512, torch.device("cpu"))]
    levels = [torch.cat([m[level] for m in maps]) for level in range(len(maps[0]))]  # each (N, h, w)
    codes = levels[0] if len(levels) == 1 else tuple(levels)
    bits = evaluate(pipe.prior, codes, labels, 256, torch.device("cpu"))["test_bits_per_code"]
    assert bits == pytest.approx(recorded, abs=2e-3), (name, bits, recorded)


def test_the_summary_of_a_two_level_pair_names_its_classes():
    """A two-level prior keeps a config per level; the one-line summary reads the classes from its top level."""
    vq = {"data": {"modality": "audio", "name": "audio-folder"}, "arch": "vqvae2", "config": {"codebook_size": 256},
          "metrics": {}}
    prior = {"arch": "hierarchical", "code_shape": [20, 16], "label_names": list("0123456789"), "metrics": {},
             "config": {"top": {"num_classes": 10}, "bottom": {"num_classes": 10}}}
    assert package_model.summary(vq, prior).startswith(
        "audio model of audio-folder: vqvae2 (K=256, codes 20x16) and hierarchical prior over 10 classes;")
    unconditional = {**prior, "config": {"top": {"num_classes": 0}, "bottom": {"num_classes": 0}}}
    assert "hierarchical prior;" in package_model.summary(vq, unconditional)
