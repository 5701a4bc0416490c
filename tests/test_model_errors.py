"""Bad model and adapter directories: a clear error naming the file and field/tensor, never a crash.

Each case copies a good tiny model (or PEFT adapter), breaks one thing, and drives the real binary
(`openrl logprobs`, `openrl generate`, `openrl model info`, `openrl train`). A clear error is a
non-zero exit code that is not a signal, and stderr naming what to fix.
"""
import json
import shutil
import struct
import subprocess

import peft
import pytest
import torch
from safetensors.torch import load_file, save_file

from model_factory import MODEL_CLASSES, make_model

ALL_PROJ = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
REQUEST = '{"tokens": [1, 2, 3]}\n'
CRASH_MARKS = ("terminate called", "Segmentation fault", "Aborted", "core dumped", "std::bad_alloc",
               "frame #")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """(model dir, gemma3 model dir, PEFT adapter dir) that load fine."""
    root = tmp_path_factory.mktemp("errors")
    make_model("llama", root / "llama")
    make_model("gemma3", root / "gemma3")
    torch.manual_seed(0)
    base = MODEL_CLASSES["llama"].from_pretrained(root / "llama")
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=ALL_PROJ, init_lora_weights=False,
                          task_type="CAUSAL_LM")
    peft.get_peft_model(base, cfg).save_pretrained(root / "adapter")
    return root


def _copy(good, tmp_path, what="llama"):
    d = tmp_path / f"bad-{what}"
    shutil.copytree(good / what, d)
    return d


def _edit_json(path, fn):
    j = json.loads(path.read_text())
    fn(j)
    path.write_text(json.dumps(j))


def _run(binary, *args, stdin=REQUEST):
    return subprocess.run([str(binary), *map(str, args)], input=stdin, capture_output=True, text=True,
                          timeout=120)


def assert_clear_error(proc, *needles):
    assert proc.returncode > 0, f"exit {proc.returncode} (negative = killed by a signal): {proc.stderr[-2000:]}"
    for mark in CRASH_MARKS:
        assert mark not in proc.stderr, f"crash, not an error: {proc.stderr[-2000:]}"
    for n in needles:
        assert str(n) in proc.stderr, f"stderr does not name {n!r}: {proc.stderr}"


def _read_st(path):
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def _write_st(path, header, data):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + data)


# ---- config.json ---------------------------------------------------------------------------------

CONFIG_CASES = {
    "unknown_model_type": (lambda c: c.update(model_type="mistral"), ["model_type", "mistral"]),
    "missing_field": (lambda c: c.pop("num_hidden_layers"), ["num_hidden_layers"]),
    "wrong_type": (lambda c: c.update(hidden_size="64"), ["hidden_size"]),
    "zero_heads": (lambda c: c.update(num_attention_heads=0), ["num_attention_heads"]),
    "kv_heads_not_divisor": (lambda c: c.update(num_key_value_heads=3), ["num_key_value_heads"]),
    "odd_head_dim": (lambda c: c.update(head_dim=15), ["head_dim"]),
    "unsupported_rope": (lambda c: c.update(rope_parameters={"rope_type": "yarn", "factor": 2.0}), ["yarn"]),
    "unsupported_activation": (lambda c: c.update(hidden_act="relu6"), ["relu6"]),
    "negative_context": (lambda c: c.update(max_position_embeddings=-5), ["max_position_embeddings"]),
    # Absurd sizes must be refused before anything is allocated for them.
    "absurd_layer_count": (lambda c: c.update(num_hidden_layers=10**9), ["num_hidden_layers"]),
    "absurd_head_dim": (lambda c: c.update(head_dim=10**12), ["head_dim"]),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_field_is_a_clear_error(good, tmp_path, openrl_bin, case):
    edit, needles = CONFIG_CASES[case]
    d = _copy(good, tmp_path)
    _edit_json(d / "config.json", edit)
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), d, *needles)


def test_gemma_layer_types_of_the_wrong_length(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path, "gemma3")
    _edit_json(d / "config.json", lambda c: c.update(layer_types=["full_attention"]))
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), d / "config.json", "layer_types")


@pytest.mark.parametrize("text", ['{"model_type": "llama",', "[1, 2]", ""])
def test_config_that_is_not_a_json_object(good, tmp_path, openrl_bin, text):
    d = _copy(good, tmp_path)
    (d / "config.json").write_text(text)
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), d / "config.json")
    assert_clear_error(_run(openrl_bin, "model", "info", d), d / "config.json")


def test_model_info_on_bad_dirs(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    _edit_json(d / "config.json", lambda c: c.update(model_type="mistral"))
    assert_clear_error(_run(openrl_bin, "model", "info", d), d / "config.json", "model_type", "mistral")
    missing = tmp_path / "nowhere"
    assert_clear_error(_run(openrl_bin, "model", "info", missing), missing, "config.json")
    ok = _run(openrl_bin, "model", "info", good / "llama")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["config"]["num_hidden_layers"] == 3


def test_bad_generation_config(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    (d / "generation_config.json").write_text("{")
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), d / "generation_config.json")


# ---- weights -------------------------------------------------------------------------------------

@pytest.mark.parametrize("keep", [5, 100, 20000])
def test_truncated_safetensors(good, tmp_path, openrl_bin, keep):
    d = _copy(good, tmp_path)
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:keep])
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), f)


def test_corrupt_safetensors_header(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    f = d / "model.safetensors"
    _, data = _read_st(f)
    f.write_bytes(struct.pack("<Q", 10) + b"not json!!" + data)
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), f, "header")


def test_tensor_offsets_that_disagree_with_its_shape(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    f = d / "model.safetensors"
    header, data = _read_st(f)
    header["model.norm.weight"]["shape"] = [128]  # holds 64 floats
    _write_st(f, header, data)
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), f, "model.norm.weight")


@pytest.mark.parametrize("field,value,tensor", [
    ("hidden_size", 32, "model.embed_tokens.weight"),
    ("intermediate_size", 100, "model.layers.0.mlp.gate_proj.weight"),
    ("vocab_size", 10**15, "vocab_size"),  # refused by the config bounds before any tensor
])
def test_tensor_shape_disagrees_with_config(good, tmp_path, openrl_bin, field, value, tensor):
    d = _copy(good, tmp_path)
    _edit_json(d / "config.json", lambda c: c.update({field: value}))
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), d, tensor, "config.json")


def test_missing_tensor(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    tensors = load_file(d / "model.safetensors")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), d, "model.layers.1.mlp.up_proj.weight")
    # More layers in the config than in the checkpoint: the first absent layer is named.
    d2 = _copy(good, tmp_path / "more")
    _edit_json(d2 / "config.json", lambda c: c.update(num_hidden_layers=4))
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d2), d2, "model.layers.3.")


def test_integer_weight(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    tensors = load_file(d / "model.safetensors")
    tensors["model.norm.weight"] = torch.ones(64, dtype=torch.int32)
    save_file(tensors, d / "model.safetensors", metadata={"format": "pt"})
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), "model.norm.weight", "dtype")


def test_missing_weights_and_missing_shard(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    (d / "model.safetensors").unlink()
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d), d, "model.safetensors")
    d2 = _copy(good, tmp_path / "sharded")
    names = list(load_file(d2 / "model.safetensors"))
    (d2 / "model.safetensors").rename(d2 / "model-00001-of-00002.safetensors")
    weight_map = {n: "model-00001-of-00002.safetensors" for n in names}
    weight_map["lm_head.weight"] = "model-00002-of-00002.safetensors"
    (d2 / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_clear_error(_run(openrl_bin, "logprobs", "--model", d2), "model-00002-of-00002.safetensors")


def test_generate_reports_bad_model_too(good, tmp_path, openrl_bin):
    d = _copy(good, tmp_path)
    _edit_json(d / "config.json", lambda c: c.pop("vocab_size"))
    proc = _run(openrl_bin, "generate", "--model", d, stdin='{"prompt_tokens": [1, 2], "max_tokens": 2}\n')
    assert_clear_error(proc, d / "config.json", "vocab_size")


# ---- adapters ------------------------------------------------------------------------------------

ADAPTER_CONFIG_CASES = {
    "dora": (lambda c: c.update(use_dora=True), ["use_dora"]),
    "unknown_target": (lambda c: c.update(target_modules=["q_proj", "foo"]), ["target_modules", "foo"]),
    "not_lora": (lambda c: c.update(peft_type="IA3"), ["peft_type", "IA3"]),
    "zero_rank": (lambda c: c.update(r=0), ["rank"]),
    "alpha_as_string": (lambda c: c.update(lora_alpha="8"), ["lora_alpha"]),
    "bad_dropout": (lambda c: c.update(lora_dropout=1.5), ["dropout"]),
    "layers_to_transform": (lambda c: c.update(layers_to_transform=[0]), ["layers_to_transform"]),
}


@pytest.mark.parametrize("case", sorted(ADAPTER_CONFIG_CASES))
def test_unsupported_adapter_config(good, tmp_path, openrl_bin, case):
    edit, needles = ADAPTER_CONFIG_CASES[case]
    a = _copy(good, tmp_path, "adapter")
    _edit_json(a / "adapter_config.json", edit)
    proc = _run(openrl_bin, "logprobs", "--model", good / "llama", "--adapter", a)
    assert_clear_error(proc, a / "adapter_config.json", *needles)


def test_adapter_rank_disagrees_with_tensors(good, tmp_path, openrl_bin):
    a = _copy(good, tmp_path, "adapter")
    _edit_json(a / "adapter_config.json", lambda c: c.update(r=8))
    proc = _run(openrl_bin, "logprobs", "--model", good / "llama", "--adapter", a)
    assert_clear_error(proc, a / "adapter_model.safetensors", "lora_A.weight", "[4, ")


def test_adapter_tensor_shape_mismatch(good, tmp_path, openrl_bin):
    a = _copy(good, tmp_path, "adapter")
    tensors = load_file(a / "adapter_model.safetensors")
    name = "base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"
    tensors[name] = torch.zeros(16, 4)  # k_proj's out is 2 kv heads × 16 = 32
    save_file(tensors, a / "adapter_model.safetensors", metadata={"format": "pt"})
    proc = _run(openrl_bin, "generate", "--model", good / "llama", "--adapter", a,
                stdin='{"prompt_tokens": [1, 2], "max_tokens": 2}\n')
    assert_clear_error(proc, a / "adapter_model.safetensors", name, "[16, 4]")


def test_adapter_missing_and_extra_tensors(good, tmp_path, openrl_bin):
    a = _copy(good, tmp_path, "adapter")
    tensors = load_file(a / "adapter_model.safetensors")
    name = "base_model.model.model.layers.2.mlp.up_proj.lora_A.weight"
    del tensors[name]
    save_file(tensors, a / "adapter_model.safetensors", metadata={"format": "pt"})
    proc = _run(openrl_bin, "logprobs", "--model", good / "llama", "--adapter", a)
    assert_clear_error(proc, a / "adapter_model.safetensors", name)

    b = _copy(good, tmp_path / "extra", "adapter")
    tensors = load_file(b / "adapter_model.safetensors")
    extra = "base_model.model.model.layers.7.mlp.up_proj.lora_A.weight"  # the model has 3 layers
    tensors[extra] = tensors["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"].clone()
    save_file(tensors, b / "adapter_model.safetensors", metadata={"format": "pt"})
    proc = _run(openrl_bin, "logprobs", "--model", good / "llama", "--adapter", b)
    assert_clear_error(proc, b / "adapter_model.safetensors", extra)


def test_adapter_dir_missing_files(good, tmp_path, openrl_bin):
    a = _copy(good, tmp_path, "adapter")
    (a / "adapter_model.safetensors").unlink()
    proc = _run(openrl_bin, "logprobs", "--model", good / "llama", "--adapter", a)
    assert_clear_error(proc, a / "adapter_model.safetensors")
    b = _copy(good, tmp_path / "b", "adapter")
    (b / "adapter_config.json").unlink()
    proc = _run(openrl_bin, "logprobs", "--model", good / "llama", "--adapter", b)
    assert_clear_error(proc, b / "adapter_config.json")


# ---- training data -------------------------------------------------------------------------------

def test_train_data_errors_name_the_line(good, tmp_path, openrl_bin):
    cases = {
        "not_json": ('{"tokens": [1, 2, 3]}\nnot json\n', ["data.jsonl:2"]),
        "short": ('{"tokens": [1, 2, 3]}\n{"tokens": [4]}\n', ["data.jsonl:2", "2 tokens"]),
        "no_tokens": ('{"tokens": [1, 2, 3]}\n{"text": "hi"}\n', ["data.jsonl:2", "tokenizer"]),
        # A token id outside the vocabulary must be caught while reading, naming the line.
        "out_of_vocab": ('{"tokens": [1, 2, 3]}\n{"tokens": [1, 2, 1000]}\n', ["data.jsonl:2", "1000"]),
    }
    for name, (text, needles) in cases.items():
        data = tmp_path / name / "data.jsonl"
        data.parent.mkdir()
        data.write_text(text)
        proc = _run(openrl_bin, "train", "--model", good / "llama", "--data", data, "--steps", 2,
                    "--batch-size", 1, stdin="")
        assert_clear_error(proc, *needles)


def test_token_id_lists_are_checked_item_by_item(good, openrl_bin, real_tokenizer_dirs):
    """Token ids in JSON-lines requests (logprobs `tokens`, generate `prompt_tokens`, detokenize `ids`):
    a float, a bool, a negative number, an id past the vocabulary or past 64 bits is refused naming
    field[index] and the value — never rounded or cut to some other token (2^40 + 1 was read as 1
    before) — and the lines around it are still answered."""
    from conftest import run_jsonl

    model = good / "llama"  # vocab_size 160
    bad = [([1, 2.5], "tokens[1] = 2.5 is not an integer token id"),
           ([True, 1], "tokens[0] = true is not an integer token id"),
           ([1, -1], "tokens[1] = -1 is negative, not a token id"),
           ([-3], "tokens[0] = -3 is negative, not a token id"),  # one token: nothing to score, still checked
           ([1, 160], "tokens[1] = 160 is outside the vocabulary (size 160)"),
           ([1, 2 ** 40 + 1], f"tokens[1] = {2 ** 40 + 1} is outside the vocabulary (size 160)"),
           ([2 ** 64 - 1], f"tokens[0] = {2 ** 64 - 1} is outside the vocabulary (size 160)")]
    lines, proc = run_jsonl(openrl_bin, ["logprobs", "--model", str(model)],
                            [{"tokens": [1, 2, 3]}] + [{"tokens": t} for t, _ in bad] + [{"tokens": [159, 0]}])
    assert proc.returncode == 1 and len(lines) == len(bad) + 2, (proc.returncode, lines, proc.stderr[-2000:])
    assert len(lines[0]["logprobs"]) == 3 and len(lines[-1]["logprobs"]) == 2
    for (tokens, why), line in zip(bad, lines[1:-1]):
        assert line["error"]["code"] == "INVALID_ARGUMENT" and why in line["error"]["message"], (tokens, line)
    lines, proc = run_jsonl(openrl_bin, ["generate", "--model", str(model)],
                            [{"prompt_tokens": [1, 2 ** 40 + 1], "max_tokens": 2},
                             {"prompt_tokens": [1, 2], "max_tokens": 2, "temperature": 0, "ignore_eos": True}])
    assert f"prompt_tokens[1] = {2 ** 40 + 1} is outside the vocabulary" in lines[0]["error"]["message"], lines
    assert len(lines[1]["samples"][0]["tokens"]) == 2
    tokenizer = real_tokenizer_dirs["llama3"]
    lines, proc = run_jsonl(openrl_bin, ["detokenize", "--model", str(tokenizer)],
                            [{"ids": [-5]}, {"ids": [2 ** 32]}, {"ids": [9, 99999999]}, {"ids": [1.0]}, {"ids": [9]}])
    assert proc.returncode == 1
    assert [line.get("error", {}).get("message", "") for line in lines[:4]] == [
        "stdin line 1: request: ids[0] = -5 is negative, not a token id",
        f"stdin line 2: request: ids[0] = {2 ** 32} is past the largest 32-bit token id",
        "stdin line 3: request: ids[1] = 99999999 is not a token of this tokenizer (128256 tokens)",
        "stdin line 4: request: ids[0] = 1.0 is not an integer token id"], lines
    assert lines[4] == {"text": "*"}


@pytest.mark.parametrize("tokens,why", [([1, 2.5, 3], "tokens[1] = 2.5 is not an integer token id"),
                                        ([1, 2 ** 40 + 1], f"tokens[1] = {2 ** 40 + 1} is outside the vocabulary")])
def test_train_dataset_token_ids_are_checked(good, tmp_path, openrl_bin, tokens, why):
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"tokens": [1, 2, 3]}) + "\n" + json.dumps({"tokens": tokens}) + "\n")
    proc = _run(openrl_bin, "train", "--model", good / "llama", "--data", data, "--steps", 1, stdin="")
    assert_clear_error(proc, f"{data}:2: {why}")
