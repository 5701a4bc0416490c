"""`openrl quickstart` end to end (few steps): what it writes is what the ecosystem loads."""
import json
import re
import subprocess

import gguf

import peft
import torch
import transformers

from conftest import REPO


def test_quickstart_post_trains_smollm2_and_exports_gguf(openrl_bin, real_ggufs, tmp_path):
    proc = subprocess.run([str(openrl_bin), "quickstart", "--workdir", str(tmp_path), "--model", str(real_ggufs["smollm2"]),
                           "--steps", "3", "--train-size", "16", "--eval-size", "6", "--rl-iterations", "2"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "OpenRL quickstart summary" in out
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^\s+(follows|right number|both)\D*?([\d.]+)%\s+([\d.]+)%", out, re.M)}
    assert set(rows) == {"follows", "right number", "both"}, out
    assert all(0.0 <= v <= 100.0 for pair in rows.values() for v in pair)
    # Three steps on the format are enough to change the behaviour the rule checks.
    assert rows["follows"][1] > rows["follows"][0], out

    adapter = tmp_path / "answer-format-lora"
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    base = transformers.AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"]).eval()
    tuned = peft.PeftModel.from_pretrained(base, adapter).eval()
    with torch.no_grad():
        assert torch.isfinite(tuned(torch.tensor([[1, 2, 3]])).logits).all()
    exported = gguf.GGUFReader(str(tmp_path / "smollm2-answer-format.q8_0.gguf"))
    assert exported.fields["general.architecture"].contents() == "llama"
    assert len(exported.tensors) == 272
    # llama.cpp serves the exported policy with the chat template we wrote into it, and it has the
    # behaviour the adapter taught.
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(tmp_path / "smollm2-answer-format.q8_0.gguf"), n_ctx=256, n_threads=2,
                          verbose=False)
    question = "What is 21 + 35? Reply with only the result, written as <answer>NUMBER</answer>."
    reply = llm.create_chat_completion(messages=[{"role": "user", "content": question}], temperature=0,
                                       max_tokens=16)["choices"][0]["message"]["content"]
    assert re.fullmatch(r"\s*<answer>-?\d+</answer>\s*", reply), reply

    # Stage 6 ran RL through the training API (an in-process openrl serve) and kept its state as a
    # training checkpoint: a PEFT adapter over the tuned model the API served.
    m = re.search(r"RL via the API\s+2 iterations in \d+s, mean reward per iteration: ([\d.]+) ([\d.]+)", out)
    assert m and all(0.0 <= float(r) <= 1.0 for r in m.groups()), out
    path = re.search(r"RL state\s+tinker://(\S+)/weights/quickstart-rl", out)
    assert path, out
    ckpt = tmp_path / "api" / "checkpoints" / path.group(1) / "weights" / "quickstart-rl"
    served = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "smollm2-answer-format").eval()
    rl = peft.PeftModel.from_pretrained(served, ckpt).eval()
    with torch.no_grad():
        assert torch.isfinite(rl(torch.tensor([[1, 2, 3]])).logits).all()
    assert (ckpt / "optimizer.safetensors").exists()
    # The same adapter left the server as an export, fetched by its signed URLs: identical tensors.
    assert re.search(r"RL adapter\s+\S+/rl-adapter\s+\(exported and downloaded by signed URL: "
                     r"adapter_config.json, adapter_model.safetensors\)", out), out
    from safetensors.torch import load_file
    got, want = load_file(tmp_path / "rl-adapter" / "adapter_model.safetensors"), load_file(ckpt / "adapter_model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_tiny_quickstart_writes_loadable_model_tokenizer_and_adapter(openrl_bin, tmp_path):
    proc = subprocess.run([str(openrl_bin), "quickstart", "--tiny", "--workdir", str(tmp_path),
                           "--data", str(REPO / "data" / "quickstart"),
                           "--pretrain-steps", "40", "--lora-steps", "10"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "OpenRL quickstart summary" in out
    rows = {m.group(1): (float(m.group(2)), float(m.group(3)))
            for m in re.finditer(r"^\s+(addition|subtraction)\s+([\d.]+)%\s+([\d.]+)%", out, re.M)}
    assert set(rows) == {"addition", "subtraction"}
    assert all(0.0 <= v <= 100.0 for pair in rows.values() for v in pair)

    base, adapter = tmp_path / "tiny-llama", tmp_path / "subtraction-lora"
    tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(base / "tokenizer.json"))
    model = transformers.LlamaForCausalLM.from_pretrained(base).eval()
    ids = tok("12 + 7 =")["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == "12 + 7 ="
    tuned = peft.PeftModel.from_pretrained(model, adapter).eval()
    with torch.no_grad():
        logits = tuned(torch.tensor([ids])).logits
    assert torch.isfinite(logits).all()

    # A second run reuses the base model (same corpus and recipe) instead of retraining it.
    again = subprocess.run([str(openrl_bin), "quickstart", "--tiny", "--workdir", str(tmp_path),
                            "--data", str(REPO / "data" / "quickstart"),
                            "--pretrain-steps", "40", "--lora-steps", "10"],
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert "reusing" in again.stderr and "pre-training    " not in again.stdout
