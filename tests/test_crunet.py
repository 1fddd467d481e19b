"""The causal recurrent complex-mask U-Net (nets/crunet.py): causality, state, bounds, losses and training."""

from __future__ import annotations

import pytest
import soundfile as sf
import torch
from conftest import on_the_fly_train, speech_like, write_corpus

from audiodenoise.checkpoint import load_checkpoint, save_checkpoint
from audiodenoise.cli import main
from audiodenoise.losses import hybrid_loss, overattenuation_loss
from audiodenoise.nets.crunet import CRUNet, CRUNetConfig
from audiodenoise.spectral import STFT_PRESETS, spectrum_parts

SMALL = CRUNetConfig(channels=(4, 8), hidden=8, blocks=1, lookahead_frames=2)
BINS = 128


def trained_looking(config: CRUNetConfig = SMALL) -> CRUNet:
    """A network with random weights and batch-norm statistics, in eval mode."""
    torch.manual_seed(0)
    model = CRUNet(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def spectrum(frames: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, BINS, frames, dtype=torch.complex64, generator=generator)


@torch.no_grad()
def test_blocks_of_any_length_carrying_the_state_give_the_whole_signals_mask():
    model = trained_looking()
    features = model.features(spectrum_parts(spectrum(40)))
    whole, _ = model(features, model.initial_state(1, BINS))
    state, pieces = model.initial_state(1, BINS), []
    for start, stop in [(0, 1), (1, 8), (8, 9), (9, 40)]:
        mask, state = model(features[..., start:stop], state)
        pieces.append(mask)
    assert torch.allclose(torch.cat(pieces, dim=-1), whole, atol=1e-5)


@torch.no_grad()
def test_a_frames_mask_sees_no_further_than_the_lookahead():
    model = trained_looking()
    signal = spectrum(30)
    changed = signal.clone()
    changed[..., 20:] = spectrum(10, seed=1)
    before, after = model.enhance_spectrum(signal), model.enhance_spectrum(changed)
    ahead = SMALL.lookahead_frames
    assert torch.equal(before[..., : 20 - ahead], after[..., : 20 - ahead])
    assert not torch.allclose(before[..., 20 - ahead : 20], after[..., 20 - ahead : 20])


@torch.no_grad()
def test_the_mask_is_bounded_by_one():
    model = trained_looking()
    for module in model.decoder.modules():
        if isinstance(module, torch.nn.ConvTranspose2d):
            module.weight.mul_(100.0)
    signal = spectrum(20)
    ratio = model.enhance_spectrum(signal).abs() / signal.abs()
    assert 0.99 < ratio.max() <= 1 + 1e-6


def test_the_bins_must_halve_once_per_level():
    with pytest.raises(ValueError, match="128 bins do not halve 8 times"):
        CRUNet.check_input(CRUNetConfig(channels=(4,) * 8), STFT_PRESETS["reference"])


def test_the_hybrid_loss_is_zero_only_for_the_clean_spectrum_and_the_shortfall_only_below_it():
    clean = spectrum(10)
    assert hybrid_loss(clean, clean, 0.3) == 0
    assert hybrid_loss(clean * 1j, clean, 0.3) > 0  # the phase counts
    assert overattenuation_loss(clean.abs() * 2, clean.abs(), 0.3) == 0
    assert overattenuation_loss(clean.abs() / 2, clean.abs(), 0.3) > 0


def test_a_checkpoint_round_trips_with_its_architecture(tmp_path):
    model = trained_looking()
    save_checkpoint(tmp_path, model, STFT_PRESETS["reference"])
    loaded, _, config = load_checkpoint(tmp_path)
    assert config["architecture"] == "crunet" and loaded.config == SMALL
    signal = spectrum(12)
    with torch.no_grad():
        assert torch.equal(loaded.enhance_spectrum(signal), model.enhance_spectrum(signal))


def test_it_trains_on_the_fly_and_the_denoiser_runs_the_checkpoint(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    run = tmp_path / "run"
    options = ["--architecture", "crunet", "--channels", "4", "8", "--hidden", "8", "--blocks", "1"]
    options += ["--max-steps", "3", "--waveform-weight", "0.1", "--overattenuation-weight", "10"]
    options += ["--select-by", "val_si_sdr_db", "--max-val-pairs", "4"]
    assert main(on_the_fly_train(corpus, run, *options)) == 0
    model, _, config = load_checkpoint(run / "best")
    assert isinstance(model, CRUNet) and config["info"]["train"]["loss"] == "hybrid"
    assert config["info"]["val_si_sdr_db"] == pytest.approx(config["info"]["val_si_sdr_db"])  # a number, not NaN
    sf.write(tmp_path / "x.wav", speech_like(1.0, 22050), 22050)
    assert main(["denoise", "--model", str(run / "best"), str(tmp_path / "x.wav"), "-o", str(tmp_path / "y.wav")]) == 0
    denoised, rate = sf.read(tmp_path / "y.wav")
    assert rate == 22050 and len(denoised) == 22050 and 0 < abs(denoised).max()


def test_a_run_stopped_early_resumes(tmp_path):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    run = tmp_path / "run"
    options = ["--architecture", "crunet", "--channels", "4", "8", "--hidden", "8", "--blocks", "1", "--max-steps", "2"]
    assert main(on_the_fly_train(corpus, run, *options, "--stop-after", "1")) == 0
    assert main(on_the_fly_train(corpus, run, *options, "--resume")) == 0  # settings as tuples equal the saved lists
    assert load_checkpoint(run / "last")[2]["info"]["step"] == 2


def test_a_prepared_dataset_cannot_train_it(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    dataset = tmp_path / "data"
    prepare = ["prepare", "--speech", str(corpus / "speech"), "--noise", str(corpus / "noise"), "-o", str(dataset)]
    assert main([*prepare, "--val-speakers", "1"]) == 0
    assert main(["train", str(dataset), str(tmp_path / "run"), "--architecture", "crunet", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "a crunet network needs on-the-fly mixing" in err and "Traceback" not in err
