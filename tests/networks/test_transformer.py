import pytest
import torch

from priorfit.errors import PriorfitValidationError
from priorfit.networks import PFNTransformer


def small_net(**kwargs):
    torch.manual_seed(0)
    defaults = dict(max_features=3, num_outputs=7, d_model=32, n_heads=4, n_layers=2, d_ff=64)
    defaults.update(kwargs)
    return PFNTransformer(**defaults).eval()


def inputs(batch=2, n=6, m=5, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, n, d, generator=g),
        torch.randn(batch, n, generator=g),
        torch.randn(batch, m, d, generator=g),
    )


def test_output_shape_and_every_parameter_gets_a_gradient():
    net = small_net().train()
    xc, yc, xq = inputs()
    out = net(xc, yc, xq)
    assert out.shape == (2, 5, 7)
    out.square().mean().backward()
    for name, param in net.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_queries_are_independent_of_each_other():
    net = small_net()
    xc, yc, xq = inputs()
    full = net(xc, yc, xq)
    changed = xq.clone()
    changed[:, 1:] = torch.randn_like(changed[:, 1:]) * 5
    assert torch.allclose(net(xc, yc, changed)[:, 0], full[:, 0], atol=1e-5)
    alone = net(xc, yc, xq[:, 2:3])
    assert torch.allclose(alone[:, 0], full[:, 2], atol=1e-5)


def test_invariant_to_context_permutation_and_equivariant_in_queries():
    net = small_net()
    xc, yc, xq = inputs()
    perm = torch.randperm(xc.shape[1])
    qperm = torch.randperm(xq.shape[1])
    base = net(xc, yc, xq)
    assert torch.allclose(net(xc[:, perm], yc[:, perm], xq), base, atol=1e-5)
    assert torch.allclose(net(xc, yc, xq[:, qperm]), base[:, qperm], atol=1e-5)


def test_context_matters():
    net = small_net()
    xc, yc, xq = inputs()
    assert not torch.allclose(net(xc, yc + 1.0, xq), net(xc, yc, xq))


def test_fewer_features_are_padded():
    net = small_net()
    xc, yc, xq = inputs(d=1)
    assert net(xc, yc, xq).shape == (2, 5, 7)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda xc, yc, xq: (xc.clone().fill_(float("nan")), yc, xq), "x_context contains NaN"),
        (lambda xc, yc, xq: (xc, yc.clone().fill_(float("inf")), xq), "y_context contains NaN"),
        (lambda xc, yc, xq: (xc, yc[:, :-1], xq), "y_context must be"),
        (lambda xc, yc, xq: (xc[0], yc, xq), "x_context must be a"),
        (lambda xc, yc, xq: (xc, yc, xq[..., :1]), "share batch size and Dx"),
        (lambda xc, yc, xq: (torch.randn(2, 6, 4), yc, torch.randn(2, 5, 4)), "too many features"),
        (lambda xc, yc, xq: (xc[:, :0], yc[:, :0], xq), "context is empty"),
    ],
)
def test_bad_input_gets_named_errors(mutate, message):
    net = small_net()
    with pytest.raises(PriorfitValidationError, match=message):
        net(*mutate(*inputs()))


def test_large_query_set_never_builds_a_square_attention_matrix(monkeypatch):
    """1,000 context + 1,000 queries: every attention call takes keys from the 1,000 context points only,
    so the score matrix is (N+M)×N per head, never (N+M)²; the last layer computes the queries only (M×N)."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def recording(q, k, v, *args, **kwargs):
        calls.append((q.shape[-2], k.shape[-2]))
        return original(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    net = small_net(max_features=1, d_model=32, n_heads=4)
    xc, yc, xq = inputs(batch=1, n=1000, m=1000, d=1)
    with torch.no_grad():
        out = net(xc, yc, xq)
    assert out.shape == (1, 1000, 7)
    assert calls == [(2000, 1000)] * (len(net.layers) - 1) + [(1000, 1000)]


def test_the_last_layer_computing_queries_only_changes_nothing():
    """Against every layer run on all tokens and the queries sliced off at the end (the forward before)."""
    net = small_net(max_features=2)
    xc, yc, xq = inputs(batch=3, n=9, m=5, d=2)
    mask = torch.ones(3, 9, dtype=torch.bool)
    mask[1, 6:] = False
    with torch.no_grad():
        for context_mask in (None, mask):
            tokens = torch.cat(
                [net.x_encoder(net._pad(xc)) + net.y_encoder(yc.unsqueeze(-1)), net.x_encoder(net._pad(xq))], 1
            )
            for layer in net.layers:
                tokens = layer(tokens, 9, context_mask)
            expected = net.decoder(net.final_norm(tokens[:, 9:]))
            assert torch.allclose(net(xc, yc, xq, context_mask=context_mask), expected, atol=1e-6)


def test_per_dataset_feature_counts_rescale_like_unpadded_inputs():
    net = small_net(max_features=4)
    xc, yc, xq = inputs(batch=2, d=2)
    padded_c = torch.nn.functional.pad(xc, (0, 2))
    padded_q = torch.nn.functional.pad(xq, (0, 2))
    expected = net(xc, yc, xq)
    got = net(padded_c, yc, padded_q, num_features=torch.tensor([2, 2]))
    assert torch.allclose(got, expected, atol=1e-6)
    mixed = net(padded_c, yc, padded_q, num_features=torch.tensor([2, 1]))
    assert torch.allclose(mixed[0], expected[0], atol=1e-6) and not torch.allclose(mixed[1], expected[1])
