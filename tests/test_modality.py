"""Modalities: files -> model tensors -> pictures and outputs, decided by one object rebuilt from a data spec; and
the typed fit options that the command line and Python build alike."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from pipelines import cli, fit_prior, fit_vqvae
from vqvae_prior.audio import SpectrogramConfig, Spectrograms, spectrogram
from vqvae_prior.errors import CheckpointError, DataError, UsageError
from vqvae_prior.modality import Images
from vqvae_prior.registry import MODALITIES, modality_of_spec
from vqvae_prior.training import PriorFit, VQVAEFit

CFG = SpectrogramConfig(n_fft=62, hop_length=16, n_mels=16, n_frames=24)
PIPELINES = Path(__file__).resolve().parents[1] / "pipelines"


def test_images_read_their_files_and_classes(tmp_path):
    pixels = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6) * 10  # (H, W)
    (tmp_path / "seven").mkdir()
    Image.fromarray(pixels).save(tmp_path / "seven" / "b.png")
    Image.fromarray(pixels).save(tmp_path / "seven" / "a.PNG")
    (tmp_path / "seven" / "notes.txt").write_text("not an image")
    images = Images()
    files = images.files(tmp_path)
    assert [f.name for f in files] == ["a.PNG", "b.png"]  # sorted, any case, images only
    x = images.read(files[0], (1, 4, 6))
    assert torch.equal(x, torch.from_numpy(pixels).float()[None] / 255)  # (1, H, W) in [0, 1]
    assert images.read(files[0], (3, 4, 6)).shape == (3, 4, 6)  # as RGB when the VQ-VAE is
    assert images.label_of(files[0]) == "seven"
    with pytest.raises(UsageError, match=r"a\.PNG is 4x6, expected 8x8"):
        images.read(files[0], (1, 8, 8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"cannot decode image .*bad\.png"):
        images.read(tmp_path / "bad.png", (1, 4, 6))
    with pytest.raises(UsageError, match="is no image file and no folder holding any"):
        images.files(tmp_path / "seven" / "notes.txt")


def test_spectrograms_take_waveforms_and_give_them_back(tmp_path):
    modality = Spectrograms(CFG, r"(?P<label>\d+)_(?P<speaker>[^_]+)_(?P<index>\d+)")
    t = np.arange(CFG.num_samples) / CFG.sample_rate
    waves = np.stack([np.sin(2 * np.pi * f * t) for f in (440.0, 880.0)]).astype(np.float32)  # (2, T)
    x = modality.inputs(waves, (1, *CFG.shape))  # (2, 1, n_frames, F)
    assert torch.equal(x, torch.from_numpy(spectrogram(waves, CFG))[:, None])
    waveforms, rate = modality.outputs(x)
    assert waveforms.shape == (2, CFG.num_samples) and rate == CFG.sample_rate
    sf.write(tmp_path / "3_theo_7.wav", waves[0], CFG.sample_rate)  # 16-bit PCM
    read = modality.read(tmp_path / "3_theo_7.wav", (1, *CFG.shape))
    assert torch.allclose(read, torch.from_numpy(waves[0]), atol=2**-15)
    assert modality.label_of(tmp_path / "3_theo_7.wav") == "3" and modality.label_of(tmp_path / "x.wav") is None
    assert modality.picture(x).shape == (2, 1, CFG.n_bins, CFG.n_frames)  # time to the right
    paths = [tmp_path / "a.wav", tmp_path / "b.wav"]
    modality.write_outputs((waveforms, rate), paths)
    assert sf.info(paths[1]).frames == CFG.num_samples and sf.info(paths[1]).samplerate == rate
    with pytest.raises(UsageError, match=r"expected float inputs \(N, 1, 24, 16\) or waveforms \(N, T\)"):
        modality.inputs(torch.zeros(2, 1, 16, 24), (1, *CFG.shape))
    with pytest.raises(CheckpointError, match=r"v\.pt: an audio VQ-VAE fitted on \[1, 16, 24\].*\[1, 24, 16\]"):
        modality.check_sample_shape([1, 16, 24], "v.pt")


def test_a_modality_is_rebuilt_from_its_data_spec():
    spec = {"name": "audio-folder", "modality": "audio", "spectrogram": dataclasses.asdict(CFG),
            "label_pattern": "(?P<label>.)"}
    audio = modality_of_spec(spec)
    assert isinstance(audio, Spectrograms) and audio.config == CFG and audio.label_pattern == "(?P<label>.)"
    assert isinstance(modality_of_spec({"name": "mnist", "modality": "image"}), Images)
    # specs written before they named their modality: spectrogram settings or not
    assert isinstance(modality_of_spec({k: v for k, v in spec.items() if k != "modality"}), Spectrograms)
    assert isinstance(modality_of_spec({"name": "mnist"}), Images)
    with pytest.raises(DataError, match="unknown modality 'video'; registered: audio, image"):
        modality_of_spec({"modality": "video"})
    assert {name: cls.name for name, cls in MODALITIES.items()} == {"image": "image", "audio": "audio"}


@pytest.mark.parametrize("options, entry, required", [(VQVAEFit, fit_vqvae, []),
                                                      (PriorFit, fit_prior, ["--vqvae", "v.pt"])])
def test_the_command_line_builds_the_options_python_builds(options, entry, required):
    parser = entry.get_args_parser()
    fields = {f.name for f in dataclasses.fields(options)}
    assert set(vars(parser.parse_args(required))) == fields  # one option per field, named alike
    given = options(**vars(parser.parse_args([*required, "--epochs", "3", "--lr", "0.01", "--compile"])))
    assert given == dataclasses.replace(options(**vars(parser.parse_args(required))), epochs=3, lr=0.01, compile=True)
    assert cli.given_options(options, ["--epochs", "3", "--compile"]) == {"epochs": 3, "compile": True}
    help = " ".join(parser.format_help().split())
    assert (f"(default: image {Images.prior_defaults['epochs']}, audio 60 with one level, 24 with two levels)" in help
            or "(default: image 13, audio 24 with one level, 40 with two levels)" in help)  # --epochs by modality
    image, audio = Images.prior_defaults["label_dropout"], Spectrograms.prior_defaults["label_dropout"]
    label_dropout = f"(default: image {image}, audio {audio})"
    assert options is VQVAEFit or label_dropout in help  # --label-dropout by modality
    assert "(default: fp32)" in help and "(default: 0)" in help  # --precision, --seed
    with pytest.raises(UsageError, match="unknown options epoch; expected some of"):
        options.of(epoch=3)


def _entry_points() -> set[str]:
    """The modules of pipelines/ that run as ``python -m``."""
    return {p.stem for p in PIPELINES.glob("*.py") if 'if __name__ == "__main__":' in p.read_text()}


def test_no_module_of_pipelines_imports_an_entry_point():
    entries = _entry_points()
    assert {"fit_vqvae", "fit_prior", "generate", "quickstart"} <= entries
    imports = []
    for path in PIPELINES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "pipelines":
                imports += [(path.stem, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipelines."):
                imports.append((path.stem, node.module.removeprefix("pipelines.")))
            elif isinstance(node, ast.Import):
                imports += [(path.stem, a.name.removeprefix("pipelines.")) for a in node.names
                            if a.name.startswith("pipelines.")]
    assert imports and [(a, b) for a, b in imports if b in entries] == []


def test_every_console_command_is_an_entry_point_whose_help_shows_defaults(monkeypatch, capsys):
    import importlib
    import sys

    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

    pyproject = tomllib.loads((PIPELINES.parent / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert {value.split(":")[0].removeprefix("pipelines.") for value in scripts.values()} == _entry_points()
    for name, value in scripts.items():
        module, function = value.split(":")
        monkeypatch.setattr(sys, "argv", [name, "--help"])
        with pytest.raises(SystemExit) as exit:
            getattr(importlib.import_module(module), function)()
        assert exit.value.code == 0
        assert f"usage: {name}" in capsys.readouterr().out
