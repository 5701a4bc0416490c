"""The Tinker training API, driven by the real `tinker` SDK (pinned in requirements.lock) against a
real `openrl serve` process on the real SmolLM2-135M-Instruct (imported from its GGUF file)."""
import json
import math
import os
import random

import httpx
import numpy as np
import pytest
import torch

os.environ.setdefault("TINKER_TELEMETRY", "0")
import tinker  # noqa: E402
from tinker import types  # noqa: E402

from tinker_server import SMOLLM2_NAME, Server, create_key, rest_client, service_client  # noqa: E402


@pytest.fixture(scope="module")
def tokenizer(svc):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4).result()
    return tc.get_tokenizer()


def datum(tokens, weights=None, **extra):
    inputs = {"target_tokens": tokens[1:], "weights": weights if weights is not None else [1.0] * (len(tokens) - 1)}
    inputs.update(extra)
    return types.Datum(model_input=types.ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)


CHATS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Name a primary color.", "Red is a primary color."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey."),
]


def chat_datum(tok, user, assistant):
    prompt = tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False)
    full = prompt + assistant + "<|im_end|>\n"
    p = tok(prompt, add_special_tokens=False).input_ids
    ids = tok(full, add_special_tokens=False).input_ids
    assert ids[: len(p)] == p
    weights = [0.0] * (len(p) - 1) + [1.0] * (len(ids) - len(p))
    return datum(ids, weights)


def test_service_surface(svc, server):
    caps = httpx.get(server.url + "/api/v1/get_server_capabilities", headers={"X-API-Key": server.key}).json()
    assert caps["supported_models"][0]["model_name"] == SMOLLM2_NAME
    assert caps["supported_models"][0]["max_context_length"] == 8192
    # Every built-in loss forward_backward takes (gspo was served but not listed).
    assert caps["supported_loss_fns"] == ["cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo"]
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, train_unembed=False).result()
    info = tc.get_info()
    assert info.model_data.model_name == SMOLLM2_NAME and info.lora_rank == 8 and info.is_lora
    # get_tokenizer works offline: the server names the local model directory.
    tok = tc.get_tokenizer()
    assert tok("hello world").input_ids == [28120, 905]
    rest = rest_client(server, server.key)
    run = rest.get_training_run(tc.model_id).result()
    assert run.training_run_id == tc.model_id and run.base_model == SMOLLM2_NAME and run.lora_rank == 8
    runs = rest.list_training_runs().result()
    assert tc.model_id in [r.training_run_id for r in runs.training_runs]


def test_sft_loss_falls_steadily(svc, tokenizer):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=1).result()
    data = [chat_datum(tokenizer, u, a) for u, a in CHATS]
    tokens = sum(sum(d.loss_fn_inputs["weights"].data) for d in data)
    losses = []
    for _ in range(8):
        fb = tc.forward_backward(data, "cross_entropy")
        opt = tc.optim_step(types.AdamParams(learning_rate=5e-4))
        out = fb.result()
        opt.result()
        # One logprob per target position, and loss:sum = -Σ weights·logprobs.
        for d, o in zip(data, out.loss_fn_outputs):
            assert len(o["logprobs"].data) == len(d.loss_fn_inputs["target_tokens"].data)
        expected = -sum(float(np.dot(o["logprobs"].data, d.loss_fn_inputs["weights"].data))
                        for d, o in zip(data, out.loss_fn_outputs))
        assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-5)
        losses.append(out.metrics["loss:sum"] / tokens)
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0], losses


def test_rl_reward_rises_with_importance_sampling(svc, tokenizer):
    """Group sampling, a verifiable reward (answer with the single word "yes"), group-relative
    advantages, the importance_sampling loss: the mean reward rises over 20 iterations."""
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=3).result()
    prompt_text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Is water wet? Answer with one word."}], add_generation_prompt=True, tokenize=False)
    prompt = tokenizer(prompt_text, add_special_tokens=False).input_ids
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")

    def reward(tokens):
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip().lower().rstrip(".!")
        return 1.0 if text == "yes" else 0.0

    means = []
    for it in range(20):
        sampler = tc.save_weights_and_get_sampling_client().result()
        res = sampler.sample(prompt=types.ModelInput.from_ints(prompt), num_samples=8,
                             sampling_params=types.SamplingParams(max_tokens=6, temperature=1.0, seed=100 + it,
                                                                  stop=[end])).result()
        rewards = [reward(s.tokens) for s in res.sequences]
        means.append(sum(rewards) / len(rewards))
        mean = sum(rewards) / len(rewards)
        data = []
        for s, r in zip(res.sequences, rewards):
            assert s.logprobs is not None and len(s.logprobs) == len(s.tokens)
            if r == mean:
                continue
            n = len(prompt) - 1
            full = prompt + s.tokens
            data.append(types.Datum(
                model_input=types.ModelInput.from_ints(full[:-1]),
                loss_fn_inputs={"target_tokens": full[1:],
                                "logprobs": [0.0] * n + list(s.logprobs),
                                "advantages": [0.0] * n + [r - mean] * len(s.tokens)}))
        if data:
            tc.forward_backward(data, "importance_sampling").result()
            tc.optim_step(types.AdamParams(learning_rate=2e-3)).result()
    first, last = sum(means[:5]) / 5, sum(means[-5:]) / 5
    assert last > first + 0.3, means


def test_dpo_through_forward_backward_custom(svc, tokenizer):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=4).result()
    pairs = [("Reply politely: can you help me?", "Of course, I would be glad to help.", "No. Go away."),
             ("Say something kind.", "You are doing a wonderful job.", "You are useless.")]
    data = []
    for user, chosen, rejected in pairs:
        data.append(chat_datum(tokenizer, user, chosen))
        data.append(chat_datum(tokenizer, user, rejected))
    beta = 0.1

    def seq_logp(logprobs, d):
        return (logprobs * torch.tensor(d.loss_fn_inputs["weights"].data)).sum()

    ref = [seq_logp(torch.tensor(o["logprobs"].data), d)
           for d, o in zip(data, tc.forward(data, "cross_entropy").result().loss_fn_outputs)]
    margins = []

    def dpo_loss(batch, logprobs_list):
        logps = [seq_logp(lp, d) for lp, d in zip(logprobs_list, batch)]
        losses, margin = [], 0.0
        for i in range(0, len(batch), 2):
            m = beta * ((logps[i] - ref[i]) - (logps[i + 1] - ref[i + 1]))
            losses.append(-torch.nn.functional.logsigmoid(m))
            margin += float(m) / (len(batch) // 2)
        margins.append(margin)
        return torch.stack(losses).mean(), {"margin": margin}

    for _ in range(6):
        out = tc.forward_backward_custom(data, dpo_loss).result()
        assert "loss:sum" in out.metrics
        tc.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    assert margins[0] == pytest.approx(0.0, abs=1e-4)  # the policy starts as the reference
    assert all(b > a for a, b in zip(margins, margins[1:])), margins
    assert margins[-1] > 0.5, margins


def test_sampler_weights_sample_from_the_trained_adapter(svc, server, tokenizer):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=5).result()
    text = tokenizer("The secret word is banana. The secret word is banana.", add_special_tokens=False).input_ids
    for _ in range(4):
        tc.forward_backward([datum(text)], "cross_entropy")
        tc.optim_step(types.AdamParams(learning_rate=2e-3))
    path = tc.save_weights_for_sampler("banana").result().path
    assert path == f"tinker://{tc.model_id}/sampler_weights/banana"
    sampler = svc.create_sampling_client(model_path=path).result()
    base = svc.create_sampling_client(base_model=SMOLLM2_NAME).result()
    prompt = tokenizer("The secret word is", add_special_tokens=False).input_ids
    res = sampler.sample(prompt=types.ModelInput.from_ints(prompt), num_samples=3,
                         sampling_params=types.SamplingParams(max_tokens=6, temperature=1.0, seed=7)).result()
    assert len(res.sequences) == 3
    for seq in res.sequences:
        full = prompt + seq.tokens
        lp = sampler.compute_logprobs(types.ModelInput.from_ints(full)).result()
        assert lp[0] is None
        np.testing.assert_allclose(lp[len(prompt):], seq.logprobs, atol=1e-4)
        base_lp = base.compute_logprobs(types.ModelInput.from_ints(full)).result()
        assert sum(lp[len(prompt):]) > sum(base_lp[len(prompt):]) + 1.0  # trained toward "banana"
    # The same seed gives the same samples; prompt logprobs and top-k come back on request.
    again = sampler.sample(prompt=types.ModelInput.from_ints(prompt), num_samples=3,
                           sampling_params=types.SamplingParams(max_tokens=6, temperature=1.0, seed=7)).result()
    assert [s.tokens for s in again.sequences] == [s.tokens for s in res.sequences]
    topk = sampler.sample(prompt=types.ModelInput.from_ints(prompt), num_samples=1,
                          sampling_params=types.SamplingParams(max_tokens=1), include_prompt_logprobs=True,
                          topk_prompt_logprobs=3).result()
    assert topk.prompt_logprobs[0] is None and len(topk.prompt_logprobs) == len(prompt)
    assert len(topk.topk_prompt_logprobs) == len(prompt) and len(topk.topk_prompt_logprobs[1]) == 3
    # The checkpoint is listed, then deleted.
    rest = rest_client(server, server.key)
    ckpts = rest.list_checkpoints(tc.model_id).result().checkpoints
    assert [c.tinker_path for c in ckpts] == [path]
    rest.delete_checkpoint(tc.model_id, "sampler_weights/banana").result()
    assert rest.list_checkpoints(tc.model_id).result().checkpoints == []


def loss_formula(name, lp, q, adv, w, cfg, m=None):
    r = torch.exp(lp - q)
    if name == "cross_entropy":
        return -(w * lp).sum()
    if name == "importance_sampling":
        return -(w * r * adv).sum()
    lo, hi = cfg.get("clip_low_threshold"), cfg.get("clip_high_threshold")
    if name == "ppo":
        lo, hi = lo or 0.8, hi or 1.2
        return -(w * torch.minimum(r * adv, torch.clamp(r, lo, hi) * adv)).sum()
    if name == "cispo":
        lo, hi = lo or 0.0, hi or 4.0
        return -(w * torch.clamp(r, lo, hi).detach() * lp * adv).sum()
    if name == "dro":
        return -(w * (lp * adv - 0.5 * cfg["beta"] * (lp - q) ** 2)).sum()
    if name == "gspo":  # one ratio per sequence: the geometric mean over the tokens m marks
        lo, hi = lo or 0.8, hi or 1.2
        s = torch.exp((lp - q)[m != 0].mean())
        return -(w * torch.minimum(s * adv, torch.clamp(s, lo, hi) * adv)).sum()
    raise ValueError(name)


@pytest.mark.parametrize("name,cfg", [("cross_entropy", {}), ("importance_sampling", {}), ("ppo", {}),
                                      ("ppo", {"clip_low_threshold": 0.9, "clip_high_threshold": 1.1}),
                                      ("cispo", {}), ("dro", {"beta": 0.05}), ("gspo", {}),
                                      ("gspo", {"clip_low_threshold": 0.99, "clip_high_threshold": 1.01})])
def test_builtin_loss_equals_documented_formula(svc, tokenizer, name, cfg):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=6).result()
    g = torch.Generator().manual_seed(hash(name) % 1000)
    data, inputs = [], []
    for text in ["A quick brown fox jumps over the lazy dog.", "Tinker losses are sums over tokens."]:
        ids = tokenizer(text, add_special_tokens=False).input_ids
        n = len(ids) - 1
        q = (-torch.rand(n, generator=g) * 3).tolist()
        adv = torch.randn(n, generator=g).tolist()
        w = (torch.rand(n, generator=g) > 0.2).float().tolist()
        m = [0.0] * (n // 3) + [1.0] * (n - n // 3)  # the sampled part of the sequence
        extra = {} if name == "cross_entropy" else {"logprobs": q, "advantages": adv}
        if name == "gspo":
            extra["sequence_ratio_mask"] = types.TensorData.from_torch(torch.tensor(m))
        data.append(datum(ids, w, **extra))
        inputs.append((q, adv, w, m))
    out = tc.forward(data, name, loss_fn_config=cfg or None).result()
    total = 0.0
    for o, (q, adv, w, m) in zip(out.loss_fn_outputs, inputs):
        lp = torch.tensor(o["logprobs"].data, dtype=torch.float64)
        value = loss_formula(name, lp, torch.tensor(q, dtype=torch.float64), torch.tensor(adv, dtype=torch.float64),
                             torch.tensor(w, dtype=torch.float64), cfg, torch.tensor(m))
        np.testing.assert_allclose(sum(o["elementwise_loss"].data), float(value), rtol=1e-5, atol=1e-5)
        total += float(value)
    assert out.metrics["loss:sum"] == pytest.approx(total, rel=1e-5, abs=1e-5)
    # The same loss trains: forward_backward gives the same value, and the step has a gradient.
    fb = tc.forward_backward(data, name, loss_fn_config=cfg or None).result()
    assert fb.metrics["loss:sum"] == pytest.approx(total, rel=1e-5, abs=1e-5)
    assert tc.optim_step(types.AdamParams(learning_rate=1e-4)).result().metrics["grad_norm"] > 0


def test_cross_entropy_takes_several_targets_per_position(svc, tokenizer):
    """Top-K distillation (tinker-cookbook's distillation/sdft.py): cross_entropy with target_tokens and
    weights of shape (T, K), sent dense and as the sparse CSR the SDK makes of 2-D torch tensors. The
    logprobs come back (T, K), column k equal to a one-target forward of that column; the loss and the
    gradient equal those of the K one-target datums together; forward_backward_custom gets (T, K)
    logprobs; other losses refuse (T, K) targets with a readable 400."""
    ids = tokenizer("Distill the teacher's top tokens, not only the sampled one.", add_special_tokens=False).input_ids
    inputs, T, K = ids[:-1], len(ids) - 1, 6
    # Laid out as the recipe does: top-K slots filled from the left, the rest token 0 with weight 0 (so
    # the SDK finds the tensors sparse enough to send as CSR).
    gen = torch.Generator().manual_seed(5)
    targets = torch.zeros(T, K, dtype=torch.long)
    weights = torch.zeros(T, K)
    filled = [2 + (t % 2) for t in range(T)]
    for t, n in enumerate(filled):
        targets[t, :n] = torch.randint(1, 49152, (n,), generator=gen)
        weights[t, :n] = torch.softmax(torch.randn(n, generator=gen), dim=0)
    targets[:, 0] = torch.tensor(ids[1:])
    weights[0] = 0.0  # a masked position
    dense = types.Datum(model_input=types.ModelInput.from_ints(inputs),
                        loss_fn_inputs={"target_tokens": types.TensorData.from_torch(targets),
                                        "weights": types.TensorData.from_torch(weights)})
    sparse = types.Datum(model_input=types.ModelInput.from_ints(inputs),
                         loss_fn_inputs={"target_tokens": targets, "weights": weights})  # auto sparse CSR
    assert sparse.loss_fn_inputs["weights"].sparse_crow_indices is not None
    columns = [types.Datum(model_input=types.ModelInput.from_ints(inputs),
                           loss_fn_inputs={"target_tokens": targets[:, k].tolist(), "weights": weights[:, k].tolist()})
               for k in range(K)]  # the same, one target per position, one datum per column

    a = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=51).result()
    b = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=51).result()
    one = b.forward(columns, "cross_entropy").result()
    want = torch.stack([torch.tensor(o["logprobs"].data) for o in one.loss_fn_outputs], dim=1)  # (T, K)
    for d in (dense, sparse):
        out = a.forward([d], "cross_entropy").result()
        lp = out.loss_fn_outputs[0]["logprobs"]
        assert lp.shape == [T, K]
        got = lp.to_torch()
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
        assert out.metrics["loss:sum"] == pytest.approx(-(got * weights).sum().item(), rel=1e-5)
        assert out.metrics["loss:sum"] == pytest.approx(one.metrics["loss:sum"], rel=1e-5)

    # One request mixing (T, K) and (T,) targets: one pass padded to K, two result records.
    mixed = a.forward([columns[1], dense, columns[2]], "cross_entropy").result().loss_fn_outputs
    assert [o["logprobs"].shape for o in mixed] == [[T], [T, K], [T]]
    torch.testing.assert_close(mixed[1]["logprobs"].to_torch(), want, atol=1e-4, rtol=0)
    for o, k in ((mixed[0], 1), (mixed[2], 2)):
        torch.testing.assert_close(o["logprobs"].to_torch(), want[:, k], atol=1e-4, rtol=0)

    adam = types.AdamParams(learning_rate=1e-3)
    a.forward_backward([sparse], "cross_entropy").result()
    b.forward_backward(columns, "cross_entropy").result()
    norms = [c.optim_step(adam).result().metrics["grad_norm"] for c in (a, b)]
    assert norms[0] > 0 and norms[0] == pytest.approx(norms[1], rel=1e-4)
    after = [c.forward([dense], "cross_entropy").result().metrics["loss:sum"] for c in (a, b)]
    assert after[0] == pytest.approx(after[1], rel=1e-4) and after[0] < one.metrics["loss:sum"]

    seen = []

    def reverse_kl_like(data, logprobs_list):  # the shape of sdft.py's custom loss: over (T, K) logprobs
        seen.extend(lp.shape for lp in logprobs_list)
        w = data[0].loss_fn_inputs["weights"].to_torch()
        return sum((lp.exp() * w).sum() for lp in logprobs_list), {}

    res = a.forward_backward_custom([dense], reverse_kl_like).result()
    assert seen == [torch.Size([T, K])] and math.isfinite(res.metrics["loss:sum"])
    assert a.optim_step(adam).result().metrics["grad_norm"] > 0

    with pytest.raises(Exception, match="several targets per position.*cross_entropy only"):
        a.forward_backward([types.Datum(model_input=types.ModelInput.from_ints(inputs), loss_fn_inputs={
            "target_tokens": types.TensorData.from_torch(targets),
            "logprobs": [0.0] * T, "advantages": [1.0] * T})], "importance_sampling").result()
    with pytest.raises(Exception, match=r"weights has shape \[%d\], expected \[%d, %d\]" % (T, T, K)):
        a.forward([types.Datum(model_input=types.ModelInput.from_ints(inputs), loss_fn_inputs={
            "target_tokens": types.TensorData.from_torch(targets), "weights": [1.0] * T})], "cross_entropy").result()


def test_sparse_and_oversized_loss_inputs_are_refused_before_anything_is_allocated(svc, server):
    """A small protobuf body cannot ask for a huge tensor: a sparse CSR input's rows must be the datum's
    tokens and its columns at most 1024, and a shape whose size overflows is refused (400, field named;
    before, a 200000 x 200000 sparse target tensor got a 500 from a failed 320 GB allocation)."""
    from tinker.proto import tinker_public_pb2 as pb
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2).result()

    def send(shape, sparse=True, rows=None):
        req = pb.ForwardBackwardRequest(model_id=tc.model_id, seq_id=0, loss_fn="cross_entropy")
        d = req.data.add()
        d.model_input.add().encoded_text.tokens = np.array([1, 2, 3], dtype=np.int32).tobytes()
        t = d.loss_fn_inputs["target_tokens"]
        t.dtype = pb.DTYPE_INT64
        t.shape.extend(shape)
        if sparse:
            t.sparse_csr.crow_indices = np.zeros((rows or shape[0]) + 1, dtype=np.int64).tobytes()
        else:
            t.dense = b""
        return httpx.post(server.url + "/api/v1/forward_backward", content=req.SerializeToString(),
                          headers={"X-API-Key": server.key, "Content-Type": "application/x-protobuf"})

    r = send([200000, 200000])
    assert r.status_code == 400 and "sparse CSR tensor of 200000 rows; the datum has 3 input tokens" in r.json()["detail"]
    r = send([3, 5000])
    assert r.status_code == 400 and "5000 columns; at most 1024" in r.json()["detail"]
    r = send([2 ** 40, 2 ** 40, 2 ** 40], sparse=False)
    assert r.status_code == 400 and "target_tokens: shape is too large" in r.json()["detail"]
    r = send([3, 4])  # well formed: every target 0 (no stored values) — accepted
    assert r.status_code == 200, r.text


def test_bad_input_is_a_readable_4xx_and_leaves_the_run_unchanged(svc, server, tokenizer):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=8).result()
    ids = tokenizer("Bad input must not change the run.", add_special_tokens=False).input_ids
    before = tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]

    with pytest.raises(Exception, match="optim_step .* before any forward_backward"):
        tc.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    with pytest.raises(Exception, match="outside the vocabulary"):
        tc.forward_backward([datum(ids[:-1] + [49152])], "cross_entropy").result()
    with pytest.raises(Exception, match="exceed the model's context"):
        tc.forward_backward([datum([1] * 8200)], "cross_entropy").result()
    with pytest.raises(Exception, match=r"advantages has shape \[2\], expected"):
        tc.forward_backward([datum(ids, logprobs=[0.0] * (len(ids) - 1), advantages=[1.0, 2.0])],
                            "importance_sampling").result()
    with pytest.raises(Exception, match="dro.*beta|beta.*dro|loss_fn_config.beta"):
        tc.forward_backward([datum(ids, logprobs=[0.0] * (len(ids) - 1), advantages=[1.0] * (len(ids) - 1))],
                            "dro").result()
    with pytest.raises(Exception, match="clip_low_thresh"):
        tc.forward_backward([datum(ids, logprobs=[0.0] * (len(ids) - 1), advantages=[1.0] * (len(ids) - 1))],
                            "ppo", loss_fn_config={"clip_low_thresh": 0.5}).result()
    with pytest.raises(Exception, match="not served here"):
        svc.create_lora_training_client(base_model="nobody/unknown-model", rank=4).result()
    with pytest.raises(Exception):
        tc.forward_backward([datum(ids)], "no_such_loss").result()  # the SDK refuses it before sending

    # The state is unchanged: the same forward gives the same loss, and training still works.
    assert tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"] == before
    tc.forward_backward([datum(ids)], "cross_entropy").result()
    tc.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    assert tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"] < before

    headers = {"X-API-Key": server.key}
    # Unknown loss name sent directly, over JSON: 400 naming it.
    body = {"model_id": tc.model_id, "seq_id": 0, "forward_backward_input": {
        "loss_fn": "no_such_loss", "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
                                             "loss_fn_inputs": {"target_tokens": {"data": [2, 3], "dtype": "int64"}}}]}}
    r = httpx.post(server.url + "/api/v1/forward_backward", json=body, headers=headers)
    assert r.status_code == 400 and "no_such_loss" in r.json()["detail"]
    # Oversized body: 413 before anything is parsed.
    r = httpx.post(server.url + "/api/v1/forward_backward", content=b"x" * (65 * 1024 * 1024),
                   headers={**headers, "Content-Type": "application/x-protobuf"})
    assert r.status_code == 413
    # Unknown or expired session; missing or wrong key.
    r = httpx.post(server.url + "/api/v1/create_model", headers=headers,
                   json={"session_id": "ses_nope", "model_seq_id": 0, "base_model": SMOLLM2_NAME,
                         "lora_config": {"rank": 4}})
    assert r.status_code == 400 and "session" in r.json()["detail"]
    r = httpx.get(server.url + "/api/v1/training_runs?limit=abc", headers=headers)
    assert r.status_code == 400 and "limit" in r.json()["detail"]
    r = httpx.post(server.url + "/api/v1/get_info", json={"model_id": tc.model_id})
    assert r.status_code == 401
    r = httpx.post(server.url + "/api/v1/get_info", json={"model_id": tc.model_id}, headers={"X-API-Key": "tml-wrong"})
    assert r.status_code == 401


def test_rest_client_lists_sessions_and_the_keys_checkpoints(openrl_bin, server):
    """RestClient.list_sessions / get_session / list_user_checkpoints, scoped to the key."""
    sc = service_client(server, server.key)
    try:
        session = sc.holder.get_session_id()
        tc = sc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4).result()
        paths = [tc.save_state(f"ckpt-{i}").result().path for i in range(3)]
        sampler = tc.save_weights_and_get_sampling_client().result()
        rest = rest_client(server, server.key)

        assert session in rest.list_sessions(limit=100).result().sessions
        got = rest.get_session(session).result()
        assert tc.model_id in got.training_run_ids
        assert len(got.sampler_ids) == 1  # the one sampling session this session made
        info = httpx.get(server.url + f"/api/v1/samplers/{got.sampler_ids[0]}", headers={"X-API-Key": server.key})
        assert info.status_code == 200 and info.json()["sampler_id"] == got.sampler_ids[0]
        assert sampler.compute_logprobs(types.ModelInput.from_ints([1, 2, 3])).result()[0] is None

        everything = rest.list_user_checkpoints(limit=1000).result()
        listed = [c.tinker_path for c in everything.checkpoints]
        assert set(paths) <= set(listed) and everything.cursor.total_count == len(listed)
        times = [c.time for c in everything.checkpoints]
        assert times == sorted(times, reverse=True)  # newest first
        mine = [p for p in listed if p in paths]
        assert mine == paths[::-1]  # saved one after another: the last one first
        page = rest.list_user_checkpoints(limit=2, offset=1).result()
        assert [c.tinker_path for c in page.checkpoints] == listed[1:3]
        assert (page.cursor.offset, page.cursor.limit) == (1, 2)

        # Another key sees none of it.
        other = create_key(openrl_bin, server.data_dir, name="lister")
        headers = {"X-API-Key": other}
        assert httpx.get(server.url + f"/api/v1/sessions/{session}", headers=headers).status_code == 404
        assert session not in httpx.get(server.url + "/api/v1/sessions", headers=headers).json()["sessions"]
        assert httpx.get(server.url + "/api/v1/checkpoints", headers=headers).json()["checkpoints"] == []
        # Nor its sampling sessions: neither their description nor sampling from them.
        assert httpx.get(server.url + f"/api/v1/samplers/{got.sampler_ids[0]}", headers=headers).status_code == 404
        stolen = httpx.post(server.url + "/api/v1/asample", headers=headers, json={
            "sampling_session_id": got.sampler_ids[0], "num_samples": 1,
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2, 3]}]},
            "sampling_params": {"max_tokens": 2}})
        assert stolen.status_code == 404 and "unknown" in stolen.text
        r = httpx.get(server.url + "/api/v1/checkpoints?limit=-1", headers={"X-API-Key": server.key})
        assert r.status_code == 400 and "limit" in r.json()["detail"]
    finally:
        sc.close("success").result()


def test_keys_are_isolated_and_limited(openrl_bin, server):
    other = create_key(openrl_bin, server.data_dir, name="other", extra=["--token-quota", "50"])
    mine = service_client(server, server.key).create_lora_training_client(base_model=SMOLLM2_NAME, rank=4).result()
    r = httpx.post(server.url + "/api/v1/get_info", json={"model_id": mine.model_id}, headers={"X-API-Key": other})
    assert r.status_code == 404
    theirs = service_client(server, other).create_lora_training_client(base_model=SMOLLM2_NAME, rank=4).result()
    with pytest.raises(Exception, match="token quota"):
        theirs.forward_backward([datum(list(range(100, 160)))], "cross_entropy").result()
    keys = [line for line in __import__("subprocess").run(
        [str(openrl_bin), "keys", "list", "--data-dir", str(server.data_dir)], capture_output=True, text=True,
        check=True).stdout.splitlines()]
    # One line per key of this module's server: the fixture's, this test's, and those other tests made.
    listed = sorted(__import__("json").loads(k)["name"] for k in keys)
    assert "other" in listed and listed.count("other") == 1 and set(listed) <= {"test", "other", "lister", "canceller", "quota"}
    assert len(listed) == len(set(listed))
    assert all("tml-" not in k for k in keys)  # secrets are never shown again


def test_state_survives_kill_9_bit_for_bit(openrl_bin, tmp_path, tokenizer):
    from safetensors.torch import load_file

    key = create_key(openrl_bin, tmp_path)
    srv = Server(openrl_bin, tmp_path, extra_args=["--session-timeout", "2"]).start()
    try:
        svc = service_client(srv, key)
        tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=9).result()
        ids = tokenizer("Checkpoints must survive a crash, bit for bit.", add_special_tokens=False).input_ids
        adam = types.AdamParams(learning_rate=1e-3, weight_decay=0.01, grad_clip_norm=1.0)
        for _ in range(3):
            tc.forward_backward([datum(ids)], "cross_entropy").result()
            tc.optim_step(adam).result()
        path = tc.save_state("before-crash").result().path
        at_save = tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]
        tc.forward_backward([datum(ids)], "cross_entropy").result()
        tc.optim_step(adam).result()
        uninterrupted = tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]
        run_id = tc.model_id
        # A session without heartbeats expires.
        sess = httpx.post(srv.url + "/api/v1/create_session", json={"tags": [], "sdk_version": "raw"},
                          headers={"X-API-Key": key}).json()["session_id"]
        __import__("time").sleep(3)
        r = httpx.post(srv.url + "/api/v1/create_model", headers={"X-API-Key": key},
                       json={"session_id": sess, "model_seq_id": 0, "base_model": SMOLLM2_NAME,
                             "lora_config": {"rank": 4}})
        assert r.status_code == 400 and "expired" in r.json()["detail"]
    finally:
        srv.kill9()
    srv = Server(openrl_bin, tmp_path).start()
    try:
        svc = service_client(srv, key)
        tc2 = svc.create_training_client_from_state_with_optimizer(path).result()
        again = tc2.save_state("after-restart").result().path
        ckdir = tmp_path / "checkpoints"
        a = ckdir / run_id / "weights" / "before-crash"
        b = ckdir / tc2.model_id / "weights" / "after-restart"
        for f in ("adapter_model.safetensors", "optimizer.safetensors"):
            ta, tb = load_file(a / f), load_file(b / f)
            assert ta.keys() == tb.keys() and len(ta) > 0
            for k in ta:
                assert torch.equal(ta[k], tb[k]), (f, k)
        assert again.endswith("/weights/after-restart")
        tc2.forward_backward([datum(ids)], "cross_entropy").result()
        tc2.optim_step(adam).result()
        resumed = tc2.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]
        assert resumed == uninterrupted
        # Without the optimizer: the same weights, fresh Adam moments (so the next step differs).
        fresh = svc.create_training_client_from_state(path).result()
        assert fresh.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"] == at_save
        fresh.forward_backward([datum(ids)], "cross_entropy").result()
        fresh.optim_step(adam).result()
        assert fresh.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"] != uninterrupted
        # The old run lost its unsaved state: it says so rather than training on stale weights.
        rest = rest_client(srv, key)
        assert rest.get_training_run(run_id).result().training_run_id == run_id
        body = {"model_id": run_id, "seq_id": 0, "forward_backward_input": {
            "loss_fn": "cross_entropy", "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]},
                                                  "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": "int64"}}}]}}
        headers = {"X-API-Key": key}
        fut = httpx.post(srv.url + "/api/v1/forward_backward", json=body, headers=headers).json()["request_id"]
        res = httpx.post(srv.url + "/api/v1/retrieve_future", json={"request_id": fut}, headers=headers, timeout=60).json()
        assert res["category"] == "user" and "restarted" in res["error"]
    finally:
        srv.stop()


def test_a_crash_mid_save_keeps_every_answered_checkpoint_and_leaves_no_debris(openrl_bin, tmp_path, tokenizer):
    """kill -9 while saves write new checkpoints and overwrite one by name: after the restart every
    save that was answered is whole, the overwritten name still holds a whole checkpoint, and what
    the dead process left half-written is gone. One server at a time serves a data directory."""
    import threading
    import time

    from safetensors.torch import load_file

    key = create_key(openrl_bin, tmp_path)
    headers = {"X-API-Key": key}
    ids = tokenizer("A save that dies half-way must not cost the one before it.", add_special_tokens=False).input_ids
    srv = Server(openrl_bin, tmp_path).start()
    try:
        # A second server on the same directory would fail the first's futures as a restart's.
        with pytest.raises(RuntimeError, match=r"data directory \S+ is in use: \S+serve\.lock is locked by "
                                               r"another process \(pid \d+\)"):
            Server(openrl_bin, tmp_path).start()
        svc = service_client(srv, key)
        tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=5).result()
        tc.forward_backward([datum(ids)], "cross_entropy").result()
        tc.optim_step(types.AdamParams(learning_rate=1e-3)).result()
        kept = tc.save_state("kept").result().path
        loss_at_save = tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]
        run_id = tc.model_id
        weights_dir = tmp_path / "checkpoints" / run_id / "weights"
        reference = {f: load_file(weights_dir / "kept" / f) for f in ("adapter_model.safetensors", "optimizer.safetensors")}

        answered, stop = [], threading.Event()

        def save_loop():  # raw HTTP: the SDK would go on retrying against the dead server
            i = 0
            while not stop.is_set():
                name = "kept" if i % 2 == 0 else f"extra-{i}"
                i += 1
                try:
                    r = httpx.post(srv.url + "/api/v1/save_weights", json={"model_id": run_id, "path": name,
                                                                         "overwrite": name == "kept"},
                                   headers=headers, timeout=30)
                    fut = r.json()["request_id"]
                    while True:
                        res = httpx.post(srv.url + "/api/v1/retrieve_future", json={"request_id": fut},
                                         headers=headers, timeout=60)
                        if res.status_code != 408:
                            break
                    answered.append(res.json()["path"])
                except (httpx.HTTPError, KeyError, ValueError):
                    return

        saver = threading.Thread(target=save_loop)
        saver.start()
        staging = []
        deadline = time.time() + 60
        while not staging and time.time() < deadline:
            if len(answered) < 4:  # some saves answered first, new names and the overwritten one
                time.sleep(0.005)
                continue
            staging = [p for p in weights_dir.iterdir() if ".partial-" in p.name]
        srv.kill9()  # as soon as a save is half-written
        stop.set()
        saver.join()
    finally:
        srv.kill9() if srv.proc.poll() is None else None
    assert staging, ("no save was seen half-written", answered)
    left = [p.name for p in weights_dir.iterdir() if ".partial-" in p.name]
    # What a crash between a delete's row and its files, and an interrupted offload, leave behind.
    (weights_dir / "deleted-but-left").mkdir()
    (weights_dir / "deleted-but-left" / "adapter_model.safetensors").write_bytes(b"stale")
    (tmp_path / "offload").mkdir(exist_ok=True)
    (tmp_path / "offload" / f"{run_id}.partial-0123abcd").mkdir()
    (tmp_path / "checkpoints" / run_id / "notes").mkdir()  # not a checkpoint kind: not judged

    srv = Server(openrl_bin, tmp_path).start()
    try:
        debris = [p for p in (tmp_path / "checkpoints").rglob("*") if ".partial-" in p.name]
        debris += [p for p in (tmp_path / "offload").iterdir() if ".partial" in p.name]
        assert debris == [], debris
        assert not (weights_dir / "deleted-but-left").exists()
        assert (tmp_path / "checkpoints" / run_id / "notes").is_dir()
        log = srv.log_path.read_text()
        assert left and all(f"{n} (no checkpoint names it" in log for n in left), (left, log[-2000:])
        # Every answered save is whole; with no step between them, each holds the same tensors.
        rest = rest_client(srv, key)
        listed = {c.checkpoint_id for c in rest.list_checkpoints(run_id).result().checkpoints}
        for path in set(answered) | {kept}:
            name = path.rsplit("/", 1)[1]
            assert f"weights/{name}" in listed, (path, listed)
            for f, tensors in reference.items():
                got = load_file(weights_dir / name / f)
                assert got.keys() == tensors.keys()
                assert all(torch.equal(got[k], tensors[k]) for k in tensors), (name, f)
        svc = service_client(srv, key)
        again = svc.create_training_client_from_state_with_optimizer(kept).result()
        assert again.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"] == loss_at_save
    finally:
        srv.stop()


def test_concurrent_runs_are_packed_into_one_pass_with_their_own_results(svc, server, tokenizer):
    """Two runs' forward_backward sent together share one pass; each run's loss, logprobs and next
    step equal what the run gets alone."""
    texts = ["Packing keeps every run's gradients its own.", "Two adapters, one base model, one pass."]
    ids = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    a = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=21).result()
    b = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=22).result()
    adam = types.AdamParams(learning_rate=1e-2)
    # Make the two adapters differ, one run at a time.
    a.forward_backward([datum(ids[0])], "cross_entropy").result()
    a.optim_step(adam).result()
    alone = [a.forward([datum(ids[0]), datum(ids[1])], "cross_entropy").result(),
             b.forward([datum(ids[0]), datum(ids[1])], "cross_entropy").result()]

    def passes():
        m = server.metrics()
        return m["openrl_engine_runs_per_pass_count"], m['openrl_engine_runs_per_pass_bucket{le="1"}']

    count0, single0 = passes()
    for _ in range(3):  # the two submits land in the same cycle (the engine gathers for a moment)
        fa = a.forward_backward([datum(ids[0]), datum(ids[1])], "cross_entropy")
        fb = b.forward_backward([datum(ids[0]), datum(ids[1])], "cross_entropy")
        together = [fa.result(), fb.result()]
        count1, single1 = passes()
        if count1 - count0 > single1 - single0:
            break
        a.optim_step(types.AdamParams(learning_rate=0.0)).result()  # clear the gradients and try again
        b.optim_step(types.AdamParams(learning_rate=0.0)).result()
        count0, single0 = count1, single1
    assert count1 - count0 > single1 - single0, "the two runs were never packed into one pass"
    # Equal up to float reassociation: the packed pass pads to other shapes, so matmuls block differently.
    for got, want in zip(together, alone):
        assert got.metrics["loss:sum"] == pytest.approx(want.metrics["loss:sum"], rel=1e-5, abs=1e-4)
        for g, w in zip(got.loss_fn_outputs, want.loss_fn_outputs):
            np.testing.assert_allclose(g["logprobs"].data, w["logprobs"].data, atol=1e-4)


def test_the_engine_waits_to_gather_only_for_another_active_client(openrl_bin, tmp_path, tokenizer):
    """The gather window (a moment's wait at an idle engine so other clients' requests share the
    cycle) is spent only when another client that sent work lately has none queued: a lone run,
    with the sampling clients of its own weights, never waits; a second run makes the next cycle wait."""
    ids = tokenizer("Waiting only pays when someone else is coming.", add_special_tokens=False).input_ids
    key = create_key(openrl_bin, tmp_path)
    srv = Server(openrl_bin, tmp_path).start()
    try:
        svc = service_client(srv, key)

        def waits():
            return srv.metrics().get("openrl_engine_gather_waits_total", 0.0)

        a = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=41).result()
        params = types.SamplingParams(max_tokens=2, temperature=0.0)
        before = waits()
        for _ in range(2):
            a.forward([datum(ids)], "cross_entropy").result()
            a.forward_backward([datum(ids)], "cross_entropy").result()
            a.optim_step(types.AdamParams(learning_rate=1e-3)).result()
            sampler = a.save_weights_and_get_sampling_client().result()
            sampler.sample(types.ModelInput.from_ints(ids), num_samples=1, sampling_params=params).result()
        assert waits() == before, "a lone client waited for nobody"
        b = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=42).result()
        b.forward([datum(ids)], "cross_entropy").result()  # run a sent work moments ago, none queued now
        assert waits() == before + 1
        svc.close("success").result()
    finally:
        srv.stop()


def test_memory_budget_offloads_runs_and_brings_them_back_exactly(openrl_bin, tmp_path, server, svc, tokenizer):
    """With room for one run in memory, two runs take turns: each turn offloads the other run's adapter
    and Adam moments to disk and brings them back. Every loss equals that of the same sequence on the
    unconstrained module server, and the offloaded state survives a kill -9."""
    ids = tokenizer("Offloaded runs come back exactly as they left.", add_special_tokens=False).input_ids
    adam = types.AdamParams(learning_rate=1e-3)

    def turns(client_a, client_b):
        losses = []
        for _ in range(2):
            for c in (client_a, client_b):
                losses.append(c.forward_backward([datum(ids)], "cross_entropy").result().metrics["loss:sum"])
                c.optim_step(adam).result()
        return losses

    want = turns(svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=31).result(),
                 svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=32).result())
    key = create_key(openrl_bin, tmp_path)
    srv = Server(openrl_bin, tmp_path, extra_args=["--max-resident-runs", "1"]).start()
    try:
        small = service_client(srv, key)
        a = small.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=31).result()
        b = small.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=32).result()
        assert turns(a, b) == want
        assert srv.metrics()["openrl_engine_offloads_total"] >= 3
        a_next = a.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]
        b.forward([datum(ids)], "cross_entropy").result()  # a is offloaded right after this cycle
        offloaded = tmp_path / "offload" / a.model_id / "optimizer.safetensors"
        for _ in range(100):
            if offloaded.exists():
                break
            __import__("time").sleep(0.1)
        assert offloaded.exists()
    finally:
        srv.kill9()
    srv = Server(openrl_bin, tmp_path, extra_args=["--max-resident-runs", "1"]).start()
    try:
        body = {"model_id": a.model_id, "seq_id": 0, "forward_backward_input": {
            "loss_fn": "cross_entropy", "forward_only": True,
            "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]},
                      "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": "int64"}}}]}}
        headers = {"X-API-Key": key, "Accept": "application/x-protobuf"}
        fut = httpx.post(srv.url + "/api/v1/forward_backward", json=body, headers=headers).json()["request_id"]
        res = httpx.post(srv.url + "/api/v1/retrieve_future", json={"request_id": fut}, headers=headers, timeout=60)
        assert res.headers["content-type"] == "application/x-protobuf", res.text
        from tinker.proto.response_conv import deserialize_forward_backward_output
        assert deserialize_forward_backward_output(res.content).metrics["loss:sum"] == a_next
    finally:
        srv.stop()


def test_full_finetuning_run_trains_every_weight_and_saves_a_model_directory(svc, server, tokenizer):
    """LoRA rank 0 asks for full fine-tuning (beyond Tinker): a private copy of every weight, its own
    passes, checkpoints as full Hugging Face directories that transformers loads; sampling from its
    weights agrees with compute_logprobs."""
    import transformers

    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=0).result()
    info = tc.get_info()
    assert info.is_lora is False and info.lora_rank is None
    ids = tokenizer("Full fine-tuning moves every weight of the model.", add_special_tokens=False).input_ids
    losses = []
    for _ in range(3):
        losses.append(tc.forward_backward([datum(ids)], "cross_entropy").result().metrics["loss:sum"])
        tc.optim_step(types.AdamParams(learning_rate=1e-4)).result()
    assert losses[2] < losses[1] < losses[0], losses
    after = tc.forward([datum(ids)], "cross_entropy").result()
    path = tc.save_weights_for_sampler("full").result().path
    run_dir = server.data_dir / "checkpoints" / tc.model_id / "sampler_weights" / "full"
    hf = transformers.AutoModelForCausalLM.from_pretrained(run_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        logits = hf(torch.tensor([ids[:-1]])).logits[0]
    theirs = torch.log_softmax(logits, -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    np.testing.assert_allclose(after.loss_fn_outputs[0]["logprobs"].data, theirs.numpy(), atol=1e-4)
    # Another LoRA run on the same base is untouched by this run's training.
    other = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=40).result()
    base_loss = other.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]
    assert base_loss == pytest.approx(losses[0], rel=1e-5)
    sampler = svc.create_sampling_client(model_path=path).result()
    prompt = ids[:5]
    res = sampler.sample(prompt=types.ModelInput.from_ints(prompt), num_samples=1,
                         sampling_params=types.SamplingParams(max_tokens=5, temperature=1.0, seed=3)).result()
    lp = sampler.compute_logprobs(types.ModelInput.from_ints(prompt + res.sequences[0].tokens)).result()
    np.testing.assert_allclose(lp[len(prompt):], res.sequences[0].logprobs, atol=1e-4)
    # save_state / load_state round trip into a new full fine-tuning run.
    state = tc.save_state("full-state").result().path
    again = svc.create_training_client_from_state_with_optimizer(state).result()
    assert again.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"] == after.metrics["loss:sum"]


def _post(server, path, body, key=None):
    headers = {"X-API-Key": key or server.key, "Accept": "application/x-protobuf, application/json"}
    r = httpx.post(server.url + path, json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r


def _result(server, request_id):
    return _post(server, "/api/v1/retrieve_future", {"request_id": request_id})


def _result_for(server, request_id, key):
    r = _post(server, "/api/v1/retrieve_future", {"request_id": request_id}, key)
    body = r.json()
    assert "error" not in body, body
    return body


def test_requests_of_a_run_execute_in_seq_id_order_whatever_order_they_arrive(server, tokenizer):
    """The SDK sends the chunks of one call concurrently, the first one last: the server must hold a
    later seq_id until the earlier ones ran. Here optim_step (seq 2) arrives before the
    forward_backward (seq 1) whose gradients it applies."""
    sess = _post(server, "/api/v1/create_session", {"tags": [], "sdk_version": "raw"}).json()["session_id"]
    created = _post(server, "/api/v1/create_model", {"session_id": sess, "model_seq_id": 0, "base_model": SMOLLM2_NAME,
                                                     "lora_config": {"rank": 4}}).json()
    model_id = created["model_id"]
    assert _result(server, created["request_id"]).json()["model_id"] == model_id == f"{sess}:train:0"
    ids = tokenizer("Order matters.", add_special_tokens=False).input_ids
    optim = _post(server, "/api/v1/optim_step", {"model_id": model_id, "seq_id": 2,
                                                 "adam_params": {"learning_rate": 1e-3}}).json()["request_id"]
    fb_body = {"model_id": model_id, "seq_id": 1, "forward_backward_input": {
        "loss_fn": "cross_entropy",
        "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]},
                  "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": "int64"}}}]}}
    fb = _post(server, "/api/v1/forward_backward", fb_body).json()["request_id"]
    step = _result(server, optim).json()
    assert "error" not in step and step["metrics"]["grad_norm"] > 0, step
    assert _result(server, fb).headers["content-type"] == "application/x-protobuf"
    # A retry of seq 1 with the same body is the same future; a different body with it is refused.
    assert _post(server, "/api/v1/forward_backward", fb_body).json()["request_id"] == fb
    fb_body["forward_backward_input"]["data"][0]["model_input"]["chunks"][0]["tokens"] = ids[:-1][::-1]
    r = httpx.post(server.url + "/api/v1/forward_backward", json=fb_body, headers={"X-API-Key": server.key})
    assert r.status_code == 400 and "already used" in r.json()["detail"]


def test_token_quota_charges_each_accepted_request_once(openrl_bin, server):
    """A key's quota is charged when a request is accepted: not again for the SDK's retry of the same
    request, not for a request the server refuses, and a request past the quota is refused (403)
    without a charge and without holding up the run's later requests."""
    key = create_key(openrl_bin, server.data_dir, name="quota", extra=["--token-quota", "100"])

    def used():
        r = httpx.get(server.url + "/api/v1/auth/apikey/me", headers={"X-API-Key": key})
        assert r.status_code == 200, r.text
        return r.json()["tokens_used"]

    def fb(model_id, seq, n):
        tokens = list(range(100, 101 + n))
        return {"model_id": model_id, "seq_id": seq, "forward_backward_input": {
            "loss_fn": "cross_entropy",
            "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": tokens[:-1]}]},
                      "loss_fn_inputs": {"target_tokens": {"data": tokens[1:], "dtype": "int64"}}}]}}

    sess = _post(server, "/api/v1/create_session", {"tags": [], "sdk_version": "raw"}, key).json()["session_id"]
    model_id = _post(server, "/api/v1/create_model", {"session_id": sess, "model_seq_id": 0, "base_model": SMOLLM2_NAME,
                                                      "lora_config": {"rank": 4}}, key).json()["model_id"]
    first = _post(server, "/api/v1/forward_backward", fb(model_id, 1, 20), key).json()["request_id"]
    assert used() == 20
    # The SDK's retry of the same request is the same future, charged once.
    assert _post(server, "/api/v1/forward_backward", fb(model_id, 1, 20), key).json()["request_id"] == first
    assert used() == 20
    # A request the engine refuses (a run made by copy_weights cannot be trained) is not charged.
    state = _post(server, "/api/v1/save_weights", {"model_id": model_id, "seq_id": 2, "path": "q"}, key).json()
    path = _result_for(server, state["request_id"], key)["path"]
    _post(server, "/api/v1/copy_weights", {"source_path": path, "session_id": sess, "model_seq_id": 7}, key)
    frozen = httpx.post(server.url + "/api/v1/forward_backward", json=fb(f"{sess}:train:7", 1, 30),
                        headers={"X-API-Key": key})
    assert frozen.status_code == 400 and "copy_weights" in frozen.json()["detail"], frozen.text
    assert used() == 20
    # Past the quota: 403, nothing charged, and the run's next seq_id still runs.
    over = httpx.post(server.url + "/api/v1/forward_backward", json=fb(model_id, 3, 81), headers={"X-API-Key": key})
    assert over.status_code == 403 and "token quota" in over.json()["detail"], over.text
    assert used() == 20
    last = _post(server, "/api/v1/forward_backward", fb(model_id, 4, 80), key).json()["request_id"]
    done = _post(server, "/api/v1/retrieve_future", {"request_id": last}, key)
    assert done.headers["content-type"] == "application/x-protobuf", done.text
    assert used() == 100
    # Sampling is charged prompt + num_samples * max_tokens, and refused past the quota.
    sample = httpx.post(server.url + "/api/v1/asample", headers={"X-API-Key": key}, json={
        "base_model": SMOLLM2_NAME, "session_id": sess, "num_samples": 1,
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2, 3]}]}, "sampling_params": {"max_tokens": 2}})
    assert sample.status_code == 403 and "token quota" in sample.json()["detail"], sample.text
    assert used() == 100


def test_checkpoint_ttl_expires_it_for_clients(svc, server, tokenizer):
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=50).result()
    saved = _post(server, "/api/v1/save_weights", {"model_id": tc.model_id, "seq_id": 0, "path": "short-lived",
                                                   "ttl_seconds": 1}).json()["request_id"]
    path = _result(server, saved).json()["path"]
    kept = tc.save_state("kept").result().path
    rest = rest_client(server, server.key)
    listed = {c.tinker_path: c for c in rest.list_checkpoints(tc.model_id).result().checkpoints}
    assert listed[path].expires_at is not None and listed[kept].expires_at is None
    __import__("time").sleep(1.5)
    assert [c.tinker_path for c in rest.list_checkpoints(tc.model_id).result().checkpoints] == [kept]
    with pytest.raises(Exception, match="does not exist"):
        tc.load_state(path).result()
    tc.load_state(kept).result()


def test_kv_cache_budget_defers_sample_requests_and_refuses_what_cannot_fit(openrl_bin, tmp_path, tokenizer):
    """--max-kv-cache-mb bounds the keys and values of a model's running generations: requests that
    would go past it wait for rows to finish (and then give the same tokens as alone), and one that
    needs more on its own is refused with a 400 saying how much it needs. SmolLM2 in fp32 takes
    46080 bytes per token, so 4 MiB hold 91: one request of 4 x (prompt + 8) tokens, not two."""
    key = create_key(openrl_bin, tmp_path)
    srv = Server(openrl_bin, tmp_path, extra_args=["--max-kv-cache-mb", "4"]).start()
    try:
        svc = service_client(srv, key)
        sampler = svc.create_sampling_client(base_model=SMOLLM2_NAME).result()
        ids = tokenizer("The budget keeps the cache small.", add_special_tokens=False).input_ids
        prompt = types.ModelInput.from_ints(ids)
        params = types.SamplingParams(max_tokens=8, temperature=0.0)
        alone = [s.tokens for s in sampler.sample(prompt, num_samples=4, sampling_params=params).result().sequences]

        def deferrals():
            return srv.metrics().get("openrl_engine_sample_deferrals_total", 0.0)

        before = deferrals()
        futures = [sampler.sample(prompt, num_samples=4, sampling_params=params) for _ in range(3)]
        for f in futures:
            assert [s.tokens for s in f.result().sequences] == alone
        assert deferrals() > before, "three concurrent requests never waited for room"
        with pytest.raises(Exception, match=r"KV cache would take \d+ MiB \(num_samples 24 .* at most 4 MiB"):
            sampler.sample(prompt, num_samples=24, sampling_params=params).result()
        svc.close("success").result()
    finally:
        srv.stop()


def test_a_short_sample_request_joins_a_running_generation_and_finishes_first(svc, tokenizer):
    """Continuous batching: a request that arrives while a long generation runs joins it between
    decode steps, instead of waiting for the whole generation; both results stay exact."""
    import threading

    sampler = svc.create_sampling_client(base_model=SMOLLM2_NAME).result()
    prompt = types.ModelInput.from_ints(tokenizer("Count slowly:", add_special_tokens=False).input_ids)
    finished = {}

    def run(name, max_tokens, delay):
        __import__("time").sleep(delay)
        res = sampler.sample(prompt=prompt, num_samples=1, sampling_params=types.SamplingParams(
            max_tokens=max_tokens, temperature=1.0, seed=5, stop=[])).result()
        finished[name] = (__import__("time").monotonic(), res.sequences[0])

    threads = [threading.Thread(target=run, args=("long", 160, 0.0)),
               threading.Thread(target=run, args=("short", 3, 1.0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(finished["long"][1].tokens) == 160 and len(finished["short"][1].tokens) == 3
    assert finished["short"][0] < finished["long"][0], "the short request waited for the long generation"
    # Same seed, same prompt: the short one is the long one's first tokens, whatever it joined.
    assert finished["short"][1].tokens == finished["long"][1].tokens[:3]
    lp = sampler.compute_logprobs(types.ModelInput.from_ints(prompt.to_ints() + finished["long"][1].tokens)).result()
    np.testing.assert_allclose(lp[prompt.length:], finished["long"][1].logprobs, atol=1e-4)


def test_cancelling_a_sample_future_stops_its_generation(openrl_bin, svc, server, tokenizer):
    """The SDK cancels an abandoned sample request (its future cancelled, or timed out) through
    POST /cancel_future, which the server enables: the rows leave the running generation at once,
    the other requests in it finish unchanged, and the cancelled future fails as CANCELLED."""
    import time

    def rows():
        return server.metrics().get("openrl_engine_generation_rows", 0.0)

    def wait_until(cond, what, seconds=60.0):
        deadline = time.monotonic() + seconds
        while not cond():
            assert time.monotonic() < deadline, what
            time.sleep(0.05)

    sampler = svc.create_sampling_client(base_model=SMOLLM2_NAME).result()
    prompt = types.ModelInput.from_ints(tokenizer("Count slowly:", add_special_tokens=False).input_ids)
    params = types.SamplingParams(max_tokens=2000, temperature=1.0, seed=5, stop=[])
    doomed = sampler.sample(prompt=prompt, num_samples=2, sampling_params=params)
    kept = sampler.sample(prompt=prompt, num_samples=1, sampling_params=types.SamplingParams(
        max_tokens=40, temperature=1.0, seed=9, stop=[]))
    wait_until(lambda: rows() >= 3, "the two requests never decoded together")
    doomed.future().cancel()  # what asyncio cancellation or result_async(timeout=...) does
    # The doomed rows leave long before their 2000 tokens; the kept request finishes in full.
    wait_until(lambda: rows() <= 1, "the cancelled rows were still decoding")
    res = kept.result()
    assert len(res.sequences[0].tokens) == 40
    lp = sampler.compute_logprobs(types.ModelInput.from_ints(prompt.to_ints() + res.sequences[0].tokens)).result()
    np.testing.assert_allclose(lp[prompt.length:], res.sequences[0].logprobs, atol=1e-4)
    wait_until(lambda: rows() == 0, "the engine went on decoding")
    # On the wire: the cancelled future fails as CANCELLED for its owner; a finished one is left
    # alone; another key's or an unknown id is 404.
    key = {"X-API-Key": server.key}
    session = svc.holder.get_session_id()
    smp = httpx.post(server.url + "/api/v1/create_sampling_session", headers=key,
                     json={"session_id": session, "sampling_session_seq_id": 99, "base_model": SMOLLM2_NAME}).json()
    body = {"sampling_session_id": smp["sampling_session_id"], "num_samples": 1,
            "prompt": {"chunks": [{"type": "encoded_text", "tokens": prompt.to_ints()}]},
            "sampling_params": {"max_tokens": 2000, "temperature": 1.0, "seed": 5}}
    req_id = httpx.post(server.url + "/api/v1/asample", headers=key, json=body).json()["request_id"]
    wait_until(lambda: rows() >= 1, "the raw request never decoded")
    other = {"X-API-Key": create_key(openrl_bin, server.data_dir, name="canceller")}
    assert httpx.post(server.url + "/api/v1/cancel_future", headers=other, json={"request_id": req_id}).status_code == 404
    c = httpx.post(server.url + "/api/v1/cancel_future", headers=key, json={"request_id": req_id})
    assert c.status_code == 200 and c.json()["state"] == "cancelling", c.text
    wait_until(lambda: rows() == 0, "the cancelled request went on decoding")
    r = httpx.post(server.url + "/api/v1/retrieve_future", headers=key, json={"request_id": req_id}, timeout=60)
    assert "cancelled by its client" in r.text, r.text
    again = httpx.post(server.url + "/api/v1/cancel_future", headers=key, json={"request_id": req_id})
    assert again.status_code == 200 and again.json()["state"] == "failed"
    assert httpx.post(server.url + "/api/v1/cancel_future", headers=key, json={"request_id": "nope"}).status_code == 404
    # A new request on the same sampler runs normally afterwards.
    again = sampler.sample(prompt=prompt, num_samples=1, sampling_params=types.SamplingParams(
        max_tokens=3, temperature=1.0, seed=5, stop=[])).result()
    assert len(again.sequences[0].tokens) == 3


def test_metrics_report_the_weights_a_base_model_holds(svc, server, tokenizer, real_ggufs):
    """`openrl_model_weight_bytes` shows the base model's parameters and the copies made for
    inference. Training and prefill read the parameters in place; only an fp32 model on CPU holds
    one copy of its projection and head weights (the decode steps' blocked layout): never more."""
    import gguf
    from tinker_server import SMOLLM2_GGUF

    tensors = gguf.GGUFReader(str(SMOLLM2_GGUF)).tensors
    n_params = sum(int(t.n_elements) for t in tensors)
    n_norms = sum(int(t.n_elements) for t in tensors if "norm" in t.name)
    ids = tokenizer("Weights are read in place.", add_special_tokens=False).input_ids
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4, seed=3).result()
    tc.forward_backward([datum(ids)], "cross_entropy").result()
    sampler = svc.create_sampling_client(base_model=SMOLLM2_NAME).result()
    sampler.sample(prompt=types.ModelInput.from_ints(ids), num_samples=2,
                   sampling_params=types.SamplingParams(max_tokens=4, temperature=1.0, seed=1)).result()
    import time

    def reported():
        m = server.metrics()
        name = 'openrl_model_weight_bytes{model="' + SMOLLM2_NAME + '",kind="%s"}'
        return m.get(name % "parameters"), m.get(name % "copies")

    on_cpu = "cuda" not in os.environ.get("OPENRL_SERVE_ARGS", "")

    def expected_copies(params):  # fp32 on CPU: one blocked copy of all but the norms
        return 4 * (n_params - n_norms) if params == 4 * n_params and on_cpu else 0

    deadline = time.monotonic() + 10  # the gauges are set when the engine finishes a cycle
    params, copies = reported()
    while (params is None or copies != expected_copies(params)) and time.monotonic() < deadline:
        time.sleep(0.05)
        params, copies = reported()
    assert params in (4 * n_params, 2 * n_params), (params, n_params)
    assert copies == expected_copies(params), (copies, expected_copies(params))


def test_mutated_forward_backward_bodies_never_get_an_internal_error(svc, server, tokenizer):
    """Fuzzing through the real server, seeded: forward_backward bodies made from valid ones —
    protobuf bytes flipped, inserted or cut, fields set to hostile values (shapes, dtypes, ragged
    byte lengths, NaN configs, unknown losses), zstd streams corrupted, JSON fields of the wrong
    type. Each gets a 4xx, or is accepted and its future ends as a result or a user error: never a
    5xx, a server-category failure or a dead server. The run is unchanged afterwards."""
    import time

    import zstandard
    from tinker.proto import tinker_public_pb2 as pb

    rng = random.Random(20261207)
    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=2, seed=4).result()
    ids = tokenizer("Fuzzing the wire format, byte by byte.", add_special_tokens=False).input_ids
    before = tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"]
    T = len(ids) - 1
    losses = ["cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo"]

    def tensor(t, arr, dtype):
        t.dtype = dtype
        t.shape.extend(arr.shape)
        t.dense = arr.tobytes()

    def valid_request(loss):
        req = pb.ForwardBackwardRequest(model_id=tc.model_id, seq_id=0, loss_fn=loss, forward_only=rng.random() < 0.5)
        d = req.data.add()
        d.model_input.add().encoded_text.tokens = np.array(ids[:-1], dtype=np.int32).tobytes()
        tensor(d.loss_fn_inputs["target_tokens"], np.array(ids[1:], np.int64), pb.DTYPE_INT64)
        tensor(d.loss_fn_inputs["weights"], np.ones(T, np.float32), pb.DTYPE_FLOAT32)
        if loss != "cross_entropy":
            tensor(d.loss_fn_inputs["logprobs"], -np.ones(T, np.float32), pb.DTYPE_FLOAT32)
            tensor(d.loss_fn_inputs["advantages"], np.linspace(-1, 1, T).astype(np.float32), pb.DTYPE_FLOAT32)
        if loss == "dro":
            req.loss_fn_config["beta"] = 0.1
        if loss == "gspo":
            tensor(d.loss_fn_inputs["sequence_ratio_mask"], np.ones(T, np.float32), pb.DTYPE_FLOAT32)
        return req

    hostile_ints = [0, -1, 1, 2, 3, 7, T, T + 1, 1024, 1025, 2 ** 31, 2 ** 40, -(2 ** 63)]
    hostile_floats = [float("nan"), float("inf"), -float("inf"), 0.0, -1.0, 1e30, 1e-45]

    def structural(req):
        d = req.data[0]
        name = rng.choice(list(d.loss_fn_inputs.keys()))
        t = d.loss_fn_inputs[name]
        what = rng.randrange(9)
        if what == 0:
            del t.shape[:]
            t.shape.extend(rng.choice(hostile_ints) for _ in range(rng.randrange(0, 4)))
        elif what == 1:
            t.dtype = rng.choice([0, 1, 2, 3, 4, 5, 99])
        elif what == 2:
            t.dense = t.dense[: rng.randrange(0, len(t.dense) + 1)] + bytes(rng.randrange(0, 3))
        elif what == 3:
            t.sparse_csr.crow_indices = np.array([rng.choice(hostile_ints) for _ in range(rng.randrange(0, T + 3))], np.int64).tobytes()
            t.sparse_csr.col_indices = np.array([rng.choice(hostile_ints) for _ in range(rng.randrange(0, 5))], np.int64).tobytes()
            t.sparse_csr.values = bytes(rng.randrange(0, 40))
        elif what == 4:
            d.model_input[0].encoded_text.tokens = bytes(rng.randrange(0, 4 * T + 3))
        elif what == 5:
            d.model_input[0].encoded_text.tokens = np.array([rng.choice(hostile_ints) for _ in range(T)], np.int64).astype(np.int32).tobytes()
        elif what == 6:
            req.loss_fn_config[rng.choice(["beta", "clip_low_threshold", "clip_high_threshold", "x"])] = rng.choice(hostile_floats)
        elif what == 7:
            req.loss_fn = rng.choice(["", "custom", "stable_reinforce", "no_such_loss", "cross_entropy\x00"])
        else:
            arr = np.array([rng.choice(hostile_floats) for _ in range(T)], np.float32)
            t.dense = arr.tobytes() if t.dtype == pb.DTYPE_FLOAT32 else t.dense
        return req.SerializeToString()

    def bytewise(body):
        b = bytearray(body)
        for _ in range(rng.randrange(1, 5)):
            op = rng.randrange(3)
            if op == 0 and b:
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
            elif op == 1:
                b[rng.randrange(len(b) + 1):rng.randrange(len(b) + 1)] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
            elif b:
                del b[rng.randrange(len(b)):]
        return bytes(b)

    key = {"X-API-Key": server.key}
    proto = {**key, "Content-Type": "application/x-protobuf"}
    accepted, refused = [], 0
    for i in range(360):
        loss = rng.choice(losses)
        kind = i % 4
        headers = proto
        if kind == 0:
            content = structural(valid_request(loss))
        elif kind == 1:
            content = bytewise(valid_request(loss).SerializeToString())
        elif kind == 2:
            packed = zstandard.ZstdCompressor().compress(valid_request(loss).SerializeToString())
            content, headers = bytewise(packed), {**proto, "Content-Encoding": "zstd"}
        else:
            body = {"model_id": tc.model_id, "seq_id": 0, "forward_backward_input": {
                "loss_fn": loss, "data": [{"model_input": {"chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]},
                                           "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": "int64"}}}]}}
            slot = rng.choice(["loss_fn", "data", "chunks", "tokens", "target", "dtype", "model_id", "seq_id"])
            value = rng.choice([None, -1, 2 ** 64, "x", [], {}, [None], [1.5], float("nan"), True])
            d0 = body["forward_backward_input"]["data"][0]
            if slot in ("loss_fn", "data"):
                body["forward_backward_input"][slot] = value
            elif slot == "chunks":
                d0["model_input"]["chunks"] = value
            elif slot == "tokens":
                d0["model_input"]["chunks"][0]["tokens"] = value
            elif slot == "target":
                d0["loss_fn_inputs"]["target_tokens"]["data"] = value
            elif slot == "dtype":
                d0["loss_fn_inputs"]["target_tokens"]["dtype"] = value
            else:
                body[slot] = value
            content, headers = json.dumps(body).encode(), {**key, "Content-Type": "application/json"}
        r = httpx.post(server.url + "/api/v1/forward_backward", content=content, headers=headers, timeout=60)
        assert r.status_code < 500, (i, r.status_code, r.text)
        if r.status_code == 200:
            accepted.append((i, r.json()["request_id"]))
        else:
            refused += 1
            assert "detail" in r.json(), (i, r.text)  # problem+json, readable
    assert refused > 100 and accepted, (refused, len(accepted))  # both paths were exercised
    for i, request_id in accepted:
        deadline = time.monotonic() + 120
        r = _result(server, request_id)
        while r.status_code == 408 and time.monotonic() < deadline:  # still pending: poll again
            r = _result(server, request_id)
        assert r.status_code == 200, (i, r.status_code, r.text)
        if r.headers["content-type"].startswith("application/json"):
            body = r.json()
            assert "error" not in body or body["category"] == "user", (i, body)
    assert httpx.get(server.url + "/healthz").status_code == 200
    # Accepted bodies only accumulated gradients (or nothing): the weights are as they were.
    assert tc.forward([datum(ids)], "cross_entropy").result().metrics["loss:sum"] == before


def test_sampling_fields_of_the_wrong_type_are_refused_not_skipped(server, tokenizer):
    """A sample request's fields of the wrong type were skipped: {"temperature": "0"} sampled at 1.0,
    {"num_samples": 2.5} gave 2, {"prompt_logprobs": "true"} gave none. Each is a 400 naming the field;
    null means the default; top-K alternatives are capped (a huge K over a long prompt is gigabytes)."""
    key = {"X-API-Key": server.key}
    sess = _post(server, "/api/v1/create_session", {"tags": [], "sdk_version": "raw"}).json()["session_id"]
    smp = _post(server, "/api/v1/create_sampling_session",
                {"session_id": sess, "sampling_session_seq_id": 1, "base_model": SMOLLM2_NAME}).json()["sampling_session_id"]
    ids = tokenizer("Types matter.", add_special_tokens=False).input_ids
    good = {"sampling_session_id": smp, "num_samples": 1, "prompt": {"chunks": [{"type": "encoded_text", "tokens": ids}]},
            "sampling_params": {"max_tokens": 2, "temperature": 0.0, "seed": 1}}
    cases = [({"sampling_params": {**good["sampling_params"], "temperature": "0"}}, "sampling_params: field 'temperature' must be number, got string"),
             ({"sampling_params": {**good["sampling_params"], "top_p": [1]}}, "sampling_params: field 'top_p' must be number, got array"),
             ({"sampling_params": {**good["sampling_params"], "seed": 1.5}}, "sampling_params: field 'seed' must be integer, got number"),
             ({"sampling_params": {**good["sampling_params"], "top_k": "5"}}, "sampling_params: field 'top_k' must be integer, got string"),
             ({"num_samples": 2.5}, "request: field 'num_samples' must be integer, got number"),
             ({"prompt_logprobs": "true"}, "request: field 'prompt_logprobs' must be boolean, got string"),
             ({"topk_prompt_logprobs": 3.0}, "request: field 'topk_prompt_logprobs' must be integer, got number"),
             ({"topk_prompt_logprobs": 5000}, "field 'topk_prompt_logprobs' must be in 0..1024, got 5000"),
             ({"topk_sample_logprobs": -1}, "field 'topk_sample_logprobs' must be in 0..1024, got -1")]
    for change, why in cases:
        r = httpx.post(server.url + "/api/v1/asample", json={**good, **change}, headers=key, timeout=60)
        assert r.status_code == 400 and why in r.json()["detail"], (change, r.status_code, r.text[:300])
    nulls = {**good, "num_samples": None, "prompt_logprobs": None, "topk_prompt_logprobs": None,
             "sampling_params": {**good["sampling_params"], "top_p": None, "top_k": None}}
    r = httpx.post(server.url + "/api/v1/asample", json=nulls, headers=key, timeout=60)
    assert r.status_code == 200 and "request_id" in r.json(), r.text[:300]
    res = _result(server, r.json()["request_id"])
    assert res.headers["content-type"].startswith("application/x-protobuf"), res.text[:300]


def test_training_fields_of_the_wrong_type_are_refused_not_dropped(server, tokenizer):
    """save_state's ttl_seconds "3600" was dropped (the checkpoint would never expire) and a path of 5
    saved under a made-up name; lora_config rank 2.5 became 2; forward_only "true" ran a backward pass;
    a dtype of 7 read float32; a session's project_id of 5 was none. Each is now a 400 naming the field,
    and nothing was saved or trained."""
    key = {"X-API-Key": server.key}
    for field in ("project_id", "display_name"):  # were read as none
        r = httpx.post(server.url + "/api/v1/create_session", headers=key,
                       json={"tags": [], "sdk_version": "raw", field: 5})
        assert r.status_code == 400 and f"request: field '{field}' must be string, got integer" in r.json()["detail"], r.text
    sess = _post(server, "/api/v1/create_session", {"tags": [], "sdk_version": "raw", "project_id": None}).json()["session_id"]
    for lc, why in [({"rank": 2.5}, "lora_config: field 'rank' must be integer, got number"),
                    ({"rank": 2, "seed": "7"}, "lora_config: field 'seed' must be integer, got string")]:
        r = httpx.post(server.url + "/api/v1/create_model", headers=key, json={
            "session_id": sess, "model_seq_id": 3, "base_model": SMOLLM2_NAME, "lora_config": lc})
        assert r.status_code == 400 and why in r.json()["detail"], r.text
    created = _post(server, "/api/v1/create_model", {"session_id": sess, "model_seq_id": 0, "base_model": SMOLLM2_NAME,
                                                     "lora_config": {"rank": 2, "seed": None}}).json()
    model_id = created["model_id"]
    _result(server, created["request_id"])
    for change, why in [({"path": "t", "ttl_seconds": "3600"}, "request: field 'ttl_seconds' must be integer, got string"),
                        ({"path": "t", "ttl_seconds": 3600.5}, "request: field 'ttl_seconds' must be integer, got number"),
                        ({"path": 5}, "request: field 'path' must be string, got integer"),
                        ({"path": "t", "user_metadata": ["a"]}, "request: field 'user_metadata' must be an object")]:
        r = httpx.post(server.url + "/api/v1/save_weights", headers=key, json={"model_id": model_id, **change})
        assert r.status_code == 400 and why in r.json()["detail"], (change, r.text)
    r = httpx.post(server.url + "/api/v1/save_weights_external", headers=key, json={"model_id": model_id, "path": 5})
    assert r.status_code == 400 and "request: field 'path' must be string, got integer" in r.json()["detail"], r.text
    assert rest_client(server, server.key).list_checkpoints(model_id).result().checkpoints == []
    ids = tokenizer("Forward only, please.", add_special_tokens=False).input_ids
    datum_json = {"model_input": {"chunks": [{"type": "encoded_text", "tokens": ids[:-1]}]},
                  "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": "int64"}}}
    for fb, why in [({"forward_only": "true"}, "forward_backward_input: field 'forward_only' must be boolean, got string"),
                    ({"data": [{**datum_json, "loss_fn_inputs": {"target_tokens": {"data": ids[1:], "dtype": 7}}}]},
                     "target_tokens: field 'dtype' must be string, got integer")]:
        body = {"model_id": model_id, "forward_backward_input": {"loss_fn": "cross_entropy", "data": [datum_json], **fb}}
        r = httpx.post(server.url + "/api/v1/forward_backward", headers=key, json=body)
        assert r.status_code == 400 and why in r.json()["detail"], (fb, r.text)
    # Nothing was accumulated: an optim_step now has no gradient to apply.
    r = httpx.post(server.url + "/api/v1/optim_step", headers=key, json={"model_id": model_id,
                                                                        "adam_params": {"learning_rate": 1e-3}})
    res = _result(server, r.json()["request_id"]).json()
    assert res.get("category") == "user" and "gradient" in res["error"], res


def test_mistyped_json_fields_get_a_4xx(server, tokenizer):
    """Every route that takes a JSON body (26; `auth/token` answers 501 to any body, as it does not
    exchange keys for JWTs), each field of a valid body — and of its nested objects, and of the
    objects in its lists — replaced in turn by a value of the wrong type or range — null, negative,
    2^64, strings, lists, objects, NaN, a long string, a path — and bodies that are no object at
    all: a 4xx naming the problem, or accepted and ended as a result or a user error; never a 5xx or
    a server-category failure."""
    import copy
    import time

    key = {"X-API-Key": server.key}
    sess = _post(server, "/api/v1/create_session", {"tags": [], "sdk_version": "raw"}).json()["session_id"]
    created = _post(server, "/api/v1/create_model", {"session_id": sess, "model_seq_id": 0, "base_model": SMOLLM2_NAME,
                                                     "lora_config": {"rank": 2}}).json()
    model_id = created["model_id"]
    _result(server, created["request_id"])
    smp = _post(server, "/api/v1/create_sampling_session",
                {"session_id": sess, "sampling_session_seq_id": 1, "base_model": SMOLLM2_NAME}).json()
    sampler = smp["sampling_session_id"]
    ids = tokenizer("Mistyped fields.", add_special_tokens=False).input_ids
    prompt = {"chunks": [{"type": "encoded_text", "tokens": ids}]}
    victim = _post(server, "/api/v1/create_model", {"session_id": sess, "model_seq_id": 1, "base_model": SMOLLM2_NAME,
                                                    "lora_config": {"rank": 2}}).json()
    _result(server, victim["request_id"])
    saved = _post(server, "/api/v1/save_weights", {"model_id": model_id, "path": "ttl-target"}).json()
    _result(server, saved["request_id"])
    finishing = _post(server, "/api/v1/create_session", {"tags": [], "sdk_version": "raw"}).json()["session_id"]
    ref = lambda name: {"ref": name}  # noqa: E731
    custom_loss = {  # what SDK 0.38 sends for -(logprobs * weights).sum()
        "session_id": sess, "custom_loss_seq_id": 0, "name": "neg_ll", "type": "create_custom_loss",
        "inputs": [{"name": "logprobs", "rank": 1}, {"name": "weights", "rank": 1}],
        "graph": {"format": 1, "nodes": [
            {"op": "placeholder", "name": "logprobs", "target": "logprobs", "args": [], "kwargs": {}},
            {"op": "placeholder", "name": "weights", "target": "weights", "args": [], "kwargs": {}},
            {"op": "call_function", "name": "mul", "target": "operator.mul",
             "args": [ref("logprobs"), ref("weights")], "kwargs": {}},
            {"op": "call_method", "name": "sum_1", "target": "sum", "args": [ref("mul")], "kwargs": {}},
            {"op": "output", "name": "output", "target": "output",
             "args": [{"tuple": [ref("sum_1"), {"dict": {"custom/neg_ll:sum": ref("sum_1")}}]}], "kwargs": {}}]}}
    routes = {
        "create_session": {"tags": ["a"], "sdk_version": "raw"},
        "session_heartbeat": {"session_id": sess},
        "create_model": {"session_id": sess, "model_seq_id": 5, "base_model": SMOLLM2_NAME,
                         "lora_config": {"rank": 2, "train_mlp": True}},
        "get_info": {"model_id": model_id},
        "optim_step": {"model_id": model_id, "seq_id": 0,
                       "adam_params": {"learning_rate": 1e-3, "beta1": 0.9, "weight_decay": 0.0, "grad_clip_norm": 1.0}},
        "forward_backward": {"model_id": model_id, "seq_id": 0, "forward_backward_input": {
            "loss_fn": "cross_entropy", "data": [{"model_input": prompt, "loss_fn_inputs": {
                "target_tokens": {"data": ids, "dtype": "int64", "shape": [len(ids)]}}}]}},
        "save_weights_for_sampler": {"model_id": model_id, "path": "fuzz", "seq_id": 0},
        "create_sampling_session": {"session_id": sess, "sampling_session_seq_id": 2, "base_model": SMOLLM2_NAME},
        "asample": {"sampling_session_id": sampler, "num_samples": 1, "prompt": prompt,
                    "sampling_params": {"max_tokens": 2, "temperature": 1.0, "top_p": 1.0, "seed": 5, "stop": [2]},
                    "prompt_logprobs": False, "topk_prompt_logprobs": 0},
        "retrieve_future": {"request_id": created["request_id"]},
        "cancel_future": {"request_id": created["request_id"]},
        "weights_info": {"tinker_path": f"tinker://{model_id}/sampler_weights/nope"},
        "load_weights": {"model_id": model_id, "path": f"tinker://{model_id}/weights/nope", "seq_id": 0,
                         "optimizer": False},
        "retrieve_futures": {"target": {"sampling_session_id": sampler, "cloned_sampler_id": 0},
                             "prev_cursor": None, "timeout": 0},
        "copy_weights": {"source_path": f"tinker://{model_id}/sampler_weights/nope", "session_id": sess,
                         "model_seq_id": 9, "ttl_seconds": 60},
        "save_weights_external": {"model_id": model_id, "path": "ext", "seq_id": 0, "ttl_seconds": 60,
                                  "age_encryption_recipients": ["age1nope"]},
        "sessions/search": {"session_id": sess, "display_name": "x", "project_ids": ["default"],
                            "user_metadata": {"a": "b"}, "limit": 5, "cursor": None},
        "client/config": {"sdk_version": "0.38.0"},
        "client/dynamic_config": {"sdk_version": "0.38.0"},
        "telemetry": {"events": [{"event": "x"}]},
        "unload_model": {"model_id": victim["model_id"]},
        "create_custom_loss": custom_loss,
        "join_sampling_session": {"sampling_session_id": sampler},
        f"PUT training_runs/{model_id}/checkpoints/weights/ttl-target/ttl": {"ttl_seconds": 86400},
        f"PUT sessions/{finishing}/project": {"project_id": "fuzz-project"},
        f"sessions/{finishing}/finish": {"reason": {"type": "success"}, "detail": "done"},  # last: it ends the session
    }
    hostile = [None, -1, 2 ** 64, "x", "", [], {}, [None], 1.5, True, float("nan"), "y" * 5000, "../../etc/passwd"]

    def variants(body):
        for k, v in body.items():
            for h in hostile:
                out = copy.deepcopy(body)
                out[k] = h
                yield out
            if isinstance(v, dict):
                for sub in variants(v):
                    out = copy.deepcopy(body)
                    out[k] = sub
                    yield out
            if isinstance(v, list):
                for i, item in enumerate(v):
                    if isinstance(item, dict):
                        for sub in variants(item):
                            out = copy.deepcopy(body)
                            out[k][i] = sub
                            yield out
        yield {k: v for k, v in list(body.items())[1:]}  # the first field missing

    accepted, bad, sent = [], [], 0
    for route, body in routes.items():
        method, _, path = route.rpartition(" ")
        url = server.url + "/api/v1/" + path
        r = httpx.request(method or "POST", url, json=body, headers=key, timeout=60)  # the route exists
        assert r.status_code < 500 and "no route for" not in r.text, (route, r.status_code, r.text[:300])
        cases = [json.dumps(b).encode() for b in variants(body)]
        cases += [b"[]", b'"x"', b"7", b"null", b"{", b"{\"a\":", b"\xff\xfe", b""]
        for content in cases:
            r = httpx.request(method or "POST", url, content=content, headers={**key, "Content-Type": "application/json"},
                              timeout=60)
            sent += 1
            if r.status_code >= 500:
                bad.append((route, content[:120], r.status_code, r.text[:300]))
            elif r.status_code >= 400:
                if not (r.headers["content-type"].startswith("application/problem+json") and r.json()["detail"]):
                    bad.append((route, content[:120], r.status_code, r.text[:300]))
            elif "request_id" in r.text and route not in ("retrieve_future", "cancel_future"):
                accepted.append((route, content[:200], r.json()["request_id"]))
    assert not bad, "\n".join(map(str, bad[:40]))
    assert sent > 2000, sent
    # What the accepted ones stored (a finish reason, project names) reads back.
    for method, path, body in [("GET", "sessions", None), ("GET", f"sessions/{finishing}", None),
                               ("POST", "sessions/search", {"reasons": ["success", "errored"], "limit": 50}),
                               ("GET", f"training_runs/{model_id}/checkpoints", None)]:
        r = httpx.request(method, server.url + "/api/v1/" + path, json=body, headers=key, timeout=60)
        assert r.status_code == 200, (path, r.text[:300])
    # The 400 names the field by its JSON pointer, or says what the body is instead of an object.
    mistyped = {**routes["create_model"], "model_seq_id": "x"}
    r = httpx.post(server.url + "/api/v1/create_model", json=mistyped, headers=key)
    assert r.status_code == 400 and "(/model_seq_id) type must be number, but is string" in r.json()["detail"], r.text
    nested = {**routes["asample"], "sampling_params": {**routes["asample"]["sampling_params"], "max_tokens": "2"}}
    r = httpx.post(server.url + "/api/v1/asample", json=nested, headers=key)
    assert r.status_code == 400 and "max_tokens" in r.json()["detail"], r.text
    r = httpx.post(server.url + "/api/v1/get_info", content=b"[1, 2]", headers={**key, "Content-Type": "application/json"})
    assert r.status_code == 400 and "must be a JSON object, got array" in r.json()["detail"], r.text
    for route, content, request_id in accepted:
        deadline = time.monotonic() + 120
        r = _result(server, request_id)
        while r.status_code == 408 and time.monotonic() < deadline:
            r = _result(server, request_id)
        if r.headers["content-type"].startswith("application/json"):
            body = r.json()
            assert "error" not in body or body["category"] == "user", (route, content, body)
    assert httpx.get(server.url + "/healthz").status_code == 200
