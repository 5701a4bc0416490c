"""Server-side custom losses (SDK 0.38's ServiceClient.create_custom_loss), driven by the real `tinker` SDK
against a real `openrl serve` on the real SmolLM2-135M-Instruct. The SDK traces a torch loss with torch.fx and
uploads the graph; forward_backward then names it by loss_id and the server runs it under autograd. The
reference is the SDK's own client-side path for the very same traced graph (a LossHandle without a loss_id:
forward, the loss and its gradient on the client, then a linear surrogate backward on the server)."""
import dataclasses
import math
import os

import httpx
import numpy as np
import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("TINKER_TELEMETRY", "0")
from tinker import types  # noqa: E402
from tinker.lib.public_interfaces.custom_loss import encode_graph, run_loss_handle  # noqa: E402

from tinker.proto import tinker_public_pb2  # noqa: E402
from tinker_server import SMOLLM2_NAME, Server, create_key, service_client  # noqa: E402

TEXTS = ["The capital of France is Paris, a city on the Seine.",
         "Bees make honey from the nectar of flowers in summer.",
         "A spider has eight legs and spins a web of silk."]
ADAM = types.AdamParams(learning_rate=2e-3)


@pytest.fixture(scope="module")
def tokenizer(svc):
    return svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4).result().get_tokenizer()


def scalar(v):
    return types.TensorData(data=[float(v)], dtype="float32", shape=[])


def floats(t):
    return types.TensorData(data=t.tolist(), dtype="float32", shape=list(t.shape))


def make_data(tokenizer, seed, **scalars):
    """One datum per text with weights, sampler logprobs and advantages (and per-datum scalars)."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for i, text in enumerate(TEXTS):
        ids = tokenizer(text, add_special_tokens=False).input_ids
        n = len(ids) - 1
        inputs = {"target_tokens": ids[1:],
                  "weights": floats((torch.rand(n, generator=g) > 0.2).float()),
                  "sampler_logprobs": floats(-torch.rand(n, generator=g) * 4),
                  "advantages": floats(torch.randn(n, generator=g))}
        for name, values in scalars.items():
            inputs[name] = scalar(values[i])
        data.append(types.Datum(model_input=types.ModelInput.from_ints(ids[:-1]), loss_fn_inputs=inputs))
    return data


def ce_only(data):
    """The data with just what cross_entropy takes (the built-in losses refuse inputs they do not read)."""
    return [types.Datum(model_input=d.model_input,
                        loss_fn_inputs={k: d.loss_fn_inputs[k] for k in ("target_tokens", "weights")}) for d in data]


def logprobs_of(out):
    return [np.array(o["logprobs"].data, dtype=np.float64) for o in out.loss_fn_outputs]


# A per-sequence preference loss in the style of DPO: the weighted sequence logprob is pushed above (sign +1) or
# below (sign -1) its value under the reference policy; scalar (rank-0) inputs per datum.
def preference_loss(logprobs, weights, ref_logprob, sign):
    seq = (logprobs * weights).sum()
    margin = 0.5 * sign * (seq - ref_logprob)
    loss = -F.logsigmoid(margin)
    return loss, {"custom/margin:mean": margin.detach(), "custom/tokens:sum": weights.sum()}


# A clipped importance-sampling loss, normalised by the datum's token count.
def clipped_is_loss(logprobs, sampler_logprobs, advantages, weights):
    ratio = torch.exp(logprobs - sampler_logprobs)
    clipped = torch.clamp(ratio, 0.8, 1.2)
    per_token = -torch.minimum(ratio * advantages, clipped * advantages) * weights
    loss = per_token.sum() / weights.sum().clamp(min=1.0)
    return loss, {"custom/clip_frac:mean": ((ratio != clipped).float() * weights).sum() / weights.sum()}


@pytest.mark.parametrize("fn,ranks", [
    (preference_loss, {"logprobs": 1, "weights": 1, "ref_logprob": 0, "sign": 0}),
    (clipped_is_loss, {"logprobs": 1, "sampler_logprobs": 1, "advantages": 1, "weights": 1}),
])
def test_server_side_loss_trains_exactly_like_the_sdk_client_side_path(svc, tokenizer, fn, ranks):
    handle = svc.create_custom_loss(fn, input_ranks=ranks).result()
    assert handle.loss_id, "the server accepted the upload (client/config custom_loss_server_side)"
    local = dataclasses.replace(handle, loss_id=None)  # the same traced graph, run by the SDK on the client
    server_tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=21).result()
    client_tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=21).result()
    probe = ce_only(make_data(tokenizer, 5))
    before = logprobs_of(server_tc.forward(probe, "cross_entropy").result())
    refs = [float(np.dot(lp, d.loss_fn_inputs["weights"].data)) for lp, d in zip(before, probe)]
    data = make_data(tokenizer, 5, ref_logprob=refs, sign=[1.0, -1.0, 1.0])
    losses = []
    for _ in range(3):
        s, c = server_tc.forward_backward_custom(data, handle), client_tc.forward_backward_custom(data, local)
        s_opt, c_opt = server_tc.optim_step(ADAM), client_tc.optim_step(ADAM)
        s, c = s.result(), c.result()
        s_opt.result(), c_opt.result()
        assert "surrogate_loss:sum" in c.metrics and "surrogate_loss:sum" not in s.metrics  # where each ran
        assert set(s.metrics) == {"loss:sum"} | {k for k in c.metrics if k.startswith("custom/")}
        for key, value in s.metrics.items():  # abs: margin:mean starts at ~0, a difference of sums of ~100
            assert value == pytest.approx(c.metrics[key], rel=1e-5, abs=1e-4), key
        for a, b in zip(logprobs_of(s), logprobs_of(c)):
            np.testing.assert_allclose(a, b, atol=2e-5)
        losses.append(s.metrics["loss:sum"])
    assert losses[-1] < losses[0] - 0.05, losses  # gradients reached the adapter and training moved the loss
    after_server = logprobs_of(server_tc.forward(probe, "cross_entropy").result())
    after_client = logprobs_of(client_tc.forward(probe, "cross_entropy").result())
    assert max(np.abs(a - b).max() for a, b in zip(after_server, before)) > 0.01  # the weights did change
    for a, b in zip(after_server, after_client):
        np.testing.assert_allclose(a, b, atol=5e-5)


def test_custom_cross_entropy_equals_the_builtin_loss(svc, tokenizer):
    def custom_ce(logprobs, weights):
        loss = -(logprobs * weights).sum()
        return loss, {"custom/tokens:sum": weights.sum()}

    handle = svc.create_custom_loss(custom_ce, input_ranks={"logprobs": 1, "weights": 1}).result()
    builtin = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=22).result()
    custom = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=22).result()
    data = ce_only(make_data(tokenizer, 6))
    for _ in range(2):
        b, c = builtin.forward_backward(data, "cross_entropy"), custom.forward_backward_custom(data, handle)
        b_opt, c_opt = builtin.optim_step(ADAM), custom.optim_step(ADAM)
        b, c = b.result(), c.result()
        b_opt.result(), c_opt.result()
        assert c.metrics["loss:sum"] == pytest.approx(b.metrics["loss:sum"], rel=1e-6)
        assert c.metrics["custom/tokens:sum"] == sum(sum(d.loss_fn_inputs["weights"].data) for d in data)
        for x, y in zip(logprobs_of(b), logprobs_of(c)):
            np.testing.assert_allclose(x, y, atol=1e-6)
    after_b = logprobs_of(builtin.forward(data, "cross_entropy").result())
    after_c = logprobs_of(custom.forward(data, "cross_entropy").result())
    for x, y in zip(after_b, after_c):
        np.testing.assert_allclose(x, y, atol=1e-6)


def test_a_loss_over_rank_2_logprobs_equals_cross_entropy_over_top_k_targets(svc, tokenizer):
    """logprobs take the rank of the datum's target_tokens: a server-side loss declared over [T, K]
    logprobs (top-K distillation) equals the built-in cross_entropy over the same (T, K) targets and
    weights; a loss declared over [T] logprobs refuses such datums (the SDK says so before sending;
    custom_loss_test covers the server's own check)."""
    def topk_ce(logprobs, weights):
        return -(logprobs * weights).sum(), {"custom/slots:sum": (weights > 0).float().sum()}

    handle = svc.create_custom_loss(topk_ce, input_ranks={"logprobs": 2, "weights": 2}).result()
    ids = tokenizer("Top-K targets reach a custom loss as a matrix.", add_special_tokens=False).input_ids
    T, K = len(ids) - 1, 4
    gen = torch.Generator().manual_seed(9)
    targets = torch.randint(0, 49152, (T, K), generator=gen)
    targets[:, 0] = torch.tensor(ids[1:])
    weights = torch.softmax(torch.randn(T, K, generator=gen), dim=-1) * (torch.rand(T, K, generator=gen) > 0.3)
    data = [types.Datum(model_input=types.ModelInput.from_ints(ids[:-1]),
                        loss_fn_inputs={"target_tokens": types.TensorData.from_torch(targets),
                                        "weights": types.TensorData.from_torch(weights)})]
    builtin = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=25).result()
    custom = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=25).result()
    b, c = builtin.forward_backward(data, "cross_entropy").result(), custom.forward_backward_custom(data, handle).result()
    assert c.metrics["loss:sum"] == pytest.approx(b.metrics["loss:sum"], rel=1e-6)
    assert c.metrics["custom/slots:sum"] == (weights > 0).sum().item()
    assert c.loss_fn_outputs[0]["logprobs"].shape == [T, K]
    np.testing.assert_allclose(c.loss_fn_outputs[0]["logprobs"].data, b.loss_fn_outputs[0]["logprobs"].data, atol=1e-6)
    norms = [tc.optim_step(ADAM).result().metrics["grad_norm"] for tc in (builtin, custom)]
    assert norms[0] > 0 and norms[1] == pytest.approx(norms[0], rel=1e-5)

    flat = svc.create_custom_loss(topk_ce, input_ranks={"logprobs": 1, "weights": 1}).result()
    with pytest.raises(Exception, match="has rank 2, but loss 'topk_ce' declared logprobs with rank 1"):
        custom.forward_backward_custom(data, flat).result()  # the SDK checks this first; the server does too


# Losses that between them call most of the operations the server runs; each is checked against the SDK's own
# evaluation of its traced graph on the logprobs the server used.
def ops_arithmetic(logprobs, advantages, weights):
    x = logprobs * weights + 0.5 - advantages / 2.0
    y = (2.0 - x) * 3 // 1 + x % 0.7 + (-x) ** 2 + abs(x) + 2 ** x.clamp(max=0.0) + torch.pow(x, 3)
    z = 1 / (1 + x.exp()) + torch.div(x, 3.0, rounding_mode="floor") + torch.remainder(x, 0.3) + torch.fmod(x, 0.3)
    n = logprobs.shape[0]
    m = math.sqrt(n) + math.log(n + 1) + logprobs.size(0) // 2 + logprobs.numel() % 3 + logprobs.dim()
    cmp = ((x > 0).float().sum() - (x <= -1).sum() * 0.5 + ((x < 0.2) & (x >= -0.2)).float().mean()
           + (~(x != 0)).float().sum())
    mix = torch.maximum(x, advantages).sum() + torch.minimum(x, 0.1 * advantages).sum() + torch.add(x, advantages, alpha=0.5).sum()
    mix = mix + torch.sub(x, 1.0).mean() + torch.mul(x, advantages).sum() + x.sub(advantages).sum() - torch.rsub(x, 2.0).sum()
    u = torch.sqrt(-logprobs + 1) + torch.rsqrt(x.abs() + 1) + torch.square(x) + torch.exp2(x.clamp(-3, 3)) + torch.log1p(x.abs())
    u = (u + torch.expm1(-x.abs()) + torch.log2(x.abs() + 1) + torch.log10(x.abs() + 1) + x.sign() + x.floor() + x.ceil()
         + x.round() + x.trunc() + x.frac())
    u = (u + torch.erf(x) + torch.sin(x) + torch.cos(x) + torch.atan(x) + torch.reciprocal(x.abs() + 1)
         + torch.atan2(x, advantages + 2) + torch.hypot(x, advantages))
    loss = ((y.sum() + z.mean()) / m + cmp + mix + u.sum() + torch.lerp(x, advantages, 0.25).sum()
            + torch.clamp_min(x, -0.5).sum() + x.clamp_max(0.5).sum())
    return loss, {"custom/m:sum": x.mean() * 0 + m, "custom/cmp:mean": cmp}


def ops_reductions(logprobs, advantages, weights):
    t = torch.stack([logprobs, advantages, weights])
    a = (t.sum(dim=1) + t.mean(1, keepdim=True).squeeze(1) + t.amax(dim=-1) - t.amin(-1) + torch.sum(t, (0, 1))
         + t.sum(dtype=torch.float64).float())
    b = (torch.logsumexp(t, dim=0).sum() + t.max() - t.min() + t.max(dim=1).values.sum() + t.min(dim=0)[0].sum()
         + torch.max(t, 1, keepdim=True)[0].sum())
    c = (t.var(dim=1).sum() + t.std() + torch.var(logprobs, unbiased=False) + torch.std(advantages, correction=0) + t.norm()
         + torch.linalg.vector_norm(advantages, ord=1) + logprobs.norm(p=1))
    d = (torch.softmax(t, dim=0)[0].sum() + F.log_softmax(t, dim=-1).mean() + torch.cumsum(logprobs, 0)[-1]
         + t.log_softmax(1).sum() + torch.cumprod(weights * 0.5 + 0.75, dim=0)[-1])
    e = (t.argmax(dim=1).float().sum() + t.argmin().float() + (t > 0).any(dim=1).float().sum() + (t > -100).all().float()
         + torch.count_nonzero(weights) + torch.nansum(advantages) + torch.nanmean(advantages))
    top = torch.topk(advantages, 2)[0].sum() + advantages.sort(descending=True).values[0] + torch.prod(weights * 0.1 + 1)
    return a.sum() + b + c + d + e + top, {"custom/b:mean": b, "custom/c:sum": c}


def ops_shapes(logprobs, advantages, weights):
    T = logprobs.shape[0]
    x = logprobs.reshape(1, -1).expand(2, -1)
    y = torch.cat([x, advantages.view(1, T)], dim=0).t()
    z = y.permute(1, 0).flatten()[:T].unsqueeze(0).transpose(0, 1).squeeze(-1)
    w = torch.flip(weights, dims=[0]) * torch.roll(advantages, 1) + weights.flip(0)
    idx = torch.arange(T)
    g = (torch.gather(y, 1, torch.zeros((T, 1), dtype=torch.long)).squeeze(1)
         + torch.index_select(y, 1, idx[2:3]).sum())
    sel = (logprobs[idx % 2 == 0].sum() + logprobs[..., None][:, 0][1:-1].sum() + logprobs[[0, 1]].sum() + y[1, 2]
           + y[:, -1].sum() + y[None, ::2, 1:].sum())
    h = (torch.where(weights > 0, logprobs, torch.zeros_like(logprobs)) + logprobs.masked_fill(weights == 0, 0.0)
         + torch.where(advantages > 0, 1.0, advantages))
    tri = (torch.outer(logprobs, weights).tril().sum() + torch.outer(logprobs, advantages).triu(1).sum()
           + (logprobs @ advantages) + torch.dot(weights, logprobs))
    parts = (torch.chunk(logprobs, 2)[0].sum() + logprobs.split(3)[1].sum() + torch.concat([logprobs, weights]).sum()
             + y.reshape_as(y).sum() + y.T.sum() + y.mT.sum())
    c = (torch.ones((T,)) * 0.5 + logprobs.new_zeros((T,)) + logprobs.new_ones(T) + logprobs.new_full((T,), 0.25)
         + torch.full((T,), 2.0) + torch.zeros_like(logprobs) + torch.ones_like(advantages) + torch.full_like(weights, 3.0)
         + torch.arange(0, T, 1) * 0.01)
    other = (logprobs.repeat(2).sum() + logprobs.unsqueeze(1).expand_as(y).sum() + torch.broadcast_to(logprobs, (2, T)).sum()
             + y.contiguous().view(-1).sum() + logprobs.clone().detach().sum())
    loss = (z.sum() + w.sum() + g.sum() + sel + h.sum() + tri + torch.diff(logprobs).sum() + logprobs.narrow(0, 1, 2).sum()
            + parts + c.sum() + other + logprobs.type_as(advantages).sum())
    return loss, {}


def ops_functional(logprobs, advantages, weights):
    a = F.logsigmoid(advantages * logprobs).sum() + F.softplus(logprobs, beta=2.0).sum()
    b = (F.mse_loss(logprobs, advantages) + F.l1_loss(logprobs, advantages, reduction="sum")
         + F.smooth_l1_loss(logprobs, advantages, beta=0.5) + F.huber_loss(logprobs, advantages, delta=0.3))
    c = (F.kl_div(F.log_softmax(logprobs, dim=0), F.softmax(advantages, dim=0), reduction="batchmean")
         + F.binary_cross_entropy_with_logits(logprobs, weights))
    d = (F.relu(advantages).sum() + F.silu(logprobs).sum() + F.gelu(logprobs).sum() + F.elu(logprobs).sum()
         + F.leaky_relu(advantages, 0.2).sum() + torch.relu(advantages).mean())
    e = (torch.sigmoid(logprobs).sum() + torch.tanh(advantages).sum() + torch.special.expit(logprobs).mean()
         + torch.xlogy(weights, logprobs.exp()).sum() + torch.logaddexp(logprobs, advantages).sum())
    f = (torch.nan_to_num(torch.log(-logprobs), neginf=-5.0).sum() + torch.cosine_similarity(logprobs, advantages, dim=0)
         + F.normalize(advantages, dim=0).sum() + torch.logit(torch.sigmoid(advantages), eps=1e-6).sum())
    g = (logprobs.to(torch.float64).sum().float() + logprobs.double().sum().float()
         + (weights.long() + weights.int()).float().sum() + weights.bool().float().sum() + logprobs.to(advantages).sum())
    return a + b + c + d + e + f + g, {"custom/kl:mean": c.detach()}


@pytest.mark.parametrize("fn", [ops_arithmetic, ops_reductions, ops_shapes, ops_functional])
def test_operations_compute_what_torch_computes(svc, tokenizer, fn):
    handle = svc.create_custom_loss(fn, input_ranks={"logprobs": 1, "advantages": 1, "weights": 1}).result()
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=23).result()
    data = make_data(tokenizer, 7)
    out = tc.forward(data, "custom", {"loss_id": handle.loss_id}).result()
    lps = [torch.tensor(o["logprobs"].data) for o in out.loss_fn_outputs]
    want_loss, want_metrics = run_loss_handle(dataclasses.replace(handle, loss_id=None), data, lps)
    assert out.metrics["loss:sum"] == pytest.approx(float(want_loss), rel=1e-5, abs=1e-4)
    assert set(out.metrics) == {"loss:sum", *want_metrics}
    for key, value in want_metrics.items():
        assert out.metrics[key] == pytest.approx(value, rel=1e-5, abs=1e-4), key


def raw_create(server, key, session_id, seq, name, inputs, graph):
    return httpx.post(server.url + "/api/v1/create_custom_loss", headers={"X-API-Key": key},
                      json={"session_id": session_id, "custom_loss_seq_id": seq, "name": name, "inputs": inputs,
                            "graph": graph, "type": "create_custom_loss"})


def traced(svc, fn, ranks):
    """The request body's inputs and graph for `fn`, exactly as the SDK would upload them."""
    from tinker.lib.public_interfaces.custom_loss import trace_loss
    handle = trace_loss(fn, ranks, svc.holder.get_session_id())
    return ([i.model_dump(mode="json") for i in handle.inputs],
            encode_graph(handle).model_dump(mode="json", exclude_unset=False, exclude_none=True))


def weighted_nll(logprobs, weights):
    loss = -(logprobs * weights).sum()
    return loss, {}


def test_bad_graphs_are_refused_with_a_400_naming_the_node(svc, server):
    session = svc.holder.get_session_id()
    inputs, graph = traced(svc, weighted_nll, {"logprobs": 1, "weights": 1})
    names = [n["name"] for n in graph["nodes"]]
    assert names == ["logprobs", "weights", "mul", "sum_1", "neg", "output"], names

    def refused(inputs, graph):
        r = raw_create(server, server.key, session, 900, "bad", inputs, graph)
        assert r.status_code == 400, r.text
        return r.json()["detail"]

    unknown = [dict(n) for n in graph["nodes"]]
    unknown[2] = {**unknown[2], "target": "torch.fft.fft", "args": [{"ref": "logprobs"}]}
    assert "graph.nodes[2] 'mul': function 'torch.fft.fft' is not an operation this server runs" in refused(inputs, {**graph, "nodes": unknown})
    forward = [dict(n) for n in graph["nodes"]]
    forward[2] = {**forward[2], "args": [{"ref": "logprobs"}, {"ref": "neg"}]}
    assert "graph.nodes[2] 'mul'.args[1].ref refers to 'neg', which is not an earlier node" in refused(inputs, {**graph, "nodes": forward})
    assert "inputs[1].rank must be 0, 1 or 2, got 3" in refused([inputs[0], {"name": "weights", "rank": 3}], graph)
    assert "logprobs has rank 1" in refused([{"name": "logprobs", "rank": 0}, inputs[1]], graph)
    module = [dict(n) for n in graph["nodes"]]
    module[3] = {**module[3], "op": "call_module", "target": "loss_module"}
    assert "graph.nodes[3] 'sum_1': op 'call_module' is not allowed" in refused(inputs, {**graph, "nodes": module})

    # Through the SDK: a torch function the SDK lets through but the server does not run.
    def spectral(logprobs):
        return torch.fft.rfft(logprobs).abs().sum(), {}

    with pytest.raises(Exception, match=r"graph.nodes\[1\] 'fft_rfft': function 'torch._C._fft.fft_rfft' is not an operation"):
        svc.create_custom_loss(spectral, input_ranks={"logprobs": 1}).result()


def test_forward_backward_input_errors_name_the_datum_and_input(svc, server, tokenizer):
    def needs_advantages(logprobs, advantages):
        return -(logprobs * advantages).sum(), {}

    handle = svc.create_custom_loss(needs_advantages, input_ranks={"logprobs": 1, "advantages": 1}).result()
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=24).result()
    ids = tokenizer(TEXTS[0], add_special_tokens=False).input_ids
    body = {"model_id": tc.model_id, "seq_id": 1, "forward_backward_input": {
        "loss_fn": "custom", "loss_fn_config": {"loss_id": handle.loss_id},
        "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]},
                  "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": "int64"},
                                     "advantages": {"data": [1.0] * (len(ids) - 1), "dtype": "float32",
                                                    "shape": [len(ids) - 1, 1]}}}]}}
    r = httpx.post(server.url + "/api/v1/forward_backward", headers={"X-API-Key": server.key}, json=body)
    assert r.status_code == 400, r.text
    assert ("data[0].loss_fn_inputs.advantages has rank 2 (shape [%d, 1]), but custom loss 'needs_advantages' "
            "declared advantages with rank 1" % (len(ids) - 1)) in r.json()["detail"]
    body["seq_id"] = 2
    del body["forward_backward_input"]["data"][0]["loss_fn_inputs"]["advantages"]
    r = httpx.post(server.url + "/api/v1/forward_backward", headers={"X-API-Key": server.key}, json=body)
    assert r.status_code == 400 and "data[0].loss_fn_inputs.advantages is missing" in r.json()["detail"], r.text


def test_create_is_idempotent_per_session_and_seq_id(svc, server):
    session = svc.holder.get_session_id()
    inputs, graph = traced(svc, weighted_nll, {"logprobs": 1, "weights": 1})

    def loss_id(response):
        assert response.status_code == 200, response.text
        fut = httpx.post(server.url + "/api/v1/retrieve_future", headers={"X-API-Key": server.key},
                         json={"request_id": response.json()["request_id"]}).json()
        assert fut["type"] == "create_custom_loss"
        return fut["loss_id"]

    first = loss_id(raw_create(server, server.key, session, 901, "weighted_nll", inputs, graph))
    again = loss_id(raw_create(server, server.key, session, 901, "weighted_nll", inputs, graph))  # an SDK retry
    assert first == again
    other = loss_id(raw_create(server, server.key, session, 902, "weighted_nll", inputs, graph))
    assert other != first
    changed = raw_create(server, server.key, session, 901, "renamed", inputs, graph)
    assert changed.status_code == 400 and "custom_loss_seq_id 901" in changed.json()["detail"], changed.text


def test_a_loss_belongs_to_its_key_and_session(openrl_bin, svc, server, tokenizer):
    handle = svc.create_custom_loss(weighted_nll, input_ranks={"logprobs": 1, "weights": 1}).result()
    data = make_data(tokenizer, 8)
    mine = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=25).result()
    assert "loss:sum" in mine.forward(data, "custom", {"loss_id": handle.loss_id}).result().metrics
    # Another session of the same key, and another key: the id reads as unknown.
    same_key = service_client(server, server.key)
    other_key = create_key(openrl_bin, server.data_dir, name="closs-other")
    other = service_client(server, other_key)
    try:
        for client in (same_key, other):
            tc = client.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=25).result()
            with pytest.raises(Exception, match=f"loss_id '{handle.loss_id}' is not a custom loss of model"):
                tc.forward(data, "custom", {"loss_id": handle.loss_id}).result()
        # Nor can another key create a loss in this key's session.
        inputs, graph = traced(svc, weighted_nll, {"logprobs": 1, "weights": 1})
        r = raw_create(server, other_key, svc.holder.get_session_id(), 903, "x", inputs, graph)
        assert r.status_code == 400 and "is unknown" in r.json()["detail"], r.text
    finally:
        same_key.close("success").result()
        other.close("success").result()


def test_a_stored_loss_survives_a_restart(openrl_bin, tmp_path, tokenizer):
    key = create_key(openrl_bin, tmp_path)
    srv = Server(openrl_bin, tmp_path).start()
    try:
        svc = service_client(srv, key)
        handle = svc.create_custom_loss(weighted_nll, input_ranks={"logprobs": 1, "weights": 1}).result()
        session = svc.holder.get_session_id()
        data = ce_only(make_data(tokenizer, 9))
        tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=26).result()
        before = tc.forward(data, "custom", {"loss_id": handle.loss_id}).result().metrics["loss:sum"]
        svc.close("success").result()
    finally:
        srv.stop()
    srv = Server(openrl_bin, tmp_path).start()  # a new process: the loss comes back from the database
    try:
        headers = {"X-API-Key": key}
        r = httpx.post(srv.url + "/api/v1/create_model", headers=headers,
                       json={"session_id": session, "model_seq_id": 50, "base_model": SMOLLM2_NAME,
                             "lora_config": {"rank": 4, "seed": 26}})
        assert r.status_code == 200, r.text
        datums = [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": d.model_input.to_ints()}]},
                   "loss_fn_inputs": {"target_tokens": {"data": d.loss_fn_inputs["target_tokens"].data, "dtype": "int64"},
                                      "weights": {"data": d.loss_fn_inputs["weights"].data, "dtype": "float32"}}}
                  for d in data]
        r = httpx.post(srv.url + "/api/v1/forward_backward", headers=headers, json={
            "model_id": r.json()["model_id"], "seq_id": 1,
            "forward_backward_input": {"loss_fn": "custom", "loss_fn_config": {"loss_id": handle.loss_id},
                                       "forward_only": True, "data": datums}})
        assert r.status_code == 200, r.text
        result = httpx.post(srv.url + "/api/v1/retrieve_future", headers=headers, timeout=60,
                            json={"request_id": r.json()["request_id"]})
        assert result.headers["content-type"] == "application/x-protobuf", result.text
        out = tinker_public_pb2.ForwardBackwardOutput()
        out.ParseFromString(result.content)
        assert out.metrics["loss:sum"] == pytest.approx(before, rel=1e-6)  # B = 0: the base model's logprobs
    finally:
        srv.stop()
