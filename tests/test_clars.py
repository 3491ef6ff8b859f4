"""CLARS-like optimizer and per-sample gradient norms: exactness against brute force, LARS limit,
update formula, exclusions, accumulation, scale handling, resume, distributed reduction."""

from __future__ import annotations

import os
import tempfile
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gloo_workers import run_workers

from hf_autolr.optim import CLARS, PerSampleGradNorms, available_optimizers, get_optimizer_cls


# ----------------------------------------------------------------------------- models
class Scale(nn.Module):
    """A leaf layer no rule knows: goes through the torch.func fallback."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(d) + 0.1 * torch.randn(d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(x @ self.weight)


class Mixed(nn.Module):
    """Embedding, LayerNorm, RMSNorm, Linear on [B,T,d] (ghost and materialised routes) and on
    [B,d], Conv1d, Conv2d (plain and grouped/strided/reflect-padded), GroupNorm and a custom leaf."""

    def __init__(self, vocab: int = 9, d: int = 6, wide: int = 32, classes: int = 3) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d, padding_idx=0)
        self.ln = nn.LayerNorm(d)
        self.seq_ghost = nn.Linear(d, wide)  # T=5: T (i + o) = 190 < i o = 192 -> ghost norm
        self.rms = nn.RMSNorm(wide)
        self.scale = Scale(wide)
        self.seq_full = nn.Linear(wide, 2)  # T (i + o) = 170 > i o = 64 -> materialised
        self.conv1d = nn.Conv1d(wide, wide, 2)
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.conv_g = nn.Conv2d(4, 4, 3, stride=2, groups=2, padding=1, padding_mode="reflect")
        self.gn = nn.GroupNorm(2, 4)
        self.head = nn.Linear(wide + 2 + 4, classes)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.seq_ghost(self.ln(self.emb(tokens))))
        h = self.scale(self.rms(h))
        a = self.seq_full(h).mean(1)
        t = self.conv1d(h.transpose(1, 2)).mean(2)
        img = self.gn(self.conv_g(torch.relu(self.conv(image)))).mean((2, 3))
        return self.head(torch.cat([t, a, img], 1))


def mixed_batch(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 4, (batch, 5), generator=g)  # few ids: repeats and padding (0)
    image = torch.randn(batch, 2, 6, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (batch,), generator=g)
    return tokens, image, labels


def mixed_model() -> Mixed:
    torch.manual_seed(0)
    return Mixed().double()


def brute_force_norms(model: nn.Module, tokens, image, labels) -> dict[str, torch.Tensor]:
    """mean_i ||grad f_i|| by a loop over samples."""
    params = dict(model.named_parameters())
    per_sample = {k: [] for k in params}
    for i in range(len(labels)):
        loss = F.cross_entropy(model(tokens[i : i + 1], image[i : i + 1]), labels[i : i + 1])
        grads = torch.autograd.grad(loss, list(params.values()))
        for k, g in zip(params, grads):
            per_sample[k].append(g.norm())
    return {k: torch.stack(v).mean() for k, v in per_sample.items()}


# -------------------------------------------------------------- per-sample norms
def test_norms_match_brute_force_on_every_layer_kind():
    model = mixed_model()
    tokens, image, labels = mixed_batch(7)
    expected = brute_force_norms(model, tokens, image, labels)
    with PerSampleGradNorms(model) as tracker:
        F.cross_entropy(model(tokens, image), labels).backward()
    assert tracker.unsupported == {}
    got = tracker.named_norms()
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(float(value), rel=1e-9), name
    assert set(tracker.sample_counts().values()) == {7}
    # contribution norms: sum_i ||c_i|| >= ||grad||, strictly here (samples disagree)
    for param, value in tracker.contribution_norms().items():
        assert float(value) > float(param.grad.norm()) * (1 + 1e-6)


@pytest.mark.parametrize("d_in, d_out", [(4, 3), (12, 16)])  # materialised, ghost norm
def test_linear_routes_and_chunks_match_per_sample_gradients(monkeypatch, d_in, d_out):
    from hf_autolr.optim import per_sample_rules

    g_ = torch.Generator().manual_seed(d_in)
    x = torch.randn(5, 6, d_in, generator=g_, dtype=torch.float64)
    g = torch.randn(5, 6, d_out, generator=g_, dtype=torch.float64)
    expected = torch.einsum("bto,bti->boi", g, x).pow(2).sum((1, 2))
    weight, bias = per_sample_rules.linear_sq_norms(x, g)
    assert torch.allclose(weight, expected, rtol=1e-12)
    assert torch.allclose(bias, g.sum(1).pow(2).sum(1), rtol=1e-12)
    monkeypatch.setattr(per_sample_rules, "TEMP_BYTES", 1)  # one sample per chunk
    assert torch.allclose(per_sample_rules.linear_sq_norms(x, g)[0], expected, rtol=1e-12)


CONVS = {  # name: (layer, input shape); the route follows from the shapes (see per_sample_rules)
    "grouped-backward": (lambda: nn.Conv2d(4, 6, 3, padding=1), (5, 4, 5, 5)),
    "ghost-groups-stride": (lambda: nn.Conv2d(16, 16, 3, stride=2, groups=2, padding=1), (4, 16, 3, 3)),
    "same-reflect-dilated": (lambda: nn.Conv2d(3, 4, (2, 3), dilation=2, padding="same", padding_mode="reflect"), (3, 3, 7, 7)),
    "circular-groups": (lambda: nn.Conv2d(4, 4, 3, groups=4, padding=1, padding_mode="circular"), (3, 4, 4, 4)),
    "conv1d-replicate": (lambda: nn.Conv1d(4, 6, 3, stride=2, padding=2, padding_mode="replicate"), (3, 4, 9)),
    "conv1d-ghost-groups": (lambda: nn.Conv1d(12, 12, 2, groups=3), (4, 12, 2)),
}


@pytest.mark.parametrize("name", CONVS)
def test_conv_rule_matches_per_sample_gradients(name):
    from hf_autolr.optim.per_sample_rules import conv_rule

    torch.manual_seed(6)
    make, shape = CONVS[name]
    conv = make().double()
    x = torch.randn(*shape, dtype=torch.float64)
    g = torch.randn_like(conv(x))
    expected = {"weight": [], "bias": []}
    for i in range(shape[0]):
        grads = torch.autograd.grad((conv(x[i : i + 1]) * g[i : i + 1]).sum(), [conv.weight, conv.bias])
        expected["weight"].append(grads[0].pow(2).sum())
        expected["bias"].append(grads[1].pow(2).sum())
    got = conv_rule(conv, (x,), {}, g, {"weight", "bias"})
    for key in ("weight", "bias"):
        assert torch.allclose(got[key], torch.stack(expected[key]), rtol=1e-10), key


def test_sum_reduction_gives_the_same_mean_norms():
    model = mixed_model()
    tokens, image, labels = mixed_batch(6, seed=1)
    expected = brute_force_norms(model, tokens, image, labels)
    with PerSampleGradNorms(model, loss_reduction="sum") as tracker:
        F.cross_entropy(model(tokens, image), labels, reduction="sum").backward()
    got = tracker.named_norms()
    for name, value in expected.items():
        assert got[name] == pytest.approx(float(value), rel=1e-9), name


def test_two_micro_batches_equal_one_batch_of_their_union():
    model = mixed_model()
    tokens, image, labels = mixed_batch(8, seed=2)
    with PerSampleGradNorms(model) as whole:
        F.cross_entropy(model(tokens, image), labels).backward()
    model.zero_grad()
    with PerSampleGradNorms(model) as split:
        for part in (slice(0, 3), slice(3, 8)):  # unequal micro-batches, loss weighted by share
            loss = F.cross_entropy(model(tokens[part], image[part]), labels[part], reduction="sum") / 8
            loss.backward()
    a, b = whole.named_norms(), split.named_norms()
    for name in a:
        assert b[name] == pytest.approx(a[name], rel=1e-9), name
    assert set(split.sample_counts().values()) == {8}


def test_zero_grad_set_to_none_starts_a_new_accumulation():
    model = mixed_model()
    first, second = mixed_batch(4, seed=3), mixed_batch(4, seed=4)
    with PerSampleGradNorms(model) as tracker:
        F.cross_entropy(model(*first[:2]), first[2]).backward()
        model.zero_grad(set_to_none=True)  # e.g. a skipped step: no consume()
        F.cross_entropy(model(*second[:2]), second[2]).backward()
    expected = brute_force_norms(model, *second)
    for name, value in tracker.named_norms().items():
        assert value == pytest.approx(float(expected[name]), rel=1e-9), name


def test_norms_on_a_tiny_transformers_bert():
    """A real HF model (random init from a config, offline): exact except the position embeddings,
    whose [1, T] output is broadcast over the batch (reported, not guessed)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=40, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        max_position_embeddings=16, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    model = transformers.BertForQuestionAnswering(config).double()
    ids = torch.randint(1, 40, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    start, end = torch.tensor([1, 2, 6]), torch.tensor([3, 4, 6])

    def loss(part):
        labels = dict(start_positions=start[part], end_positions=end[part])
        return model(input_ids=ids[part], attention_mask=mask[part], **labels).loss

    params = dict(model.named_parameters())
    expected = {k: 0.0 for k in params}
    for i in range(3):
        grads = torch.autograd.grad(loss(slice(i, i + 1)), list(params.values()))
        for k, g in zip(params, grads):
            expected[k] += float(g.norm()) / 3
    with pytest.warns(RuntimeWarning, match="broadcast"):
        with PerSampleGradNorms(model) as tracker:
            loss(slice(0, 3)).backward()
    assert list(tracker.unsupported) == ["bert.embeddings.position_embeddings.weight"]
    got = tracker.named_norms()
    assert len(got) == len(params) - 1
    for name, value in got.items():
        # key biases and the last LayerNorm bias have mathematically zero gradients (roundoff only)
        assert value == pytest.approx(expected[name], rel=1e-8, abs=1e-14), name


def test_tied_and_unsupported_parameters_are_reported():
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(5, 4)
            self.out = nn.Linear(4, 5, bias=False)
            self.out.weight = self.emb.weight
            self.bn = nn.BatchNorm1d(4)
            self.attn = nn.MultiheadAttention(4, 1, batch_first=True)

    tracker = PerSampleGradNorms(Tied())
    assert "shared" in tracker.unsupported["emb.weight"]
    assert "batch norm" in tracker.unsupported["bn.weight"]
    assert "submodules" in tracker.unsupported["attn.in_proj_weight"]
    assert "bn.weight" not in tracker.tracked


def test_bad_loss_reduction_is_rejected():
    with pytest.raises(ValueError, match="loss_reduction"):
        PerSampleGradNorms(nn.Linear(2, 2), loss_reduction="avg")


# -------------------------------------------------------------------- CLARS
def mlp() -> nn.Sequential:
    torch.manual_seed(1)
    layers = [nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3)]
    return nn.Sequential(*layers).double()


def regression_batch(batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 5, generator=g, dtype=torch.float64)
    return x, torch.randn(batch, 3, generator=g, dtype=torch.float64)


def lars_reference_step(params, state, lr, momentum, wd, trust):
    """LARS (You et al. 2017, Alg. 1) with lr outside the momentum buffer; 1-D tensors plain SGD."""
    with torch.no_grad():
        for p in params:
            g = p.grad
            if p.ndim > 1:
                w_norm, g_norm = p.norm(), g.norm()
                ratio = trust * w_norm / (g_norm + wd * w_norm)
                g = ratio * (g + wd * p)
            buf = state.setdefault(p, torch.zeros_like(p))
            buf.mul_(momentum).add_(g)
            p.sub_(lr * buf)


def train(model, optimizer, steps, batch, seed=10, before_step=None):
    for k in range(steps):
        x, y = regression_batch(batch, seed + k)
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        if before_step is not None:
            before_step(model)
        optimizer.step()


def test_batch_of_one_matches_lars():
    from pytorch_optimizer import LARS

    hp = dict(lr=0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.02)
    clars_model, lars_model, ref_model = mlp(), mlp(), mlp()
    clars = CLARS(clars_model.parameters(), eps=0.0, **hp)
    clars.attach(clars_model)
    lars = LARS(lars_model.parameters(), **hp)
    train(clars_model, clars, steps=4, batch=1)
    train(lars_model, lars, steps=4, batch=1)
    state: dict = {}
    for k in range(4):
        x, y = regression_batch(1, 10 + k)
        ref_model.zero_grad()
        F.mse_loss(ref_model(x), y).backward()
        lars_reference_step(
            list(ref_model.parameters()), state, hp["lr"], hp["momentum"], hp["weight_decay"], hp["trust_coefficient"]
        )
    for a, b, c in zip(clars_model.parameters(), lars_model.parameters(), ref_model.parameters()):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
        assert torch.allclose(a, c, rtol=1e-10, atol=1e-12)
    assert clars.diagnostics()["clars/coherence_mean"] == pytest.approx(1.0, rel=1e-9)


def test_larger_batch_takes_the_per_sample_step():
    """One step from the same weights: eta_l = gamma ||w|| / mean_i ||grad f_i||, checked against
    a brute-force mean of per-sample norms, and smaller than the LARS step."""
    model = mlp()
    x, y = regression_batch(16, 0)
    params = [p for p in model.parameters() if p.ndim > 1]
    per_sample = {id(p): [] for p in params}
    for i in range(16):
        grads = torch.autograd.grad(F.mse_loss(model(x[i : i + 1]), y[i : i + 1]), params)
        for p, g in zip(params, grads):
            per_sample[id(p)].append(g.norm())
    before = [p.detach().clone() for p in model.parameters()]
    opt = CLARS(model.parameters(), lr=1.0, momentum=0.0, trust_coefficient=0.1, eps=0.0)
    opt.attach(model)
    F.mse_loss(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for p, w0, g in zip(model.parameters(), before, grads):
        if p.ndim > 1:
            n = torch.stack(per_sample[id(p)]).mean()
            assert n > g.norm()
            expected = w0 - 0.1 * w0.norm() / n * g
        else:
            expected = w0 - g  # bias / LayerNorm: plain SGD
        assert torch.allclose(p, expected, rtol=1e-9, atol=1e-12)
    assert 0 < opt.diagnostics()["clars/coherence_mean"] < 1


def test_weight_decay_momentum_and_nesterov_formula():
    """Hand-derived two steps with given per-sample norms n."""
    torch.manual_seed(2)
    w = nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    lr, m, wd, gamma, eps, n = 0.3, 0.8, 0.05, 0.01, 1e-3, 2.5
    for nesterov in (False, True):
        p = nn.Parameter(w.detach().clone())
        opt = CLARS([p], lr=lr, momentum=m, weight_decay=wd, trust_coefficient=gamma, eps=eps, nesterov=nesterov)
        expected = w.detach().clone()
        buf = torch.zeros_like(expected)
        for step in range(2):
            g = torch.full_like(expected, 0.5 * (step + 1))
            p.grad = g.clone()
            opt.set_per_sample_norms({p: n})
            opt.step()
            d = gamma * expected.norm() / (n + wd * expected.norm() + eps) * (g + wd * expected)
            buf = m * buf + d
            expected = expected - lr * ((d + m * buf) if nesterov else buf)
            assert torch.allclose(p.detach(), expected, rtol=1e-12), (nesterov, step)
            assert torch.equal(p.grad, g)  # the gradient is not modified in place


def test_exclusions_and_parameters_without_grad():
    torch.manual_seed(3)
    weight = nn.Parameter(torch.randn(4, 4, dtype=torch.float64))
    bias = nn.Parameter(torch.randn(4, dtype=torch.float64))
    plain = nn.Parameter(torch.randn(4, 4, dtype=torch.float64))
    forced = nn.Parameter(torch.randn(4, dtype=torch.float64))
    unused = nn.Parameter(torch.randn(4, 4, dtype=torch.float64))
    opt = CLARS(
        [
            {"params": [weight, bias, unused]},
            {"params": [plain], "layer_adaptation": False},
            {"params": [forced], "layer_adaptation": True},
        ],
        lr=0.5,
        momentum=0.9,
        weight_decay=0.1,
        trust_coefficient=0.01,
        eps=0.0,
    )
    start = {name: t.detach().clone() for name, t in zip("wbpfu", (weight, bias, plain, forced, unused))}
    for t in (weight, bias, plain, forced):
        t.grad = torch.ones_like(t)
    opt.set_per_sample_norms({weight: 3.0, forced: 3.0})
    opt.step()
    # bias and the layer_adaptation=False weight: plain momentum SGD, no weight decay, ratio 1
    assert torch.allclose(bias, start["b"] - 0.5)
    assert torch.allclose(plain, start["p"] - 0.5)
    # adapted tensors, 2-D by default and 1-D when forced
    for t, key in ((weight, "w"), (forced, "f")):
        w0 = start[key]
        ratio = 0.01 * w0.norm() / (3.0 + 0.1 * w0.norm())
        assert torch.allclose(t, w0 - 0.5 * ratio * (1 + 0.1 * w0))
    assert torch.equal(unused, start["u"]) and unused not in opt.state


def test_missing_norms_raise_and_unsupported_tensors_fall_back_to_lars():
    model = mlp()
    opt = CLARS(model.parameters(), lr=0.1)
    F.mse_loss(model(*regression_batch(4, 0)[:1]), regression_batch(4, 0)[1]).backward()
    with pytest.raises(RuntimeError, match="attach"):
        opt.step()

    class WithAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(4, 1, batch_first=True, bias=False)
            self.out = nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.attn(x, x, x, need_weights=False)[0]).mean((1, 2))

    torch.manual_seed(4)
    net = WithAttention().double()
    x = torch.randn(1, 3, 4, dtype=torch.float64)
    reference = WithAttention().double()
    reference.load_state_dict(net.state_dict())
    opt = CLARS(net.parameters(), lr=0.5, trust_coefficient=0.05, eps=0.0)
    with pytest.warns(RuntimeWarning, match="LARS denominator"):
        opt.attach(net)
    net(x).sum().backward()
    with pytest.warns(RuntimeWarning, match="no per-sample norm"):
        opt.step()
    assert opt.diagnostics()["clars/lars_fallback_tensors"] == 2  # in_proj_weight, out_proj.weight
    from pytorch_optimizer import LARS

    lars = LARS(reference.parameters(), lr=0.5, trust_coefficient=0.05)
    reference(x).sum().backward()
    lars.step()  # batch of one: the per-sample tensors agree with LARS as well
    for a, b in zip(net.parameters(), reference.parameters()):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_step_does_not_depend_on_rescaling_before_step():
    """Clipping / loss-scale unscaling between backward and step is applied to the norms too."""

    def run(scale_grads: float | None, explicit: bool = False):
        torch.manual_seed(5)  # no biases: plain-SGD tensors legitimately depend on the scale
        model = nn.Sequential(nn.Linear(5, 8, bias=False), nn.Tanh(), nn.Linear(8, 3, bias=False)).double()
        opt = CLARS(model.parameters(), lr=0.5, momentum=0.9, trust_coefficient=0.05, eps=0.0)
        opt.attach(model)

        def rescale(m):
            if scale_grads is not None:
                for p in m.parameters():
                    p.grad.mul_(scale_grads)
                if explicit:
                    opt.set_grad_scale(scale_grads)

        train(model, opt, steps=3, batch=8, before_step=rescale)
        return list(model.parameters())

    plain, clipped, told = run(None), run(0.125), run(0.125, explicit=True)
    for a, b, c in zip(plain, clipped, told):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
        assert torch.allclose(a, c, rtol=1e-9, atol=1e-12)


def test_state_dict_round_trip_resumes_identically():
    steps_before, steps_after = 3, 3
    model = mlp()
    opt = CLARS(model.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3, trust_coefficient=0.05)
    opt.attach(model)
    train(model, opt, steps_before, batch=6)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.pt")
        torch.save(opt.state_dict(), path)
        model_state = {k: v.clone() for k, v in model.state_dict().items()}
        train(model, opt, steps_after, batch=6, seed=100)

        resumed = mlp()
        resumed.load_state_dict(model_state)
        fresh = CLARS(resumed.parameters(), lr=1.0)
        fresh.load_state_dict(torch.load(path, weights_only=True))
        fresh.attach(resumed)
        assert fresh.param_groups[0]["lr"] == 0.3
        train(resumed, fresh, steps_after, batch=6, seed=100)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_for_model_builds_an_attached_optimizer():
    model = mlp()
    model[0].bias.requires_grad_(False)
    opt = CLARS.for_model(model, lr=0.2, weight_decay=0.01)
    assert opt.tracker is not None and "0.weight" in opt.tracker.tracked
    assert "0.bias" not in opt.tracker.tracked and "3.weight" not in opt.tracker.tracked  # frozen / 1-D
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters())) - 1
    train(model, opt, steps=2, batch=4)  # norms arrive through the hooks
    opt.detach()
    assert opt.tracker is None


def test_options_are_validated():
    p = [nn.Parameter(torch.zeros(2, 2))]
    with pytest.raises(ValueError, match="'lr'"):
        CLARS(p, lr=-1.0)
    with pytest.raises(ValueError, match="'momentum'"):
        CLARS(p, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="'trust_coefficient'"):
        CLARS(p, lr=0.1, trust_coefficient=0.0)
    with pytest.raises(ValueError, match="'nesterov'"):
        CLARS(p, lr=0.1, momentum=0.0, nesterov=True)


def test_get_optimizer_cls_builds_every_optimizer():
    assert available_optimizers() == ["clars", "lars", "lamb", "adamp"]
    for name in available_optimizers():
        model = mlp()
        cls, defaults = get_optimizer_cls(name)
        opt = cls(model.parameters(), lr=0.01, weight_decay=0.01, **defaults)
        if getattr(cls, "needs_per_sample_norms", False):
            opt.attach(model)
        before = [p.detach().clone() for p in model.parameters()]
        train(model, opt, steps=1, batch=4)
        assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), name
    with pytest.raises(ValueError, match="accepted values"):
        get_optimizer_cls("sgdw")


# -------------------------------------------------------------- distributed
def _distributed_worker(rank: int, out_file: str) -> None:
    model = mixed_model()
    tokens, image, labels = mixed_batch(8, seed=5)
    part = slice(rank * 4, rank * 4 + 4)
    with PerSampleGradNorms(model) as tracker:  # DDP convention: local mean, averaged over ranks
        F.cross_entropy(model(tokens[part], image[part]), labels[part]).backward()
    norms = tracker.named_norms()
    counts = set(tracker.sample_counts().values())

    class NoisyOnRankOne(nn.Module):  # the torch.func rule fails (randomness) on rank 1 only
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.ones(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight + (torch.rand_like(x) if rank == 1 else 0)

    net = nn.Sequential(nn.Linear(2, 3), NoisyOnRankOne())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with PerSampleGradNorms(net) as partial:
            net(torch.randn(4, 2)).sum().backward()
        partial_names = sorted(partial.named_norms())  # must not hang; given up everywhere
    if rank == 0:
        torch.save(
            {
                "norms": norms,
                "counts": counts,
                "expected": brute_force_norms(model, tokens, image, labels),
                "partial": partial_names,
            },
            out_file,
        )


def test_norms_are_reduced_across_processes(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_workers(_distributed_worker, args=(str(tmp_path / "out.pt"),))
    result = torch.load(tmp_path / "out.pt", weights_only=False)
    assert result["counts"] == {8}
    assert result["partial"] == ["0.bias", "0.weight"]
    for name, value in result["expected"].items():
        assert result["norms"][name] == pytest.approx(float(value), rel=1e-9), name
