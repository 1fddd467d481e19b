import pytest
import torch

from audiodenoise.spectral import (
    STFT_PRESETS,
    SpectralConfig,
    frames_to_patches,
    istft,
    low_latency_settings,
    magnitude_to_features,
    overlap_add_patches,
    patch_weights,
    plan_block,
    split_patches,
    stft,
)

CONFIG = SpectralConfig()


def test_defaults_give_128_bins_and_128_frame_patches():
    assert CONFIG.sample_rate == 22050
    assert CONFIG.n_bins == 128
    assert CONFIG.patch_frames == 128


def test_stft_istft_reconstructs_where_the_envelope_is_complete():
    signal = torch.randn(2, 5000)
    spec = stft(signal, CONFIG)
    assert spec.shape[:2] == (2, CONFIG.n_bins)
    back, envelope = istft(spec, CONFIG)
    inner = slice(CONFIG.n_fft, back.shape[-1] - CONFIG.n_fft)
    assert torch.allclose(back[:, inner] / envelope[inner], signal[:, : back.shape[-1]][:, inner], atol=1e-5)


def test_feature_scaling_is_global_log_magnitude():
    magnitude = torch.tensor([1e-6, 1e-3, 0.1, 1.0, 30.0])
    features = magnitude_to_features(magnitude, CONFIG)
    expected = (20 * torch.log10(magnitude.clamp_min(CONFIG.amin)) - CONFIG.db_offset) / CONFIG.db_scale
    assert torch.allclose(features, expected)
    assert torch.isclose(features[0], features[1] - 20 / CONFIG.db_scale)  # below amin, the floor
    # Scaling a patch changes its features by a constant: no per-patch peak normalisation.
    shifted = (magnitude_to_features(magnitude * 10, CONFIG) - features)[1:]  # above the floor
    assert torch.allclose(shifted, torch.full_like(shifted, 20 / CONFIG.db_scale), atol=1e-5)


def test_patch_weights_sum_to_one_at_half_overlap():
    weights = patch_weights(CONFIG)
    half = CONFIG.patch_frames // 2
    assert torch.allclose(weights[:half] + weights[half:], torch.ones(half))


def test_block_plan_covers_every_frame_the_output_needs():
    plan = plan_block(128, 256, CONFIG)
    reach = CONFIG.n_fft // 2 // CONFIG.hop_length + 1
    assert plan.context_first_frame <= 128 - reach - CONFIG.patch_hop
    assert plan.context_last_frame >= 256 + reach + CONFIG.patch_hop
    assert plan.context_first_frame % CONFIG.patch_hop == 0
    frames = plan.context_last_frame - plan.context_first_frame
    assert plan.n_patches == (frames - CONFIG.patch_frames) // CONFIG.patch_hop + 1
    with pytest.raises(ValueError):
        plan_block(10, 256, CONFIG)


def test_split_patches_pads_short_inputs_to_one_patch():
    spec = torch.rand(CONFIG.n_bins, 50)
    patches = split_patches(spec, CONFIG)
    assert patches.shape == (1, CONFIG.n_bins, CONFIG.patch_frames)
    assert torch.equal(patches[0, :, :50], spec)
    assert split_patches(torch.rand(CONFIG.n_bins, 300), CONFIG).shape[0] == 4


def test_patches_overlap_add_back_to_the_frames():
    spec = torch.rand(2, CONFIG.n_bins, 5 * CONFIG.patch_hop)
    patches = frames_to_patches(spec, CONFIG)
    assert patches.shape == (2, 4, CONFIG.n_bins, CONFIG.patch_frames)
    back = overlap_add_patches(patches, spec.shape[-1], CONFIG)
    assert torch.allclose(back[..., 1:], spec[..., 1:], atol=1e-5)  # frame 0 has weight 0 in its only patch


def test_tail_weighting_takes_each_frame_from_exactly_one_patch_and_needs_no_far_context():
    low = low_latency_settings(CONFIG)
    spec = torch.rand(1, CONFIG.n_bins, 20 * low.patch_hop)
    patches = frames_to_patches(spec, low)
    back = overlap_add_patches(patches, spec.shape[-1], low)
    covered = slice(CONFIG.patch_frames - low.patch_hop, None)  # frames at the tail of some patch
    assert torch.allclose(back[..., covered], spec[..., covered], atol=1e-6)
    reach = CONFIG.n_fft // 2 // CONFIG.hop_length + 1
    plan = plan_block(160, 160 + low.patch_hop, low)
    assert plan.context_last_frame == 160 + 2 * low.patch_hop  # the tail holding the last needed frame
    assert plan.context_last_frame >= 160 + low.patch_hop + reach
    assert plan_block(128, 192, CONFIG).context_last_frame == 320  # the cross-fade needs a patch more
    assert low.patch_hop == 16 and low_latency_settings(STFT_PRESETS["long"]).patch_hop == 8  # 46 ms both
    with pytest.raises(ValueError):
        SpectralConfig(patch_weighting="gaussian")
