"""Per-observation embeddings of the set encoder: the default is the original MLP, the CNN reads time-major series."""

from __future__ import annotations

import pytest
import torch

import priorfit
from priorfit import AmortizedPosterior
from priorfit.errors import InvalidHyperparameterError
from priorfit.networks.embeddings import MLPEmbedding, TimeSeriesCNN
from priorfit.networks.posterior import SetEncoder
from priorfit.priors.simulators import box_uniform

STEPS, CHANNELS = 32, 2


def test_the_default_embedding_keeps_the_original_parameters():
    """Checkpoints written before embeddings were selectable hold encoder.embed.{0,2}.{weight,bias}."""
    encoder = SetEncoder(3, width=16)
    assert isinstance(encoder.embed, MLPEmbedding)
    shapes = {name: tuple(value.shape) for name, value in encoder.embed.state_dict().items()}
    assert shapes == {"0.weight": (16, 3), "0.bias": (16,), "2.weight": (16, 16), "2.bias": (16,)}
    deeper = SetEncoder(3, width=16, embedding={"kind": "mlp", "hidden": [8, 4]})
    assert [m.out_features for m in deeper.embed if isinstance(m, torch.nn.Linear)] == [8, 4, 16]


def test_the_cnn_reads_a_flattened_trajectory_as_channels_over_time():
    """x = trajectory.reshape(-1) for a (steps, channels) trajectory: the first convolution sees trajectory.T."""
    embedding = TimeSeriesCNN(STEPS * CHANNELS, 16, channels=CHANNELS, filters=[4, 4])
    trajectory = torch.randn(STEPS, CHANNELS)
    seen = []
    embedding.convolutions[0].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    out = embedding(trajectory.reshape(1, 1, -1))
    assert out.shape == (1, 1, 16)
    torch.testing.assert_close(seen[0][0], trajectory.T)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "rnn"}, "kind must be one of"),
        ({"kind": "cnn", "channels": 3}, "does not divide"),
        ({"kind": "cnn", "channels": 2, "filters": [4] * 6}, "too short"),
        ({"kind": "cnn", "channels": 2, "kernel": 4}, "odd"),
        ({"kind": "mlp", "depth": 3}, "unexpected keyword"),
    ],
)
def test_bad_embedding_configs_get_named_errors(config, message):
    with pytest.raises(InvalidHyperparameterError, match=message):
        SetEncoder(STEPS * CHANNELS, width=16, embedding=config)


def bump_series(theta: torch.Tensor) -> torch.Tensor:
    """Channel 0: a bump centred at θ0; channel 1: a ramp of slope θ1; small noise; flattened time-major."""
    times = torch.linspace(0, 1, STEPS)
    bump = torch.exp(-(((times - theta[:, :1]) / 0.08) ** 2))
    ramp = theta[:, 1:] * times
    series = torch.stack([bump, ramp], dim=-1) + 0.05 * torch.randn(theta.shape[0], STEPS, CHANNELS)
    return series.reshape(theta.shape[0], -1)


def test_a_posterior_with_the_cnn_embedding_learns_a_time_series_problem(tmp_path):
    torch.manual_seed(0)
    prior = box_uniform(0.1, 0.9, 2)
    network = {"encoder": {"width": 32, "heads": 2, "layers": 0, "embed_dim": 32}}
    network["encoder"]["embedding"] = {"kind": "cnn", "channels": CHANNELS, "filters": [8, 8]}
    post = AmortizedPosterior(
        "gmm", network=network, max_epochs=30, patience=8, batch_size=64, lr=2e-3, logger=None, progress_bar=False
    )
    post.fit(prior, bump_series, num_simulations=2000)
    theta = prior.sample((40,))
    x = bump_series(theta)
    means = torch.stack([post.sample(x[i : i + 1], 200).mean(0) for i in range(40)])
    error = (means - theta).pow(2).mean(0).sqrt()
    assert (error < 0.1).all(), error  # the prior's sd is 0.23 per coordinate
    path = post.save(tmp_path / "series.safetensors")
    probe = theta[:3]
    torch.testing.assert_close(priorfit.load(path).log_prob(probe, x[:1]), post.log_prob(probe, x[:1]))
