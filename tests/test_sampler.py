import numpy as np
import pytest
import torch

from edgegen.errors import EdgegenError
from edgegen.noise import gaussian_noise
from edgegen.common import num_samples
from edgegen.request import GenerateRequest
from edgegen.sampler import make_noise, pingpong, schedule


def test_eight_step_schedule():
    expected = [1, 0.993307, 0.982014, 0.952574, 0.880797, 0.731059, 0.5, 0.268941, 0]
    np.testing.assert_allclose(schedule(8), expected, atol=1e-6)
    ends = schedule(4, logsnr_max=-5.0, logsnr_min=3.0)
    assert ends[0] == 1 and ends[-1] == 0 and np.isclose(ends[1], 1 / (1 + np.exp(-3.0)))


def test_noise_is_standard_normal_and_seeded():
    a = gaussian_noise(7, (8, 64, 256))
    assert a.dtype == np.float32 and abs(a.mean()) < 0.01 and abs(a.std() - 1) < 0.01
    assert np.array_equal(a, gaussian_noise(7, (8, 64, 256)))
    assert not np.array_equal(a, gaussian_noise(8, (8, 64, 256)))
    # known values pin the algorithm that the C++ runner reimplements
    np.testing.assert_allclose(gaussian_noise(0, (4,)), [0.4634313, 0.7995484, 1.1470288, -0.17745031], rtol=1e-6)


def test_pingpong_uses_noise_in_order():
    """With v = 0 the chain's x0 is x itself, so the output is the last re-noise scaled by (1 - t) terms."""
    noise = torch.arange(3 * 2 * 4, dtype=torch.float32).reshape(3, 2, 4)
    ts = schedule(3)
    seen = []
    out = pingpong(lambda x, t: (seen.append(float(t[0])) or torch.zeros_like(x)), noise, ts)
    assert np.allclose(seen, ts[:3])
    x1 = (1 - ts[1]) * noise[0] + ts[1] * noise[1]
    x2 = (1 - ts[2]) * x1 + ts[2] * noise[2]
    assert torch.allclose(out[0], x2)


def test_generation_reproducible_and_seed_dependent(tiny):
    noise = gaussian_noise(3, (8, 64, tiny.latent_length))
    a = tiny.generate(GenerateRequest("a dog barking", seconds=0.5, noise=noise))
    b = tiny.generate(GenerateRequest("a dog barking", seconds=0.5, noise=noise))
    assert np.array_equal(a, b)
    assert np.array_equal(a, tiny.generate(GenerateRequest("a dog barking", seconds=0.5, seed=3)))
    c = tiny.generate(GenerateRequest("a dog barking", seconds=0.5, seed=4))
    assert a.shape == c.shape == (2, num_samples(0.5, 44100)) and not np.allclose(a, c)


def test_seconds_and_noise_validation(tiny):
    with pytest.raises(EdgegenError, match="out of range"):
        tiny.generate(GenerateRequest("x", seconds=0.0))
    with pytest.raises(EdgegenError, match="out of range"):
        tiny.generate(GenerateRequest("x", seconds=tiny.max_seconds + 0.5))
    with pytest.raises(EdgegenError, match=r"noise has shape \[8, 64, 3\]"):
        tiny.generate(GenerateRequest("x", seconds=0.5, noise=np.zeros((8, 64, 3), np.float32)))


@pytest.mark.parametrize("cfg_scale", [1.0, 4.0])
@torch.no_grad()
def test_cfg_matches_its_definition(tiny, cfg_scale):
    """v = uncond + (cond - uncond) * s, the unconditional branch with zeroed cross tokens (upstream's
    cfg_dropout); at s = 1 that is the plain conditional DiT. Computed here with separate, unbatched calls."""
    noise = make_noise(seed=5, steps=8, channels=64, length=tiny.latent_length)
    ids, mask = tiny.tokenize(["a dog barking"])
    cross, glob = tiny.text_encoder(ids, mask, torch.tensor([0.5]))

    def velocity(x, t):
        cond = tiny.dit(x, t, cross, glob)
        return tiny.dit(x, t, torch.zeros_like(cross), glob) * (1 - cfg_scale) + cond * cfg_scale

    n = num_samples(0.5, tiny.sample_rate)
    expected = tiny.decoder(pingpong(velocity, noise, schedule(8)))[0, :, :n].numpy()
    got = tiny.generate(GenerateRequest("a dog barking", seconds=0.5, noise=noise, cfg_scale=cfg_scale))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4 * np.abs(expected).max())
    if cfg_scale != 1.0:
        assert not np.allclose(got, tiny.generate(GenerateRequest("a dog barking", seconds=0.5,
                                                                  noise=noise)), atol=1e-3)


@pytest.mark.parametrize("seconds", [0.7, 0.1, 0.3, 0.33])
def test_audio_length_is_the_nearest_sample(tiny, seconds):
    """0.7 s at 44.1 kHz is 30870 samples (0.7 * 44100 = 30869.999... in floats): rounded, not truncated."""
    assert num_samples(0.7, 44100) == 30870 and num_samples(1.1, 44100) == 48510 and num_samples(2.3, 44100) == 101430
    wav = tiny.generate(GenerateRequest("x", seconds=seconds, seed=0))
    assert wav.shape == (2, round(seconds * 44100))
    # the maximum: every latent frame's samples
    assert tiny.generate(GenerateRequest("x", seconds=tiny.max_seconds, seed=0)).shape == (2, tiny.latent_length * 2048)
