"""Smoke tests of the benchmark scripts on their smallest settings: they run and write the JSON they promise.

No timing is asserted (only that every duration is positive): the numbers belong in BENCHMARKS.md, not in tests.
"""

import importlib.util
import json
import shutil
import statistics
from pathlib import Path

import pytest
import torch

from vqvae_prior.checkpoint import save_checkpoint, weights_digest
from vqvae_prior.prior import GatedPixelCNN, PriorConfig
from vqvae_prior.training.steps import MixedPrecision
from vqvae_prior.vqvae import VQVAE, VQVAEConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def benchmarks(monkeypatch):
    """The ``benchmarks`` package, importable from the repository root (it is not installed)."""
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks.copying
    import benchmarks.first_layer
    import benchmarks.fit_step
    import benchmarks.fused_kernel
    import benchmarks.loading
    import benchmarks.pipeline
    import benchmarks.pretrained
    import benchmarks.prior_step
    import benchmarks.processes
    import benchmarks.profile_sampler
    import benchmarks.sampling
    import benchmarks.sampling_baseline
    import benchmarks.training
    import benchmarks.vqvae_step

    return benchmarks


@pytest.fixture
def tiny_checkpoints(tmp_path):
    """A tiny VQ-VAE (28x28 -> 7x7 codes, K=8) and a conditional prior fitted (here: built) on its codes."""
    vqvae = VQVAE(VQVAEConfig(channels=8, residual_channels=4, code_dim=4, codebook_size=8))
    prior = GatedPixelCNN(PriorConfig(codebook_size=8, num_classes=2, channels=4, num_layers=2, head_channels=8))
    save_checkpoint(tmp_path / "vqvae.pt", "vqvae", vqvae, data={"name": "tiny", "sample_shape": [1, 28, 28]})
    save_checkpoint(tmp_path / "prior.pt", "prior", prior, codebook_size=8, label_names=["a", "b"], code_shape=[7, 7],
                    vqvae=str(tmp_path / "vqvae.pt"), vqvae_digest=weights_digest(vqvae.state_dict()))
    return tmp_path / "vqvae.pt", tmp_path / "prior.pt"


def test_sampling_main_writes_its_table(benchmarks, tiny_checkpoints, tmp_path):
    vqvae, prior = tiny_checkpoints
    out = tmp_path / "sampling.json"
    args = benchmarks.sampling.get_args_parser().parse_args([
        "--grids", "7x7", "--batches", "1", "--reference-positions", "1", "--check-grid", "2x2", "--check-batch",
        "1", "--min-time", "0", "--device", "cpu", "--vqvae", str(vqvae), "--prior", str(prior), "--n", "4",
        "--runs", "1", "--out", str(out),
    ])
    result = benchmarks.sampling.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["prior"]["codebook_size"] == 256 and result["prior"]["num_classes"] == 10
    assert result["check"]["positions"] == 4 and result["check"]["P"] == 1
    (cell,) = result["cells"]
    assert cell["grid"] == [7, 7] and cell["batch"] == 1
    assert cell["reference_positions"] == 1 and cell["extrapolated"]
    assert cell["reference_s_per_sample"] > 0 and cell["cached_s_per_sample"] > 0
    ref, cached = cell["reference_runs"], cell["cached_runs"]
    assert len(ref) == len(cached) == 3  # --rounds 3 (the default), interleaved, --min-time 0
    assert cell["speedup"] == pytest.approx(statistics.median([r / t for r, t in zip(ref, cached)]))
    passes = [49 * t / r for r, t in zip(ref, cached)]
    assert cell["cached_in_full_passes"] == pytest.approx(statistics.median(passes))
    assert cell["cached_full_passes_range"] == pytest.approx([min(passes), max(passes)])
    assert "| 7x7 | 1 | 3 |" in result["table"] and "*" in result["table"]  # 3 rounds
    assert f"({min(passes):.2f} to {max(passes):.2f})" in result["table"]
    gen = result["generate"]
    assert gen["n"] == 4 and gen["code_shape"] == [7, 7]
    assert gen["end_to_end_seconds"] > 0 and gen["sample_seconds"] > 0 and gen["decode_seconds"] > 0


def test_sampling_main_without_check(benchmarks, tmp_path):
    args = benchmarks.sampling.get_args_parser().parse_args([
        "--grids", "3x3", "--batches", "1", "--reference-positions", "1", "--check-batch", "0", "--min-time", "0",
        "--device", "cpu", "--methods", "cached", "cached-eager", "--out", str(tmp_path / "sampling.json"),
    ])
    result = benchmarks.sampling.main(args)
    assert result["check"] is None and "generate" not in result
    assert result["table"].endswith("extrapolated linearly to h*w.")
    (cell,) = result["cells"]
    for name in ("cached", "cached-eager"):  # a column of each (on the CPU both run eagerly)
        assert cell[f"{name}_s_per_sample"] > 0 and f"{name}, in full passes" in result["table"]
        ratios = [r / t for r, t in zip(cell["reference_runs"], cell[f"{name}_runs"])]  # round by round
        assert cell[f"{name}_speedup"] == pytest.approx(statistics.median(ratios))
    assert benchmarks.sampling.stepwise.CUDA_GRAPHS  # restored after the eager column


def test_sampling_main_needs_both_checkpoints(benchmarks, tmp_path):
    args = benchmarks.sampling.get_args_parser().parse_args(["--vqvae", "x.pt", "--out", str(tmp_path / "s.json")])
    with pytest.raises(ValueError, match="both --vqvae and --prior"):
        benchmarks.sampling.main(args)


def test_copying_main_checks_both_sides_find_the_same_nearest_maps(benchmarks, tmp_path):
    train = torch.randint(0, 8, (1, 40, 3, 4), generator=torch.Generator().manual_seed(0))  # (S, N, h, w)
    codes = {"train": (train, torch.zeros(40)), "test": (train[0, :6].clone(), torch.zeros(6))}
    torch.save(codes, tmp_path / "codes-x.pt")
    shutil.copytree(ROOT / "vqvae_prior", tmp_path / "baseline" / "vqvae_prior")  # a baseline folder: this package
    out = tmp_path / "copying.json"
    result = benchmarks.copying.main(benchmarks.copying.get_args_parser().parse_args([
        "--codes", str(tmp_path / "codes-x.pt"), "--queries", "5", "--baseline", str(tmp_path / "baseline"),
        "--rounds", "1", "--out", str(out)]))
    assert result["maps"] == {"train": [40, 3, 4], "queries": [5, 3, 4]} and result["mean_distance"] == 0.0
    assert json.loads(out.read_text())["table"] == result["table"] and result["speedup"] > 0


def test_training_main_writes_its_table(benchmarks, tmp_path):
    out = tmp_path / "training.json"
    args = benchmarks.training.get_args_parser().parse_args([
        "--vqvae-shapes", "1x32x32", "--prior-grids", "7x7", "--batch-size", "1", "--warmup", "0", "--steps", "1",
        "--downsample", "8", "--dropout", "0.5", "--device", "cpu", "--precision", "fp32", "bf16",
        "--out", str(out),
    ])
    result = benchmarks.training.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [(r["model"], r["input"], r["precision"], r["unit"]) for r in result["runs"]] == [
        ("VQ-VAE", [1, 32, 32], "fp32", "images/s"), ("prior", [7, 7], "fp32", "code maps/s"),
        ("VQ-VAE", [1, 32, 32], "bf16", "images/s"), ("prior", [7, 7], "bf16", "code maps/s")]
    for run in result["runs"]:
        assert run["batch"] == 1 and len(run["step_runs"]) == 1
        assert run["per_second"] == pytest.approx(1 / run["step_seconds"])
    assert result["table"].count("\n") == 5  # header, rule, four rows


def test_training_main_prior_only_at_another_size(benchmarks, tmp_path, monkeypatch):
    sizes = []
    record = lambda config: sizes.append(config) or GatedPixelCNN(config)  # noqa: E731
    monkeypatch.setattr(benchmarks.training, "GatedPixelCNN", record)
    args = benchmarks.training.get_args_parser().parse_args([
        "--vqvae-shapes", "--prior-grids", "4x4", "--prior-layers", "3", "--prior-head", "32", "--prior-codebook",
        "16", "--batch-size", "2", "--warmup", "0", "--steps", "1", "--device", "cpu",
        "--out", str(tmp_path / "t.json"),
    ])
    result = benchmarks.training.main(args)
    assert [(r["model"], r["input"]) for r in result["runs"]] == [("prior", [4, 4])]
    assert (sizes[0].num_layers, sizes[0].head_channels, sizes[0].codebook_size) == (3, 32, 16)


@pytest.mark.torchrun
def test_processes_main_runs_each_fit_under_torchrun(benchmarks, tmp_path, digit_folder):
    out = tmp_path / "processes.json"
    args = benchmarks.processes.get_args_parser().parse_args([
        "--processes", "1", "--threads", "1", "--dataset", "image-folder", "--data-root", str(digit_folder),
        "--epochs", "1", "--out", str(out)])
    result = benchmarks.processes.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [(r["model"], r["processes"]) for r in result["runs"]] == [("VQ-VAE", 1), ("prior", 1)]
    assert all(r["per_second"] == pytest.approx(result["train_items"] / r["train_seconds"]) for r in result["runs"])


@pytest.mark.slow  # three new processes that load torch and the shipped models: 25 s on 2 cores
@pytest.mark.skipif(shutil.which("/usr/bin/time") is None, reason="needs /usr/bin/time (Debian: apt-get install time)")
def test_pretrained_main_times_each_command_in_a_new_process(benchmarks, tmp_path):
    out = tmp_path / "pretrained.json"
    result = benchmarks.pretrained.main(benchmarks.pretrained.get_args_parser().parse_args([
        "--rounds", "1", "--out", str(out)]))
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert all(len(runs) == 1 and runs[0] > 0 for runs in result["seconds"].values())
    assert all(gb[0] > 0.1 for gb in result["peak_gb"].values())  # torch alone is more
    assert list(result["fsdd_parts_seconds"]) == ["import torch", "import vqvae_prior", "from_pretrained",
                                                  "sample the codes", "the whole call"]


def test_loading_main_times_each_file_and_its_training_sibling(benchmarks, tiny_checkpoints, tmp_path):
    vqvae, prior = tiny_checkpoints
    torch.save(torch.load(prior, weights_only=True), prior.with_name("prior-last.pt"))  # a -last sibling for prior
    out = tmp_path / "loading.json"
    args = benchmarks.loading.get_args_parser().parse_args([
        "--checkpoints", str(vqvae), str(prior), "--runs", "2", "--out", str(out)])
    result = benchmarks.loading.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert [(Path(r["path"]).name, r["file"]) for r in result["runs"]] == [
        ("vqvae.pt", "inference"), ("prior.pt", "inference"), ("prior-last.pt", "training")]
    assert all(len(r["load_runs"]) == 2 and r["seconds"] > 0 for r in result["runs"])


def test_profile_sampler_main_reports_each_batch(benchmarks, capsys):
    parser = benchmarks.profile_sampler.get_args_parser()
    args = parser.parse_args(["--grid", "2x2", "--batches", "1", "2", "--rows", "3"])
    benchmarks.profile_sampler.main(args)
    out = capsys.readouterr().out
    assert "=== 2x2, batch 1:" in out and "=== 2x2, batch 2:" in out
    assert out.count("ATen operator calls per position") == 2 and out.count("arithmetic floor") == 2


def test_pipeline_main_times_generate_and_the_loaded_pipeline(benchmarks, tmp_path):
    """This tree as its own baseline: the baseline's generate() runs in a fresh process on the checkpoints it wrote,
    and the loaded pipeline returns its codes and images bit for bit."""
    out = tmp_path / "pipeline.json"
    args = benchmarks.pipeline.get_args_parser().parse_args([
        "--baseline", str(ROOT), "--n", "2", "--runs", "1", "--threads", "1", "--out", str(out)])
    result = benchmarks.pipeline.main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for name in ("baseline", "generate", "pipeline"):
        assert len(result[name]["runs"]) == 1 and result[name]["median_seconds"] > 0
    assert result["bit_identical"] == {"to": "baseline", "codes": True, "images": True}
    assert result["table"].count("\n") == 4  # header, rule, three rows


def test_pipeline_main_refuses_a_folder_that_is_no_checkout(benchmarks, tmp_path):
    args = benchmarks.pipeline.get_args_parser().parse_args(["--baseline", str(tmp_path)])
    with pytest.raises(ValueError, match="expected a checkout of vqvae_prior"):
        benchmarks.pipeline.main(args)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed")
def test_fused_kernel_main_times_each_batch_and_warp_count(benchmarks, tmp_path):
    args = benchmarks.fused_kernel.get_args_parser().parse_args([
        "--grid", "2x3", "--batches", "1", "17", "--warps", "4", "--launches", "2", "--steps", "1",
        "--out", str(tmp_path / "k.json"),
    ])
    result = benchmarks.fused_kernel.main(args)  # in Triton's interpreter without CUDA (conftest)
    assert [(r["batch"], r["num_warps"], r["precision"]) for r in result["runs"]] == [(1, 4, "ieee"), (17, 4, "ieee")]
    assert all(r["launch_seconds"] > 0 for r in result["runs"])


def test_first_layer_main_times_both_paths_interleaved(benchmarks, tmp_path):
    args = benchmarks.first_layer.get_args_parser().parse_args([
        "--grids", "3x4", "--rounds", "2", "--batch-size", "2", "--layers", "2", "--head", "16", "--codebook", "8",
        "--device", "cpu", "--out", str(tmp_path / "f.json"),
    ])
    result = benchmarks.first_layer.main(args)
    (run,) = result["runs"]
    assert run["grid"] == [3, 4] and len(run["codes_runs"]) == len(run["embeddings_runs"]) == 2
    assert run["speedup"] == pytest.approx(run["embeddings_step_seconds"] / run["codes_step_seconds"])


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="benchmarks.prior_step reads its baseline from git history")
def test_sampling_baseline_times_both_cached_samplers_and_a_forward_pass(benchmarks, tmp_path):
    args = benchmarks.sampling_baseline.get_args_parser().parse_args([
        "--baseline", "HEAD", "--grids", "2x3", "--batches", "1", "2", "--rounds", "2", "--min-time", "0",
        "--device", "cpu", "--out", str(tmp_path / "s.json"),
    ])
    result = benchmarks.sampling_baseline.main(args)
    assert [(c["grid"], c["batch"]) for c in result["cells"]] == [([2, 3], 1), ([2, 3], 2)]
    for cell in result["cells"]:
        assert cell["same_codes"]
        assert len(cell["this_runs"]) == len(cell["baseline_runs"]) == len(cell["forward_runs"]) == 2
        passes = [t / f for t, f in zip(cell["this_runs"], cell["forward_runs"])]
        assert cell["this_in_full_passes"] == pytest.approx(statistics.median(passes))
    assert json.loads((tmp_path / "s.json").read_text())["table"] == result["table"]


def test_prior_step_times_a_baseline_commit_beside_this_checkout(benchmarks, tmp_path):
    args = benchmarks.prior_step.get_args_parser().parse_args([
        "--baseline", "HEAD", "--grids", "3x4", "--rounds", "3", "--batch-size", "2", "--layers", "2", "--head",
        "16", "--codebook", "8", "--device", "cpu", "--out", str(tmp_path / "p.json"),
    ])
    result = benchmarks.prior_step.main(args)
    (run,) = result["runs"]
    assert len(run["this_runs"]) == len(run["baseline_runs"]) == 3
    assert run["first_losses"]["this"] == pytest.approx(run["first_losses"]["baseline"], rel=1e-5)
    import vqvae_prior.prior  # the baseline's modules were imported under the same name and put aside

    assert Path(vqvae_prior.prior.__file__).parent == ROOT / "vqvae_prior"
    args.baseline = "no-such-revision"
    with pytest.raises(ValueError, match="--baseline 'no-such-revision': neither a folder"):
        benchmarks.prior_step.main(args)
    shutil.copytree(ROOT / "vqvae_prior", tmp_path / "baseline" / "vqvae_prior")  # a folder, as on a GPU machine
    args.baseline = str(tmp_path / "baseline")
    (run,) = benchmarks.prior_step.main(args)["runs"]
    assert run["first_losses"]["this"] == pytest.approx(run["first_losses"]["baseline"], rel=1e-5)


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="benchmarks.vqvae_step reads its baseline from git history")
def test_vqvae_step_times_a_baseline_commit_beside_this_checkout(benchmarks, tmp_path):
    args = benchmarks.vqvae_step.get_args_parser().parse_args([
        "--baseline", "HEAD", "--shapes", "1x8x8", "3x8x4", "--downsample", "2", "4", "--batch-size", "2", "3",
        "--rounds", "2", "--device", "cpu", "--out", str(tmp_path / "v.json"),
    ])
    result = benchmarks.vqvae_step.main(args)
    assert [(run["shape"], run["batch_size"]) for run in result["runs"]] == [([1, 8, 8], 2), ([3, 8, 4], 3)]
    for run in result["runs"]:
        assert len(run["this_runs"]) == len(run["baseline_runs"]) == 2
        assert run["first_losses"]["this"] == pytest.approx(run["first_losses"]["baseline"], rel=1e-5)
    args.batch_size = [2]
    with pytest.raises(ValueError, match="--batch-size: one per shape"):
        benchmarks.vqvae_step.main(args)


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="benchmarks.fit_step reads its baseline from git history")
def test_fit_step_times_each_side_in_processes_of_its_own(benchmarks, tmp_path):
    argv = ["--baseline", "HEAD", "--model", "prior", "--grids", "3x4", "--rounds", "1", "--steps", "1",
            "--batch-size", "2", "--layers", "2", "--head", "16", "--codebook", "8", "--threads", "1",
            "--out", str(tmp_path / "f.json")]
    result = benchmarks.fit_step.main(benchmarks.fit_step.get_args_parser().parse_args(argv))
    (run,) = result["runs"]
    assert run["case"] == "3x4" and len(run["this_runs"]) == len(run["baseline_runs"]) == 1  # a process per side
    assert run["speedup"] == pytest.approx(run["baseline_step_seconds"] / run["this_step_seconds"])


def test_fit_step_autocasts_this_sides_forward_pass_at_its_precision(benchmarks):
    """--precision bf16: this checkout's forward pass under bf16 autocast, in its worker processes too."""
    a = torch.randn(4, 4)
    cpu = torch.device("cpu")
    assert benchmarks.fit_step.under(MixedPrecision("bf16", cpu), lambda: a @ a)().dtype == torch.bfloat16
    assert benchmarks.fit_step.under(MixedPrecision("fp32", cpu), lambda: a @ a)().dtype == torch.float32
    args = benchmarks.fit_step.get_args_parser().parse_args(["--precision", "bf16"])
    argv = benchmarks.fit_step.worker_command(args, "this", 0)
    assert argv[argv.index("--precision") + 1] == "bf16"
