"""Real models from GGUF: `openrl model import` of SmolLM2-135M-Instruct (Q4_1) and Gemma 3 270M
(Q4_K_M) against transformers loading the same files (`from_pretrained(..., gguf_file=...)`):
config, logits, tokenizer (ids, vocabulary, merges, added tokens), chat template; then
`openrl model export` back to GGUF, read by the `gguf` package and by llama.cpp."""
import json
import pathlib
import subprocess

import numpy as np
import pytest
import torch

from conftest import run_jsonl
from test_chat_template_parity import CASES
from test_tokenizer_parity import check_parity, hostile_corpus, random_ids

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

PROMPTS = ["The capital of France is", "def fibonacci(n):\n    ", "Question: what is 12 * 7?\nAnswer:"]


@pytest.fixture(scope="module", params=["smollm2", "gemma3"])
def imported(request, real_ggufs, openrl_bin, tmp_path_factory):
    """(name, gguf path, our fp32 import dir, transformers tokenizer, transformers model)."""
    name = request.param
    path = real_ggufs[name]
    out = tmp_path_factory.mktemp(f"import-{name}") / "model"
    proc = subprocess.run([str(openrl_bin), "model", "import", str(path), "--out", str(out), "--dtype", "float32"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["out"] == str(out) and summary["tensors"] > 100
    tok = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name,
                                                              dtype=torch.float32)
    model.eval()
    return name, path, out, tok, model


def test_config_matches_transformers(imported):
    name, _, out, _, model = imported
    ours = transformers.AutoConfig.from_pretrained(str(out))
    ref = model.config
    for key in ("model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "head_dim", "max_position_embeddings",
                "rms_norm_eps", "tie_word_embeddings", "bos_token_id", "eos_token_id"):
        assert getattr(ours, key) == getattr(ref, key), f"{name}: {key}"
    assert ours.rope_parameters == ref.rope_parameters, name
    if name == "gemma3":
        for key in ("layer_types", "sliding_window", "query_pre_attn_scalar", "hidden_activation"):
            assert getattr(ours, key) == getattr(ref, key), f"{name}: {key}"
    prov = json.loads((out / "openrl_import.json").read_text())
    assert len(prov["source"]["sha256"]) == 64 and prov["unmapped_tensors"] == []


def test_weights_match_transformers(imported):
    """Every parameter, dequantized and un-permuted, equals what transformers loads."""
    name, _, out, _, model = imported
    from safetensors.torch import load_file
    ours = load_file(str(out / "model.safetensors"))
    ref = model.state_dict()
    for key, t in ours.items():
        assert key in ref, f"{name}: unexpected tensor {key}"
        assert torch.equal(t, ref[key]), f"{name}: {key} differs"
    missing = {k for k in ref if k not in ours and not (k == "lm_head.weight" and model.config.tie_word_embeddings)}
    assert not missing, f"{name}: tensors not imported: {sorted(missing)[:5]}"


def test_logits_match_transformers(imported, openrl_bin):
    name, _, out, tok, model = imported
    prompts = [tok(p)["input_ids"] for p in PROMPTS]
    got, proc = run_jsonl(openrl_bin, ["logprobs", "--model", str(out)],
                          [{"tokens": p, "return_logits": True} for p in prompts])
    assert proc.returncode == 0, proc.stderr
    worst = 0.0
    for p, res in zip(prompts, got):
        with torch.no_grad():
            ref = model(torch.tensor([p])).logits[0].float()
        ours = torch.tensor(res["logits"])
        assert ours.shape == ref.shape
        worst = max(worst, (ours - ref).abs().max().item())
    assert worst <= 1e-3, f"{name}: max |logit diff| {worst}"


# Logits and weights cover Gemma; one greedy run keeps the suite short.
@pytest.mark.parametrize("imported", ["smollm2"], indirect=True)
def test_greedy_generation_matches_transformers(imported, openrl_bin):
    name, _, out, tok, model = imported
    p = tok(PROMPTS[0])["input_ids"]
    got, proc = run_jsonl(openrl_bin, ["generate", "--model", str(out)],
                          [{"prompt_tokens": p, "max_tokens": 16, "temperature": 0, "ignore_eos": True}])
    assert proc.returncode == 0, proc.stderr
    with torch.no_grad():
        ref = model.generate(torch.tensor([p]), max_new_tokens=16, do_sample=False, eos_token_id=None,
                             pad_token_id=0)[0, len(p):].tolist()
    assert got[0]["samples"][0]["tokens"] == ref, name


def test_tokenizer_matches_transformers(imported, openrl_bin):
    name, _, out, tok, _ = imported
    hf = tok.backend_tokenizer
    ours = json.loads((out / "tokenizer.json").read_text())
    ref = json.loads(hf.to_str())
    assert ours["model"]["vocab"] == ref["model"]["vocab"], name
    assert ours["model"]["merges"] == ref["model"]["merges"], name
    strip = lambda toks: [(a["id"], a["content"], a["special"]) for a in toks]  # noqa: E731
    assert strip(ours["added_tokens"]) == strip(ref["added_tokens"]), name
    check_parity(openrl_bin, out, hf, hostile_corpus(seed=31), random_ids(hf, seed=17))
    # transformers-level encoding (bos handling from tokenizer_config.json) agrees too.
    mine = transformers.AutoTokenizer.from_pretrained(str(out))
    for text in PROMPTS + hostile_corpus(seed=3, n_random=40):
        assert mine(text)["input_ids"] == tok(text)["input_ids"], (name, text)


def test_chat_template_renders_identically(imported, openrl_bin):
    name, _, out, tok, _ = imported
    if tok.chat_template is None:  # Gemma's GGUF carries none: neither side invents one
        assert not (out / "chat_template.jinja").exists()
        return
    cases = [(n, m, g) for n, m, g, tools, extra in CASES if tools is None and not extra]
    got, proc = run_jsonl(openrl_bin, ["chat-template", "--model", str(out)],
                          [{"messages": m, "add_generation_prompt": g} for _, m, g in cases])
    assert proc.returncode == 0, proc.stderr
    for (case, messages, gen), res in zip(cases, got):
        want = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
        assert res.get("text") == want, f"{name}/{case}"


def _llama_permute(w, heads):
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def test_export_reads_back_identically(imported, openrl_bin, tmp_path):
    """The gguf package reads our export back: metadata, names, and tensor bytes equal to the gguf
    package quantizing the same weights (after llama.cpp's permutation / Gemma's +1). SmolLM2 in
    f16, q8_0 and q4_0; Gemma (whose 262k-token vocabulary takes the gguf reader ~10 s a file) in q8_0."""
    name, src, out, _, model = imported
    from safetensors.torch import load_file
    hf = load_file(str(out / "model.safetensors"))
    orig = gguf.GGUFReader(str(src))
    for qtype in (["f16", "q8_0", "q4_0"] if name == "smollm2" else ["q8_0"]):
        _check_export(openrl_bin, tmp_path, name, orig, hf, model.config, out, qtype)


def _check_export(openrl_bin, tmp_path, name, orig, hf, cfg, out, qtype):
    path = tmp_path / f"{name}-{qtype}.gguf"
    proc = subprocess.run([str(openrl_bin), "model", "export", str(out), "--gguf", str(path), "--type", qtype],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    ours = gguf.GGUFReader(str(path))
    for key in orig.fields:
        if key.startswith(("general.", "GGUF.", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
                           "tokenizer.ggml.tokens", "tokenizer.ggml.add_sep")):
            continue
        if key.endswith(("vocab_size", "rope.dimension_count", "key_length", "value_length")) and key not in ours.fields:
            continue
        assert key in ours.fields, f"{name}: {key} missing from the export"
        assert ours.fields[key].contents() == orig.fields[key].contents(), f"{name}: {key}"
    assert {t.name for t in ours.tensors} == {t.name for t in orig.tensors}
    tokens = lambda r: r.fields["tokenizer.ggml.tokens"].contents()  # noqa: E731
    if name == "smollm2":  # byte-level vocabularies go back exactly
        assert tokens(ours) == tokens(orig)
        assert ours.fields["tokenizer.ggml.token_type"].contents() == orig.fields["tokenizer.ggml.token_type"].contents()
    else:  # SentencePiece spelling: runs of spaces come back as U+2581, as llama.cpp matches them
        diff = [i for i, (a, b) in enumerate(zip(tokens(ours), tokens(orig))) if a != b]
        assert len(tokens(ours)) == len(tokens(orig)) and len(diff) == 30
        assert all(set(tokens(orig)[i]) == {" "} and tokens(ours)[i] == "\u2581" * len(tokens(orig)[i]) for i in diff)
    reverse = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight"}
    for t in ours.tensors:
        hf_name = reverse.get(t.name)
        if hf_name is None:
            layer, part = t.name.split(".")[1], ".".join(t.name.split(".")[2:])
            table = {"attn_norm.weight": "input_layernorm.weight", "attn_q.weight": "self_attn.q_proj.weight",
                     "attn_k.weight": "self_attn.k_proj.weight", "attn_v.weight": "self_attn.v_proj.weight",
                     "attn_output.weight": "self_attn.o_proj.weight", "ffn_gate.weight": "mlp.gate_proj.weight",
                     "ffn_up.weight": "mlp.up_proj.weight", "ffn_down.weight": "mlp.down_proj.weight",
                     "attn_q_norm.weight": "self_attn.q_norm.weight", "attn_k_norm.weight": "self_attn.k_norm.weight",
                     "post_attention_norm.weight": "post_attention_layernorm.weight",
                     "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
                     "ffn_norm.weight": ("pre_feedforward_layernorm.weight" if name == "gemma3"
                                         else "post_attention_layernorm.weight")}
            hf_name = f"model.layers.{layer}.{table[part]}"
        w = hf[hf_name].numpy().astype(np.float32)
        if name == "smollm2" and ".attn_q." in t.name:
            w = _llama_permute(w, cfg.num_attention_heads)
        if name == "smollm2" and ".attn_k." in t.name:
            w = _llama_permute(w, cfg.num_key_value_heads)
        if name == "gemma3" and "norm.weight" in t.name:
            w = w + np.float32(1)
        want_type = gguf.GGMLQuantizationType.F32 if w.ndim == 1 else gguf.GGMLQuantizationType[qtype.upper()]
        assert t.tensor_type == want_type, f"{name}: {t.name}"
        want = gguf.quants.quantize(w, want_type)
        assert np.array_equal(np.asarray(t.data).view(np.uint8).reshape(-1), want.view(np.uint8).reshape(-1)), \
            f"{name}: {t.name} bytes differ"


@pytest.mark.parametrize("imported", ["smollm2"], indirect=True)
def test_export_merges_adapter(imported, openrl_bin, tmp_path):
    """Export with --adapter equals exporting the directory `openrl model merge` writes."""
    name, _, out, _, _ = imported
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"text": "Say hi. Hi! Hi there, friend."}) + "\n" for _ in range(4)))
    adapter = tmp_path / "adapter"
    proc = subprocess.run([str(openrl_bin), "train", "--model", str(out), "--data", str(data), "--out", str(adapter),
                           "--steps", "2", "--batch-size", "2", "--lora-rank", "4", "--lr", "1e-2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    merged = tmp_path / "merged"
    subprocess.run([str(openrl_bin), "model", "merge", "--model", str(out), "--adapter", str(adapter),
                    "--out", str(merged)], check=True, capture_output=True, timeout=600)
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    subprocess.run([str(openrl_bin), "model", "export", str(out), "--adapter", str(adapter), "--gguf", str(a),
                    "--type", "f16"], check=True, capture_output=True, timeout=600)
    subprocess.run([str(openrl_bin), "model", "export", str(merged), "--gguf", str(b), "--type", "f16"],
                   check=True, capture_output=True, timeout=600)
    ra, rb = gguf.GGUFReader(str(a)), gguf.GGUFReader(str(b))
    changed = 0
    base = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(_export(openrl_bin, out, tmp_path))).tensors}
    for ta, tb in zip(ra.tensors, rb.tensors):
        assert ta.name == tb.name and np.array_equal(np.asarray(ta.data), np.asarray(tb.data)), ta.name
        changed += not np.array_equal(np.asarray(ta.data), base[ta.name])
    assert changed >= 30, "the adapter did not change the exported weights"


def _export(openrl_bin, model_dir, tmp_path):
    path = tmp_path / "base.gguf"
    subprocess.run([str(openrl_bin), "model", "export", str(model_dir), "--gguf", str(path), "--type", "f16"],
                   check=True, capture_output=True, timeout=600)
    return path


# One family is enough for the cache path (Gemma's fp32 cache is 1 GB).
@pytest.mark.parametrize("imported", ["smollm2"], indirect=True)
def test_gguf_file_works_where_a_directory_does(real_ggufs, openrl_bin, imported):
    """`--model FILE.gguf` imports once into the cache and generates like the imported directory."""
    name, path, out, tok, _ = imported
    req = [{"prompt_tokens": tok(PROMPTS[2])["input_ids"], "max_tokens": 8, "temperature": 0}]
    direct, proc = run_jsonl(openrl_bin, ["generate", "--model", str(path)], req)
    assert proc.returncode == 0, proc.stderr
    via_dir, _ = run_jsonl(openrl_bin, ["generate", "--model", str(out)], req)
    assert direct[0]["samples"][0]["tokens"] == via_dir[0]["samples"][0]["tokens"], name


def _write_gguf(path, arch="llama", drop=(), override=None):
    """A tiny but complete llama-architecture GGUF (2 layers), with keys dropped or overridden."""
    w = gguf.GGUFWriter(str(path), arch)
    md = {f"{arch}.embedding_length": 64, f"{arch}.block_count": 2, f"{arch}.feed_forward_length": 96,
          f"{arch}.attention.head_count": 4, f"{arch}.attention.head_count_kv": 2, f"{arch}.context_length": 128,
          f"{arch}.attention.layer_norm_rms_epsilon": 1e-5}
    md.update(override or {})
    for key, value in md.items():
        if key in drop:
            continue
        if isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        else:
            w.add_uint32(key, value)
    tokens = ["<unk>", "<s>", "</s>"] + [chr(0x21 + i) for i in range(60)] + ["!!"]
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_merges(["! !"])
    rng = np.random.default_rng(0)
    shapes = {"token_embd.weight": (64, 64), "output_norm.weight": (64,)}
    for i in range(2):
        shapes.update({f"blk.{i}.attn_norm.weight": (64,), f"blk.{i}.ffn_norm.weight": (64,),
                       f"blk.{i}.attn_q.weight": (64, 64), f"blk.{i}.attn_k.weight": (32, 64),
                       f"blk.{i}.attn_v.weight": (32, 64), f"blk.{i}.attn_output.weight": (64, 64),
                       f"blk.{i}.ffn_gate.weight": (96, 64), f"blk.{i}.ffn_up.weight": (96, 64),
                       f"blk.{i}.ffn_down.weight": (64, 96)})
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("case,needle", [
    ({"arch": "phi2"}, "general.architecture"),
    ({"drop": ("llama.embedding_length",)}, "llama.embedding_length"),
    ({"override": {"llama.block_count": "two"}}, "llama.block_count"),
    ({"override": {"llama.attention.head_count": 5}}, "num_attention_heads"),
])
def test_bad_gguf_models_are_refused_naming_the_field(openrl_bin, tmp_path, case, needle):
    path = _write_gguf(tmp_path / "bad.gguf", **case)
    out = tmp_path / "out"
    proc = subprocess.run([str(openrl_bin), "model", "import", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode > 0, proc.stdout
    assert needle in proc.stderr, proc.stderr
    assert not out.exists(), "a failed import must leave nothing behind"


def test_small_gguf_round_trip(openrl_bin, tmp_path):
    """Import then export of a synthetic llama GGUF gives back the same f32/f16 tensors."""
    src = _write_gguf(tmp_path / "ok.gguf")
    out = tmp_path / "model"
    subprocess.run([str(openrl_bin), "model", "import", str(src), "--out", str(out), "--dtype", "float32"],
                   check=True, capture_output=True, timeout=120)
    back = tmp_path / "back.gguf"
    subprocess.run([str(openrl_bin), "model", "export", str(out), "--gguf", str(back), "--type", "f16"],
                   check=True, capture_output=True, timeout=120)
    a = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(src)).tensors}
    b = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(str(back)).tensors}
    assert set(a) == set(b)
    for name, t in a.items():  # Q/K un-permuted on import and permuted back on export
        want = t if t.ndim == 1 else t.astype(np.float16)
        assert np.array_equal(b[name], want), name


def test_llama_cpp_generates_like_us_on_our_export(imported, openrl_bin, tmp_path):
    """llama.cpp (llama-cpp-python) loads our f16 export and greedy-decodes the same 16 tokens as
    our engine running that same file."""
    llama_cpp = pytest.importorskip("llama_cpp")
    name, _, out, tok, _ = imported
    path = tmp_path / f"{name}-f16.gguf"
    subprocess.run([str(openrl_bin), "model", "export", str(out), "--gguf", str(path), "--type", "f16"],
                   check=True, capture_output=True, timeout=600)
    prompt = tok(PROMPTS[0])["input_ids"]
    env = {**__import__("os").environ, "OPENRL_CACHE": str(tmp_path / "cache")}  # keep ~/.cache clean
    stdin = json.dumps({"prompt_tokens": prompt, "max_tokens": 16, "temperature": 0, "ignore_eos": True}) + "\n"
    proc = subprocess.run([str(openrl_bin), "generate", "--model", str(path)], input=stdin, capture_output=True,
                          text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)["samples"][0]["tokens"]
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=2, verbose=False)
    theirs = []
    for token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        theirs.append(token)
        if len(theirs) == 16:
            break
    assert theirs == ours, f"{name}: llama.cpp {theirs} vs openrl {ours}"


def test_qwen3_export_import_round_trip(openrl_bin, tmp_path):
    """Qwen 3 (no Q/K permutation, q/k norms, tied embedding) goes out to GGUF and back: every
    weight equals the original rounded to f16 (matrices) or exactly (norms), config unchanged."""
    from model_factory import make_model
    from safetensors.torch import load_file
    src = tmp_path / "qwen3"
    model = make_model("qwen3", src)
    # A byte-level BPE vocabulary of exactly the model's 160 tokens (printable ASCII and Latin-1).
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + [chr(c) for c in range(0xA1, 0x100) if c != 0xAD]
    tokenizer = {"version": "1.0", "added_tokens": [], "normalizer": None,
                 "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                                   "use_regex": True},
                 "post_processor": None, "decoder": {"type": "ByteLevel"},
                 "model": {"type": "BPE", "vocab": {t: i for i, t in enumerate(alphabet[:160])}, "merges": []}}
    (src / "tokenizer.json").write_text(json.dumps(tokenizer))
    path, back = tmp_path / "q.gguf", tmp_path / "back"
    subprocess.run([str(openrl_bin), "model", "export", str(src), "--gguf", str(path), "--type", "f16"],
                   check=True, capture_output=True, timeout=120)
    assert gguf.GGUFReader(str(path)).fields["general.architecture"].contents() == "qwen3"
    subprocess.run([str(openrl_bin), "model", "import", str(path), "--out", str(back), "--dtype", "float32"],
                   check=True, capture_output=True, timeout=120)
    ours = load_file(str(back / "model.safetensors"))
    ref = model.state_dict()
    assert set(ours) == {k for k in ref if k != "lm_head.weight"}
    for key, t in ours.items():
        want = ref[key] if ref[key].dim() == 1 else ref[key].half().float()
        assert torch.equal(t, want), key
    cfg = transformers.AutoConfig.from_pretrained(str(back))
    for key in ("num_attention_heads", "num_key_value_heads", "head_dim", "hidden_size", "intermediate_size",
                "num_hidden_layers", "tie_word_embeddings"):
        assert getattr(cfg, key) == getattr(model.config, key), key
    assert np.float32(cfg.rms_norm_eps) == np.float32(model.config.rms_norm_eps)  # GGUF stores an f32
    assert cfg.rope_parameters["rope_theta"] == model.config.rope_parameters["rope_theta"]


def test_model_info_reads_gguf_metadata(openrl_bin, real_ggufs):
    for name, family, params in (("smollm2", "llama", 134_515_008), ("gemma3", "gemma3_text", 268_098_176)):
        proc = subprocess.run([str(openrl_bin), "model", "info", str(real_ggufs[name])], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert (info["format"], info["family"], info["parameters"]) == ("gguf", family, params)
        assert info["has_tokenizer"] and info["has_chat_template"] == (name == "smollm2")


def test_gguf_cache_keeps_one_import_per_file(openrl_bin, real_ggufs, tmp_path):
    """A replaced (or touched) GGUF is imported again and its older cached copy is removed."""
    import os
    import shutil
    copy = tmp_path / "smol.gguf"
    shutil.copyfile(real_ggufs["smollm2"], copy)
    env = {**os.environ, "OPENRL_CACHE": str(tmp_path / "cache")}
    req = json.dumps({"prompt_tokens": [1, 2, 3], "max_tokens": 1, "temperature": 0}) + "\n"
    seen = []
    for bump in (0, 10):
        st = copy.stat()
        os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 10**9))
        proc = subprocess.run([str(openrl_bin), "generate", "--model", str(copy)], input=req, capture_output=True,
                              text=True, timeout=300, env=env)
        assert proc.returncode == 0, proc.stderr
        seen.append(sorted(p.name for p in (tmp_path / "cache" / "gguf").iterdir()))
    assert len(seen[0]) == 1 and len(seen[1]) == 1 and seen[0] != seen[1], seen
