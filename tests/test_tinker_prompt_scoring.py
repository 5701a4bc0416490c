"""Prompt scoring in `sample` beyond prompt logprobs (tinker SDK 0.38): `target_prompt_logprobs`
(chosen ids at chosen positions, dense or sparse CSR), `prompt_alt_tokens_k` (draws from the
model's distribution at every prompt position) and `prompt_logprobs_last_n` (score only a suffix,
also taken by `compute_logprobs`). Driven by the real SDK against a real `openrl serve` on the real
SmolLM2-135M-Instruct, checked against transformers loading the same GGUF file, and through the
tinker-cookbook's decisions library, which is built on `target_prompt_logprobs`."""
import os

import httpx
import numpy as np
import pytest
import torch
import transformers

os.environ.setdefault("TINKER_TELEMETRY", "0")
import tinker  # noqa: E402
from tinker import types  # noqa: E402

from tinker_server import SMOLLM2_GGUF, SMOLLM2_NAME  # noqa: E402

# The server imports the GGUF to fp32; transformers dequantizes the same file. Their logits agree to
# 1e-3 (tests/test_gguf_models.py), so their logprobs to about twice that.
ATOL = 3e-3


@pytest.fixture(scope="module")
def reference():
    """transformers on the file the server serves."""
    if SMOLLM2_GGUF.is_dir():
        model = transformers.AutoModelForCausalLM.from_pretrained(str(SMOLLM2_GGUF), dtype=torch.float32)
    else:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(SMOLLM2_GGUF.parent), gguf_file=SMOLLM2_GGUF.name,
                                                                  dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="module")
def tokenizer(svc):
    return svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=4).result().get_tokenizer()


@pytest.fixture(scope="module")
def sampler(svc):
    return svc.create_sampling_client(base_model=SMOLLM2_NAME).result()


def ref_logprobs(model, tokens):
    """(len(tokens) - 1, V): row i is the distribution over token i + 1."""
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([tokens])).logits[0, :-1].float(), -1)


PROMPT = "The quick brown fox jumps over the lazy dog, and then it runs back home."


def test_target_prompt_logprobs_dense_and_sparse_keep_their_layout(sampler, tokenizer, reference):
    tokens = tokenizer(PROMPT, add_special_tokens=False).input_ids
    n = len(tokens)
    ref = ref_logprobs(reference, tokens)
    gen = torch.Generator().manual_seed(0)
    # Dense: 5 ids per position, some cells -1; column 0 is the prompt's own next token.
    ids = torch.randint(0, ref.shape[1], (n - 1, 5), generator=gen)
    ids[:, 0] = torch.tensor(tokens[1:])
    ids[torch.rand(n - 1, 5, generator=gen) < 0.3] = -1
    ids[:, 0] = torch.tensor(tokens[1:])
    res = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1),
                         include_prompt_logprobs=True, target_prompt_logprobs=types.TensorData.from_torch(ids)).result()
    got = res.target_prompt_logprobs
    assert got.dtype == "float32" and got.shape == [n - 1, 5] and got.sparse_crow_indices is None
    got = got.to_torch()
    want = torch.where(ids >= 0, ref.gather(1, ids.clamp(min=0)), torch.zeros(()))
    assert (got - want).abs().max().item() < ATOL
    assert (got[ids < 0] == 0).all()  # a -1 cell gets 0.0
    # Column 0 is the prompt's own token: the same number as its prompt logprob, from the same pass.
    assert got[:, 0].tolist() == pytest.approx(res.prompt_logprobs[1:], abs=0)

    # Sparse CSR: only the cells it names go out and come back.
    sparse = torch.full((n - 1, 1000), -1, dtype=torch.int64)
    sparse[3, 7], sparse[3, 900], sparse[n - 2, 0] = 42, 1234, tokens[-1]
    td = types.TensorData.from_torch_sparse(sparse, pad_value=-1)
    assert td.sparse_crow_indices is not None
    res = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1),
                         target_prompt_logprobs=td).result()
    got = res.target_prompt_logprobs
    assert res.prompt_logprobs is None  # not asked
    assert got.shape == [n - 1, 1000]
    assert got.sparse_crow_indices == td.sparse_crow_indices and got.sparse_col_indices == td.sparse_col_indices
    np.testing.assert_allclose(np.asarray(got.data), [ref[3, 42].item(), ref[3, 1234].item(), ref[n - 2, tokens[-1]].item()],
                               atol=ATOL)


def test_top_k_ids_as_targets_give_the_top_k_logprobs(sampler, tokenizer):
    """Asking for the ids top-k named gives back the very logprobs top-k gave, position by position."""
    tokens = tokenizer(PROMPT, add_special_tokens=False).input_ids
    top = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1),
                         include_prompt_logprobs=True, topk_prompt_logprobs=4).result()
    ids = torch.tensor([[t for t, _ in row] for row in top.topk_prompt_logprobs[1:]])
    res = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1),
                         target_prompt_logprobs=types.TensorData.from_torch(ids)).result()
    want = torch.tensor([[lp for _, lp in row] for row in top.topk_prompt_logprobs[1:]])
    assert torch.equal(res.target_prompt_logprobs.to_torch(), want)


def test_prompt_alt_tokens_are_draws_at_the_temperature(sampler, tokenizer, reference):
    tokens = tokenizer(PROMPT, add_special_tokens=False).input_ids
    n = len(tokens)
    ref = ref_logprobs(reference, tokens)
    params = types.SamplingParams(max_tokens=8, temperature=1.0, seed=11)
    plain = sampler.sample(types.ModelInput.from_ints(tokens), 2, params).result()
    res = sampler.sample(types.ModelInput.from_ints(tokens), 2, params, prompt_alt_tokens_k=4).result()
    alt = res.prompt_alt_tokens
    assert alt.tokens.dtype == "int64" and alt.tokens.shape == [n - 1, 4] and alt.logprobs.shape == [n - 1, 4]
    drawn, lps = alt.tokens.to_torch(), alt.logprobs.to_torch()
    # Each draw's logprob is the model's (temperature 1), as prompt logprobs are.
    assert (lps - ref.gather(1, drawn)).abs().max().item() < ATOL
    # The draws have a generator of their own: the sampled sequences are the same as without them.
    assert [s.tokens for s in res.sequences] == [s.tokens for s in plain.sequences]
    # The same seed draws the same tokens; another seed others.
    again = sampler.sample(types.ModelInput.from_ints(tokens), 2, params, prompt_alt_tokens_k=4).result()
    assert torch.equal(again.prompt_alt_tokens.tokens.to_torch(), drawn)
    other = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1, seed=12),
                           prompt_alt_tokens_k=4).result()
    assert not torch.equal(other.prompt_alt_tokens.tokens.to_torch(), drawn)

    # Many draws follow the distribution at the request's temperature: the empirical frequency of
    # each position's likeliest token is within 0.05 of softmax(logits / T) (4 standard errors at
    # k = 1024; the seed makes the draws fixed, so this cannot flake).
    short = tokens[:8]
    with torch.no_grad():
        logits = reference(torch.tensor([short])).logits[0, :-1].float()
    for temperature in (1.0, 0.5):
        res = sampler.sample(types.ModelInput.from_ints(short), 1,
                             types.SamplingParams(max_tokens=1, temperature=temperature, seed=3),
                             prompt_alt_tokens_k=1024).result()
        drawn = res.prompt_alt_tokens.tokens.to_torch()
        probs = torch.softmax(logits / temperature, -1)
        top = probs.argmax(-1)
        freq = (drawn == top[:, None]).float().mean(1)
        assert (freq - probs.gather(1, top[:, None])[:, 0]).abs().max().item() < 0.05, temperature
    # Temperature 0 draws the argmax every time.
    res = sampler.sample(types.ModelInput.from_ints(short), 1, types.SamplingParams(max_tokens=1, temperature=0.0),
                         prompt_alt_tokens_k=3).result()
    assert torch.equal(res.prompt_alt_tokens.tokens.to_torch(), logits.argmax(-1)[:, None].expand(-1, 3))


def test_prompt_logprobs_last_n_scores_only_the_suffix(sampler, tokenizer):
    tokens = tokenizer(PROMPT, add_special_tokens=False).input_ids
    n = len(tokens)
    full = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
    last = sampler.compute_logprobs(types.ModelInput.from_ints(tokens), prompt_logprobs_last_n=3).result()
    assert last[: n - 3] == [None] * (n - 3)
    np.testing.assert_allclose(last[n - 3:], full[n - 3:], atol=1e-5)
    # Top-k rows before the suffix are empty too; the whole prompt is still scorable (n - 1).
    res = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1),
                         include_prompt_logprobs=True, topk_prompt_logprobs=2, prompt_logprobs_last_n=n - 1).result()
    assert res.prompt_logprobs[0] is None and None not in res.prompt_logprobs[1:]
    res = sampler.sample(types.ModelInput.from_ints(tokens), 1, types.SamplingParams(max_tokens=1),
                         include_prompt_logprobs=True, topk_prompt_logprobs=2, prompt_logprobs_last_n=2).result()
    assert res.topk_prompt_logprobs[: n - 2] == [None] * (n - 2)
    assert all(len(row) == 2 for row in res.topk_prompt_logprobs[n - 2:])


def test_bad_prompt_scoring_fields_are_a_400_naming_the_field(server, tokenizer):
    """What the SDK checks (and what it leaves to the server), sent as raw JSON."""
    key = {"X-API-Key": server.key}

    def post(path, body):
        r = httpx.post(server.url + path, json=body, headers=key, timeout=60)
        assert r.status_code == 200, r.text
        return r.json()

    sess = post("/api/v1/create_session", {"tags": [], "sdk_version": "raw"})["session_id"]
    smp = post("/api/v1/create_sampling_session",
               {"session_id": sess, "sampling_session_seq_id": 1, "base_model": SMOLLM2_NAME})["sampling_session_id"]
    ids = tokenizer("Four tokens here.", add_special_tokens=False).input_ids
    n = len(ids)
    good = {"sampling_session_id": smp, "num_samples": 1, "prompt": {"chunks": [{"type": "encoded_text", "tokens": ids}]},
            "sampling_params": {"max_tokens": 1, "temperature": 0.0}}

    def dense(rows, k=1, fill=5):
        return {"data": [fill] * (rows * k), "dtype": "int64", "shape": [rows, k]}

    cases = [
        ({"prompt_logprobs_last_n": 2}, "'prompt_logprobs_last_n' needs prompt_logprobs: true"),
        ({"prompt_logprobs": True, "prompt_logprobs_last_n": n}, f"must be in 1..len(prompt) - 1 = {n - 1}, got {n}"),
        ({"prompt_logprobs": True, "prompt_logprobs_last_n": 0}, "must be in 1..len(prompt) - 1"),
        ({"prompt_logprobs": True, "prompt_logprobs_last_n": 1.5}, "field 'prompt_logprobs_last_n' must be integer"),
        ({"prompt_alt_tokens_k": 2000}, "field 'prompt_alt_tokens_k' must be in 0..1024, got 2000"),
        ({"prompt_alt_tokens_k": -1}, "field 'prompt_alt_tokens_k' must be in 0..1024, got -1"),
        ({"target_prompt_logprobs": dense(n)}, f"target_prompt_logprobs has {n} rows; a prompt of {n} tokens needs {n - 1}"),
        ({"target_prompt_logprobs": dense(n - 1, fill=-1)}, "names no token id (every cell is -1)"),
        ({"target_prompt_logprobs": dense(n - 1, fill=49152)}, "= 49152 is outside the vocabulary (size 49152"),
        ({"target_prompt_logprobs": dense(n - 1, fill=-2)}, "target_prompt_logprobs.data[0] = -2 is outside the vocabulary"),
        ({"target_prompt_logprobs": {**dense(n - 1), "data": [5] * (n - 2) + [2.5]}},
         f"target_prompt_logprobs.data[{n - 2}] = 2.5 is not an integer token id"),
        ({"target_prompt_logprobs": {**dense(n - 1), "dtype": "float32"}}, "target_prompt_logprobs.dtype must be int64"),
        ({"target_prompt_logprobs": {**dense(n - 1), "shape": [n - 1]}}, "target_prompt_logprobs.shape must be 2-D"),
        ({"target_prompt_logprobs": {**dense(n - 1), "shape": [n - 1, 2]}}, "values do not fill the shape"),
        ({"target_prompt_logprobs": {"data": list(range(2000)), "dtype": "int64", "shape": [n - 1, 2000],
                                     "sparse_crow_indices": [0] + [2000] * (n - 1), "sparse_col_indices": list(range(2000))}},
         "names 2000 distinct token ids; at most 1024"),
        ({"target_prompt_logprobs": {"data": [5], "dtype": "int64", "shape": [n - 1, 4],
                                     "sparse_crow_indices": [0] * (n - 1) + [1], "sparse_col_indices": [4]}},
         "sparse_col_indices[0] = 4 is outside [0, 4)"),
        ({"target_prompt_logprobs": {"data": [5], "dtype": "int64", "shape": [n - 1, 4],
                                     "sparse_crow_indices": [0, 1], "sparse_col_indices": [0]}},
         "sparse CSR indices do not match the shape"),
        ({"target_prompt_logprobs": [5, 6]}, "target_prompt_logprobs must be a TensorData object"),
    ]
    for change, why in cases:
        r = httpx.post(server.url + "/api/v1/asample", json={**good, **change}, headers=key, timeout=60)
        assert r.status_code == 400 and why in r.json()["detail"], (change, r.status_code, r.text[:300])
    # null is the default, and a good request still goes through.
    r = httpx.post(server.url + "/api/v1/asample", json={**good, "prompt_logprobs_last_n": None, "target_prompt_logprobs": None,
                                                         "prompt_alt_tokens_k": None}, headers=key, timeout=60)
    assert r.status_code == 200 and "request_id" in r.json(), r.text[:300]


def test_cookbook_decisions_score_and_train_a_decision_model(svc, tokenizer, reference):
    """tinker-cookbook's decisions library, unchanged: `sample_decision` (one request with sparse
    target_prompt_logprobs) gives transformers' probabilities over the choice tokens, and its
    probability loss through forward_backward_custom moves them toward the target."""
    import asyncio

    from tinker_cookbook import renderers
    from tinker_cookbook.recipes.decisions import (Decision, DecisionRenderer, decision_dist_datums,
                                                   probability_loss, sample_decision)

    decision = Decision("A user asked: how do I reset my password?\n\nWhich team should answer it?",
                        [("billing", "Charges and invoices"), ("accounts", "Logins and passwords"),
                         ("sdk", "The Python package")])
    renderer = DecisionRenderer(renderers.get_renderer("qwen3_instruct", tokenizer))
    rendering = renderer.render(decision)
    sampler = svc.create_sampling_client(base_model=SMOLLM2_NAME).result()
    probs = asyncio.run(sample_decision(sampler, rendering))
    assert list(probs) == ["billing", "accounts", "sdk"]
    ref = ref_logprobs(reference, rendering.tokens)[rendering.choice_pos - 1]
    want = torch.softmax(ref[[rendering.label_tokens[label] for label in probs]], 0)
    np.testing.assert_allclose(list(probs.values()), want.tolist(), atol=2 * ATOL)

    tc = svc.create_lora_training_client(base_model=SMOLLM2_NAME, rank=8, seed=3).result()
    datums = decision_dist_datums(renderer, [(decision, {"sdk": 1.0})])
    loss = probability_loss(lambda p, target: ((p - target) ** 2).sum())
    before = asyncio.run(sample_decision(tc.save_weights_and_get_sampling_client().result(), rendering))["sdk"]
    for _ in range(4):
        tc.forward_backward_custom(datums, loss).result()
        tc.optim_step(types.AdamParams(learning_rate=5e-3)).result()
    after = asyncio.run(sample_decision(tc.save_weights_and_get_sampling_client().result(), rendering))["sdk"]
    assert after > before + 0.2, (before, after)
