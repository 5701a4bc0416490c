"""LoRA and full fine-tuning parity with Hugging Face PEFT, transformers autograd and torch AdamW.

Directions covered, per family (llama, qwen3, gemma3):
  PEFT → ours   a PEFT-saved adapter gives the same logits and greedy tokens in our engine;
  ours → PEFT   an adapter written by `openrl train` loads in peft.PeftModel with the same logits;
  gradients     `openrl train --dump-grads` equals autograd through transformers(+PEFT), for LoRA
                and full fine-tuning, with and without micro-batching / activation checkpointing;
  optimizer     several full fine-tuning steps equal torch.optim.AdamW + clip_grad_norm_.
The loss is the mean next-token NLL over all target tokens of a step (no padding in the loss).
"""
import json
import subprocess

import peft
import pytest
import torch
from safetensors.torch import load_file

from conftest import run_jsonl
from model_factory import MODEL_CLASSES, make_model

FAMILIES = ["llama", "qwen3", "gemma3"]
ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
VOCAB = 160


def _rows():
    g = torch.Generator().manual_seed(5)
    # Lengths straddle gemma3's sliding window (8) so local attention is exercised.
    return [torch.randint(3, VOCAB, (n,), generator=g).tolist() for n in (9, 23, 14, 31, 12)]


def _peft_adapter(base_model, out_dir, seed=1, **kw):
    """A PEFT adapter with random A and B (init_lora_weights=False), saved to out_dir."""
    torch.manual_seed(seed)
    kw = {"target_modules": ALL_PROJ, "lora_dropout": 0.0, **kw}
    cfg = peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, task_type="CAUSAL_LM", **kw)
    pm = peft.get_peft_model(base_model, cfg).eval()
    pm.save_pretrained(out_dir)
    return pm


class Setup:
    def __init__(self, family, root, binary):
        self.family, self.root, self.bin = family, root, binary
        self.base = root / "base"
        make_model(family, self.base)
        self.adapter = root / "peft-adapter"
        self.peft_model = _peft_adapter(self.load_base(), self.adapter)
        self.rows = _rows()
        self.data = root / "data.jsonl"
        self.data.write_text("".join(json.dumps({"tokens": r}) + "\n" for r in self.rows))
        self._dumps = {}
        self._ref_lora = None

    def load_base(self):
        return MODEL_CLASSES[self.family].from_pretrained(self.base).eval()

    def train(self, *args, check=True):
        proc = subprocess.run([str(self.bin), "train", "--model", str(self.base), "--data", str(self.data),
                               "--threads", "2", *map(str, args)], capture_output=True, text=True, timeout=600)
        if check:
            assert proc.returncode == 0, proc.stderr
        steps = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
        return steps, proc

    def dump(self, *args):
        """First-step gradients of `openrl train ... --dump-grads` (cached per argument list)."""
        key = tuple(map(str, args))
        if key not in self._dumps:
            path = self.root / f"grads-{len(self._dumps)}.safetensors"
            steps, _ = self.train("--steps", 1, "--dump-grads", path, *args)
            self._dumps[key] = (load_file(path), steps[0])
        return self._dumps[key]

    def ref_lora(self):
        """(loss, {peft name: grad}) by autograd through transformers + PEFT on the first 4 rows."""
        if self._ref_lora is None:
            pm = peft.PeftModel.from_pretrained(self.load_base(), self.adapter, is_trainable=True)
            loss = _mean_nll(pm, self.rows[:4])
            loss.backward()
            grads = {n.replace(".default", ""): p.grad.clone()
                     for n, p in pm.named_parameters() if p.requires_grad}
            self._ref_lora = (loss.item(), grads)
        return self._ref_lora


@pytest.fixture(scope="module", params=FAMILIES)
def setup(request, tmp_path_factory, openrl_bin):
    return Setup(request.param, tmp_path_factory.mktemp(f"lora-{request.param}"), openrl_bin)


@pytest.fixture(scope="module")
def llama(tmp_path_factory, openrl_bin):
    """For checks that do not depend on the family (config parsing, init, dropout)."""
    return Setup("llama", tmp_path_factory.mktemp("lora-llama-only"), openrl_bin)


def _mean_nll(model, rows):
    """Σ -log p(next token) over every row, / total target tokens; each row run alone (no pad)."""
    total = sum(len(r) - 1 for r in rows)
    loss = 0.0
    for r in rows:
        ids = torch.tensor([r])
        lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
        loss = loss - lp.gather(1, ids[0, 1:, None]).sum()
    return loss / total


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _ours_logits(binary, base, adapter, prompts):
    args = ["logprobs", "--model", str(base)] + (["--adapter", str(adapter)] if adapter else [])
    out, proc = run_jsonl(binary, args, [{"tokens": p, "return_logits": True} for p in prompts])
    assert proc.returncode == 0, proc.stderr
    return [torch.tensor(o["logits"]) for o in out]


PROMPTS = [[5, 6, 7, 8, 9], list(range(3, 40)), [17] * 12]


# ---- PEFT → ours ---------------------------------------------------------------------------------

def test_peft_adapter_logits_match(setup):
    ours = _ours_logits(setup.bin, setup.base, setup.adapter, PROMPTS)
    pm = setup.peft_model
    for p, o in zip(PROMPTS, ours):
        with torch.no_grad():
            ref = pm(input_ids=torch.tensor([p])).logits[0]
            with pm.disable_adapter():
                plain = pm(input_ids=torch.tensor([p])).logits[0]
        assert (ref - plain).abs().max().item() > 1e-2, "adapter has no effect: test would be vacuous"
        err = (o - ref).abs().max().item()
        assert err <= 1e-4, f"{setup.family}: max |logit diff| with adapter {err}"


def test_peft_adapter_greedy_generation_matches(setup):
    prompts = PROMPTS[:2]
    out, proc = run_jsonl(setup.bin, ["generate", "--model", str(setup.base), "--adapter", str(setup.adapter)],
                          [{"prompt_tokens": prompts, "max_tokens": 16, "temperature": 0, "ignore_eos": True}])
    assert proc.returncode == 0, proc.stderr
    for p, s in zip(prompts, out[0]["samples"]):
        with torch.no_grad():
            ref = setup.peft_model.generate(input_ids=torch.tensor([p]), max_new_tokens=16, do_sample=False,
                                            eos_token_id=None, pad_token_id=0)[0, len(p):].tolist()
        assert s["tokens"] == ref, f"{setup.family}: greedy tokens diverge from PeftModel.generate"


@pytest.mark.parametrize("variant,kw,refusal", [
    ("rslora", {"use_rslora": True}, None),
    ("all-linear", {"target_modules": "all-linear"}, None),
    ("subset", {"target_modules": ["q_proj", "v_proj"]}, None),
    ("dropout", {"lora_dropout": 0.1}, None),  # inference: dropout is off
    ("regex", {"target_modules": r".*\.(q_proj|down_proj)"}, "target_modules"),
    ("modules_to_save", {"modules_to_save": ["lm_head"]}, "lm_head"),
    ("lora_bias", {"lora_bias": True}, "lora_B.bias"),
    ("layers_to_transform", {"layers_to_transform": [0, 2]}, "layers_to_transform"),
    ("rank_pattern", {"rank_pattern": {"q_proj": 2}}, "rank_pattern"),
])
def test_peft_config_variants_match_or_are_refused(llama, variant, kw, refusal):
    """Every PEFT LoRA flavour either gives PEFT's logits or is refused naming the field/tensor."""
    d = llama.root / f"variant-{variant}"
    pm = _peft_adapter(llama.load_base(), d, seed=4, **kw)
    prompt = PROMPTS[1]
    out, proc = run_jsonl(llama.bin, ["logprobs", "--model", str(llama.base), "--adapter", str(d)],
                          [{"tokens": prompt, "return_logits": True}])
    if refusal is not None:
        assert proc.returncode > 0, proc.stderr
        assert refusal in proc.stderr and str(d) in proc.stderr, proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        ref = pm(input_ids=torch.tensor([prompt])).logits[0]
    assert (torch.tensor(out[0]["logits"]) - ref).abs().max().item() <= 1e-4


# ---- ours → PEFT ---------------------------------------------------------------------------------

def test_trained_adapter_loads_in_peft(setup):
    out = setup.root / "trained-adapter"
    steps, _ = setup.train("--lora-rank", 4, "--lora-alpha", 8, "--steps", 3, "--batch-size", 2,
                           "--micro-batch", 2, "--lr", 1e-2, "--seed", 3, "--out", out)
    assert [s["step"] for s in steps] == [1, 2, 3]
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM"
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and cfg["bias"] == "none"
    assert sorted(cfg["target_modules"]) == sorted(ALL_PROJ)
    assert cfg["use_dora"] is False and cfg["use_rslora"] is False
    assert cfg["base_model_name_or_path"] == str(setup.base)
    pcfg = peft.PeftConfig.from_pretrained(out)
    assert isinstance(pcfg, peft.LoraConfig) and pcfg.r == 4 and pcfg.lora_alpha == 8

    pm = peft.PeftModel.from_pretrained(setup.load_base(), out).eval()
    saved = load_file(out / "adapter_model.safetensors")
    loaded = peft.get_peft_model_state_dict(pm)
    assert set(saved) == set(loaded), "tensor names differ from what PEFT expects"
    for name, t in saved.items():
        assert torch.equal(loaded[name], t), f"{name} did not load into PEFT unchanged"

    ours = _ours_logits(setup.bin, setup.base, out, PROMPTS)
    for p, o in zip(PROMPTS, ours):
        with torch.no_grad():
            ref = pm(input_ids=torch.tensor([p])).logits[0]
            with pm.disable_adapter():
                plain = pm(input_ids=torch.tensor([p])).logits[0]
        assert (ref - plain).abs().max().item() > 1e-3, "training did not move the adapter"
        assert (o - ref).abs().max().item() <= 1e-4


def test_fresh_adapter_init_follows_peft(llama):
    """--steps 0: A ~ U(-1/sqrt(in), 1/sqrt(in)) as PEFT's kaiming_uniform_(a=sqrt(5)), B = 0."""
    out = llama.root / "init-adapter"
    llama.train("--lora-rank", 8, "--lora-alpha", 16, "--targets", "q_proj", "down_proj", "--steps", 0,
                "--seed", 11, "--out", out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert sorted(cfg["target_modules"]) == ["down_proj", "q_proj"] and cfg["r"] == 8
    t = load_file(out / "adapter_model.safetensors")
    assert len(t) == 2 * 2 * 3  # 2 modules × (A, B) × 3 layers
    for name, w in t.items():
        if "lora_B" in name:
            assert torch.count_nonzero(w) == 0, name
            continue
        fan_in = 96 if "down_proj" in name else 64
        bound = fan_in ** -0.5
        assert w.shape[0] == 8 and w.shape[1] == fan_in, name
        assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound, name
        assert abs(w.std().item() - bound / 3 ** 0.5) < 0.15 * bound, name


# ---- gradients -----------------------------------------------------------------------------------

@pytest.mark.parametrize("micro", [4, 1])
def test_lora_gradients_match_peft_autograd(setup, micro):
    grads, step = setup.dump("--adapter", setup.adapter, "--batch-size", 4, "--micro-batch", micro)
    ref_loss, ref = setup.ref_lora()
    assert set(grads) == set(ref), "dumped names are not PEFT's adapter names"
    assert abs(step["loss"] - ref_loss) <= 1e-5 * abs(ref_loss)
    assert step["tokens"] == sum(len(r) - 1 for r in setup.rows[:4])
    for name, g in ref.items():
        assert g.norm() > 0, f"{name}: reference gradient is zero (A and B must both be nonzero)"
        assert _rel(grads[name], g) <= 1e-4, f"{setup.family} {name} (micro-batch {micro})"


def test_token_weights_match_weighted_autograd(setup, tmp_path):
    """{"tokens", "weights"} lines: the loss is Σ w·NLL / Σ w over the step (zero weights drop a
    token, as a masked prompt does), accumulated over micro-batches, equal to PEFT autograd."""
    g = torch.Generator().manual_seed(9)
    rows = setup.rows[:4]
    weights = []
    for r in rows:
        w = torch.rand(len(r), generator=g) * 2
        w[: len(r) // 3] = 0  # a masked prompt
        weights.append(w)
    data = tmp_path / "weighted.jsonl"
    data.write_text("".join(json.dumps({"tokens": r, "weights": w.tolist()}) + "\n" for r, w in zip(rows, weights)))
    grads_path = tmp_path / "grads.safetensors"
    proc = subprocess.run([str(x) for x in [setup.bin, "train", "--model", setup.base, "--data", data, "--threads", 2,
                                            "--adapter", setup.adapter, "--batch-size", 4, "--micro-batch", 2,
                                            "--steps", 1, "--dump-grads", grads_path]],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    step = json.loads(proc.stdout.splitlines()[0])
    grads = load_file(grads_path)

    pm = peft.PeftModel.from_pretrained(setup.load_base(), setup.adapter, is_trainable=True)
    # Weights are read as fp32 by both sides.
    total = sum(w[1:].sum() for w in weights)
    loss = 0.0
    for r, w in zip(rows, weights):
        ids = torch.tensor([r])
        lp = torch.log_softmax(pm(input_ids=ids).logits[0, :-1].float(), -1).gather(1, ids[0, 1:, None])[:, 0]
        loss = loss - (lp * w[1:]).sum()
    loss = loss / total
    loss.backward()
    ref = {n.replace(".default", ""): p.grad for n, p in pm.named_parameters() if p.requires_grad}
    plain_loss, _ = setup.ref_lora()
    assert abs(loss.item() - plain_loss) > 1e-3, "weights do not change the loss: the test would be vacuous"
    assert abs(step["loss"] - loss.item()) <= 1e-5 * abs(loss.item())
    assert step["tokens"] == sum(int((w[1:] > 0).sum()) for w in weights)
    for name, gr in ref.items():
        assert _rel(grads[name], gr) <= 1e-4, f"{setup.family} {name}"


def test_bf16_base_with_fp32_adapter_matches_peft(setup):
    """--dtype bfloat16 trains an fp32 adapter over a bf16 base, as PEFT does (autocast_adapter_dtype):
    loss and adapter gradients agree with PEFT on the same bf16 model within bf16 rounding."""
    grads, step = setup.dump("--adapter", setup.adapter, "--batch-size", 4, "--dtype", "bfloat16")
    base = MODEL_CLASSES[setup.family].from_pretrained(setup.base, dtype=torch.bfloat16).eval()
    pm = peft.PeftModel.from_pretrained(base, setup.adapter, is_trainable=True)
    trainable = {n.replace(".default", ""): p for n, p in pm.named_parameters() if p.requires_grad}
    assert all(p.dtype == torch.float32 for p in trainable.values())
    loss = _mean_nll(pm, setup.rows[:4])
    loss.backward()
    assert set(grads) == set(trainable)
    assert all(g.dtype == torch.float32 for g in grads.values())
    assert abs(step["loss"] - loss.item()) <= 1e-2 * abs(loss.item())
    for name, p in trainable.items():
        assert _rel(grads[name], p.grad) <= 5e-2, f"{setup.family} {name}"


def test_lora_adamw_steps_match_peft(setup):
    """4 LoRA steps (ragged rows, clipped, decayed) equal PEFT + torch AdamW step by step: loss, grad
    norm, and the saved adapter. Covers the whole training path (the fused frozen base, grouped LoRA
    projections, the kept-softmax head, the optimizer), not only the first gradient."""
    f = FULL
    out = setup.root / "lora-steps-out"
    steps, _ = setup.train("--adapter", setup.adapter, "--steps", f["N"], "--batch-size", f["B"], "--micro-batch", 1,
                           "--lr", f["lr"], "--weight-decay", f["wd"], "--clip", 0.05, "--beta2", f["beta2"],
                           "--eps", f["eps"], "--out", out)
    pm = peft.PeftModel.from_pretrained(setup.load_base(), setup.adapter, is_trainable=True)
    params = {n.replace(".default", ""): p for n, p in pm.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW(params.values(), lr=f["lr"], betas=(0.9, f["beta2"]), eps=f["eps"], weight_decay=f["wd"])
    clipped = 0
    for s in range(f["N"]):
        batch = [setup.rows[(s * f["B"] + i) % len(setup.rows)] for i in range(f["B"])]
        opt.zero_grad()
        loss = _mean_nll(pm, batch)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), 0.05).item()
        clipped += norm > 0.05
        assert abs(steps[s]["loss"] - loss.item()) <= 1e-5 * loss.item(), f"{setup.family} step {s + 1} loss"
        assert abs(steps[s]["grad_norm"] - norm) <= 1e-4 * norm, f"{setup.family} step {s + 1} grad norm"
        opt.step()
    assert clipped > 0, "clipping never engaged: the test would not check it"
    saved = load_file(out / "adapter_model.safetensors")
    for name, p in params.items():
        assert _rel(saved[name], p.detach()) <= 1e-4, f"{setup.family} adapter {name}"


def test_lora_activation_checkpointing_gives_same_gradients(setup):
    plain, _ = setup.dump("--adapter", setup.adapter, "--batch-size", 4, "--micro-batch", 4)
    path = setup.root / "grads-ckpt-lora.safetensors"
    _, proc = setup.train("--adapter", setup.adapter, "--batch-size", 4, "--micro-batch", 4, "--steps", 1,
                          "--dump-grads", path, "--checkpoint-activations", check=False)
    assert proc.returncode == 0, f"LoRA + --checkpoint-activations fails: {proc.stderr}"
    ckpt = load_file(path)
    for name, g in plain.items():
        assert _rel(ckpt[name], g) <= 1e-5, name


FULL = dict(B=2, N=4, lr=1e-3, wd=0.01, clip=1.0, beta2=0.95, eps=1e-8)


def _full_run(setup):
    """`openrl train --lora-rank 0` for FULL's N steps (cached): (step lines, grads, out dir)."""
    if not hasattr(setup, "full"):
        f = FULL
        out, grads = setup.root / "full-out", setup.root / "grads-full.safetensors"
        steps, _ = setup.train("--lora-rank", 0, "--steps", f["N"], "--batch-size", f["B"], "--micro-batch", 1,
                               "--lr", f["lr"], "--weight-decay", f["wd"], "--clip", f["clip"],
                               "--beta2", f["beta2"], "--eps", f["eps"], "--dump-grads", grads, "--out", out)
        setup.full = (steps, load_file(grads), out)
    return setup.full


def test_full_finetune_gradients_and_adamw_steps(setup):
    """--lora-rank 0: first-step gradients and 4 AdamW steps (clipped, decayed) vs torch."""
    f = FULL
    steps, ours_grads, out = _full_run(setup)
    model = setup.load_base()
    params = dict(model.named_parameters())
    assert set(ours_grads) == set(params), "dumped names are not the HF parameter names"
    start = {k: p.detach().clone() for k, p in params.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=f["lr"], betas=(0.9, f["beta2"]), eps=f["eps"],
                            weight_decay=f["wd"])
    clipped = 0
    for s in range(f["N"]):
        batch = [setup.rows[(s * f["B"] + i) % len(setup.rows)] for i in range(f["B"])]
        opt.zero_grad()
        loss = _mean_nll(model, batch)
        loss.backward()
        if s == 0:
            for name, p in params.items():
                assert _rel(ours_grads[name], p.grad) <= 1e-4, f"{setup.family} grad {name}"
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), f["clip"]).item()
        clipped += norm > f["clip"]
        assert abs(steps[s]["loss"] - loss.item()) <= 1e-5 * loss.item(), f"step {s + 1} loss"
        assert abs(steps[s]["grad_norm"] - norm) <= 1e-4 * norm, f"step {s + 1} grad norm"
        opt.step()
    assert clipped > 0, "clipping never engaged: the test would not check it"

    saved = load_file(out / "model.safetensors")
    assert set(saved) == set(params)
    for name, p in params.items():
        w, ref = saved[name], p.detach()
        assert _rel(w, ref) <= 1e-4, f"{setup.family} weight {name}"
        assert _rel(w - start[name], ref - start[name]) <= 1e-3, f"{setup.family} update of {name}"


def test_full_finetune_output_loads_in_transformers(setup):
    """The written model dir is a transformers model dir giving our logits."""
    _, _, out = _full_run(setup)
    model = MODEL_CLASSES[setup.family].from_pretrained(out).eval()
    ours = _ours_logits(setup.bin, out, None, PROMPTS)
    for p, o in zip(PROMPTS, ours):
        with torch.no_grad():
            ref = model(input_ids=torch.tensor([p])).logits[0]
        assert (o - ref).abs().max().item() <= 1e-4


def test_full_finetune_checkpointing_and_accumulation_give_same_gradients(setup):
    one, _ = setup.dump("--lora-rank", 0, "--batch-size", 4, "--micro-batch", 4)
    for extra in (["--micro-batch", 1], ["--micro-batch", 4, "--checkpoint-activations"]):
        other, _ = setup.dump("--lora-rank", 0, "--batch-size", 4, *extra)
        assert set(other) == set(one)
        for name, g in one.items():
            assert _rel(other[name], g) <= 1e-5, f"{setup.family} {name} with {extra}"


# ---- LoRA dropout in training ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def dropout_adapter(llama):
    d = llama.root / "dropout-adapter"
    _peft_adapter(llama.load_base(), d, seed=2, lora_dropout=0.3)
    return d


def test_lora_dropout_training_is_reproducible_for_a_seed(llama, dropout_adapter):
    runs = []
    for i in range(2):
        path = llama.root / f"grads-dropout-{i}.safetensors"
        steps, _ = llama.train("--adapter", dropout_adapter, "--batch-size", 4, "--steps", 1, "--seed", 9,
                               "--dump-grads", path)
        runs.append((steps[0]["loss"], load_file(path)))
    assert runs[0][0] == runs[1][0], "same --seed, different dropout masks: training is not reproducible"
    for name, g in runs[0][1].items():
        assert torch.equal(g, runs[1][1][name]), name


def test_lora_dropout_with_checkpointing_recomputes_the_same_masks(llama, dropout_adapter):
    """Recomputed layers must reuse the forward's dropout masks (torch's preserve_rng_state)."""
    res = []
    for extra in ([], ["--checkpoint-activations"]):
        path = llama.root / f"grads-dropout-ckpt{len(res)}.safetensors"
        steps, proc = llama.train("--adapter", dropout_adapter, "--batch-size", 4, "--steps", 1, "--seed", 9,
                                  "--dump-grads", path, *extra, check=False)
        assert proc.returncode == 0, proc.stderr
        res.append((steps[0]["loss"], load_file(path)))
    assert abs(res[0][0] - res[1][0]) <= 1e-6 * res[0][0], "checkpointing changed the forward pass"
    for name, g in res[0][1].items():
        assert _rel(res[1][1][name], g) <= 1e-5, name


def test_merged_export_matches_peft_merge_and_unload(setup, tmp_path):
    """`openrl model merge` writes a plain HF model equal to PEFT's merge_and_unload."""
    merged = tmp_path / "merged"
    proc = subprocess.run([str(setup.bin), "model", "merge", "--model", str(setup.base),
                           "--adapter", str(setup.adapter), "--out", str(merged)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    ref = peft.PeftModel.from_pretrained(setup.load_base(), setup.adapter).merge_and_unload().eval()
    theirs = MODEL_CLASSES[setup.family].from_pretrained(merged).eval()
    ids = torch.tensor([setup.rows[1]])
    with torch.no_grad():
        want, got = ref(ids).logits, theirs(ids).logits
    assert (want - got).abs().max().item() < 1e-4
    # And our engine on the merged directory agrees with base + adapter.
    ours_merged = _ours_logits(setup.bin, merged, None, [setup.rows[1]])[0]
    ours_adapter = _ours_logits(setup.bin, setup.base, setup.adapter, [setup.rows[1]])[0]
    assert (ours_merged - ours_adapter).abs().max().item() < 1e-4
