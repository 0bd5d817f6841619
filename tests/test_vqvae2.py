"""The two-level VQ-VAE: shape contracts (non-square included), decode_levels(encode_levels(x)) == the forward
reconstruction, both levels shape the output and both encoders learn, older VQ-VAE checkpoints naming no architecture, the level
interface of the one-level VQ-VAE, and fit_vqvae --levels 2 (its refusals too). Saving and loading both models:
test_vqvae.py; a two-level fit of recordings: test_audio_pipeline.py; --resume with another --levels:
test_reliability.py."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fits import VQVAE_16_CODES, logged, run_vqvae
from vqvae_prior import VQVAE2, VQVAE2Config
from vqvae_prior.checkpoint import CheckpointError, load_checkpoint, load_vqvae, save_checkpoint
from vqvae_prior.errors import UsageError
from vqvae_prior.training import VQVAEFit
from vqvae_prior.vqvae import VQVAE, VQVAEConfig

SMALL = {"channels": 16, "residual_channels": 8, "code_dim": 4, "codebook_size": 16}


def tiny_vqvae2(**kw) -> VQVAE2:
    return VQVAE2(VQVAE2Config(**{**SMALL, "downsample": 2, **kw}))


@pytest.mark.parametrize(
    "in_channels,shape,downsample,top,bottom",
    [(1, (28, 28), 2, (7, 7), (14, 14)), (3, (32, 24), 4, (4, 3), (8, 6)), (1, (80, 64), 4, (10, 8), (20, 16))],
)
def test_shapes(in_channels, shape, downsample, top, bottom):
    model = tiny_vqvae2(in_channels=in_channels, downsample=downsample)
    x = torch.rand(2, in_channels, *shape)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert [tuple(i.shape) for i in out.level_indices] == [(2, *top), (2, *bottom)]
    assert out.indices is out.level_indices[1] and out.perplexity is out.level_perplexities[1]
    assert model.levels == 2 and model.code_shape(x.shape[1:]) == bottom
    assert model.level_shapes(bottom) == [top, bottom] and model.decoded_shape(bottom) == x.shape[1:]
    model.eval()
    codes = model.encode_levels(x)
    assert [tuple(c.shape) for c in codes] == [(2, *top), (2, *bottom)]
    torch.testing.assert_close(model.decode_levels(codes), model(x).reconstruction)
    assert [torch.equal(a, b) for a, b in zip(codes, model(x).level_indices)] == [True, True]


def test_both_levels_shape_the_output():
    model = tiny_vqvae2()
    model(torch.rand(8, 1, 16, 16))  # initializes both codebooks from encoder outputs
    model.eval()
    top, bottom = model.encode_levels(torch.rand(2, 1, 16, 16))
    decoded = model.decode_levels((top, bottom))
    assert not torch.allclose(model.decode_levels(((top + 1) % 16, bottom)), decoded)
    assert not torch.allclose(model.decode_levels((top, (bottom + 1) % 16)), decoded)
    # the bottom codes are chosen given the top ones: other top codes, other bottom codes for the same input
    features = model.encoder_bottom(torch.rand(2, 1, 16, 16))
    z_top = model.quantizer_top.decode(top)
    assert not torch.allclose(model._bottom_code(features, z_top), model._bottom_code(features, -z_top))


@pytest.mark.parametrize("ema", [True, False])
def test_gradients_reach_both_encoders_and_every_codebook_learned_by_its_loss(ema):
    model = tiny_vqvae2(ema=ema)
    model(torch.rand(4, 1, 16, 16)).loss.backward()
    for part in (model.encoder_bottom, model.encoder_top, model.decoder_top, model.to_code_bottom,
                 model.upsample_top, model.decoder):
        grads = [p.grad for p in part.parameters()]
        assert all(g is not None for g in grads) and any(bool(g.abs().sum() > 0) for g in grads), part
    for quantizer in (model.quantizer_top, model.quantizer_bottom):
        assert (quantizer.codebook.grad is not None and bool(quantizer.codebook.grad.abs().sum() > 0)) != ema


def test_each_level_has_its_own_quantizer_state():
    model = tiny_vqvae2()
    model(torch.rand(4, 1, 16, 16))
    assert bool(model.quantizer_top.initialized) and bool(model.quantizer_bottom.initialized)
    assert not torch.equal(model.quantizer_top.codebook, model.quantizer_bottom.codebook)
    assert model.quantizer_top.usage.sum() > 0 and model.quantizer_bottom.usage.sum() > 0


def test_bad_inputs_and_code_maps_are_refused():
    model = tiny_vqvae2().eval()
    with pytest.raises(ValueError, match=r"divisible by 4 \(the top level's downsampling: 2 x downsample=2\), got "
                                         r"\(28, 30\)"):
        model(torch.rand(1, 1, 28, 30))
    with pytest.raises(ValueError, match=r"expected input \(B, 1, H, W\)"):
        model.encode_levels(torch.rand(1, 3, 28, 28))
    top, bottom = model.encode_levels(torch.rand(2, 1, 16, 12))
    with pytest.raises(ValueError, match="expected 2 code map"):
        model.decode_levels((bottom,))
    with pytest.raises(ValueError, match=r"\(2, 8, 6\)\] do not fit together.*needs \[\(2, 4, 3\), \(2, 8, 6\)\]"):
        model.decode_levels((top[:, :3], bottom))
    with pytest.raises(ValueError, match=r"expected code maps \(B, h, w\)"):
        model.decode_levels((top, bottom[0]))
    with pytest.raises(ValueError, match="even height and width"):
        model.level_shapes((7, 7))
    assert not hasattr(model, "encode") and not hasattr(model, "decode_indices")  # the level methods only


def test_the_one_level_vqvae_answers_the_level_interface():
    model = VQVAE(VQVAEConfig(**SMALL)).eval()
    x = torch.rand(2, 1, 12, 8)
    (codes,) = model.encode_levels(x)
    assert model.levels == 1 and torch.equal(codes, model.encode(x))
    assert model.level_shapes((3, 2)) == [(3, 2)] and model.code_shape((1, 12, 8)) == (3, 2)
    assert torch.equal(model.decode_levels([codes]), model.decode_indices(codes))
    out = model(x)
    assert len(out.level_indices) == 1 and out.level_indices[0] is out.indices
    assert out.level_perplexities == (out.perplexity,)
    with pytest.raises(ValueError, match="expected 1 code map"):
        model.decode_levels((codes, codes))


def test_a_vqvae_checkpoint_naming_no_architecture_loads_as_the_one_level_vqvae(tmp_path):
    model = VQVAE(VQVAEConfig(**SMALL)).eval()
    save_checkpoint(tmp_path / "vq.pt", "vqvae", model)
    assert load_checkpoint(tmp_path / "vq.pt")["arch"] == "vqvae"
    older = torch.load(tmp_path / "vq.pt", weights_only=True)
    del older["arch"]  # as VQ-VAE checkpoints were written before two-level ones existed
    torch.save(older, tmp_path / "older.pt")
    loaded, payload = load_vqvae(tmp_path / "older.pt")
    assert type(loaded) is VQVAE and payload["arch"] == "vqvae"
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded.encode(x), model.encode(x))
    torch.save({**older, "arch": "vqvae3"}, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match=r"unknown\.pt: unknown VQ-VAE architecture 'vqvae3'; registered: "
                                              r"vqvae, vqvae2 \(add one to vqvae_prior\.registry\.AUTOENCODERS\)"):
        load_vqvae(tmp_path / "unknown.pt")
    two = dataclasses.asdict(tiny_vqvae2().config)
    torch.save({**older, "arch": "vqvae2", "config": two}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="do not fit the vqvae its config describes"):
        load_vqvae(tmp_path / "mixed.pt")


# ---------------------------------------------------------------------------------------------- fit_vqvae --levels 2

LEVEL_METRICS = ("perplexity", "codes_used", "top_perplexity", "top_codes_used")


def test_fit_vqvae_with_two_levels_logs_both_levels_and_saves_a_vqvae2(digit_folder, tmp_path):
    """28 x 28 digits at --downsample 2: 14 x 14 bottom codes, 7 x 7 top codes."""
    metrics = run_vqvae(tmp_path, "--dataset", "image-folder", "--data-root", str(digit_folder), "--batch-size", "16",
                        *VQVAE_16_CODES, "--levels", "2", "--downsample", "2")
    (line,) = logged(tmp_path)
    for key in [f"{split}_{stat}" for split in ("train", "test") for stat in LEVEL_METRICS]:
        assert 0 < line[key] <= 16, key
    assert line == metrics and line["test_mse"] < 0.2
    model, payload = load_vqvae(tmp_path / "vqvae.pt")
    assert type(model) is VQVAE2 and payload["arch"] == "vqvae2" and payload["args"]["levels"] == 2
    assert model.config.downsample == 2 and load_checkpoint(tmp_path / "vqvae-last.pt")["arch"] == "vqvae2"
    x = torch.rand(2, 1, 28, 28)
    assert [tuple(c.shape) for c in model.encode_levels(x)] == [(2, 7, 7), (2, 14, 14)]
    assert (tmp_path / "reconstructions.png").stat().st_size > 0


def test_one_level_fits_log_no_top_level(digit_folder_fit):
    assert not any("top" in key for key in digit_folder_fit.vqvae_metrics)
    assert load_checkpoint(digit_folder_fit.vqvae)["args"]["levels"] == 1  # the images' default


def test_bad_levels_and_sizes_are_refused_before_any_work(digit_folder, tmp_path):
    with pytest.raises(UsageError, match="^--levels 3 is not one of 1, 2$"):
        VQVAEFit.of(levels=3).resolved()
    with pytest.raises(SystemExit):  # argparse: invalid choice
        run_vqvae(tmp_path, "--levels", "3")
    # 28 x 28 digits and --downsample 4: the top level would be at 8
    with pytest.raises(UsageError, match=r"^--dataset image-folder \(items \(1, 28, 28\)\) does not fit --levels 2 "
                                         r"--downsample 4: input height and width must be divisible by 8 \(the top "
                                         r"level's downsampling: 2 x downsample=4\), got \(28, 28\)$"):
        run_vqvae(tmp_path, "--dataset", "image-folder", "--data-root", str(digit_folder), "--levels", "2",
                  "--downsample", "4")
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".pt", ".jsonl", ".png")]
