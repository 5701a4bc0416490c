"""`openrl quickstart` end to end (few steps): what it writes is what the ecosystem loads."""
import re
import subprocess

import peft
import torch
import transformers

from conftest import REPO


def test_quickstart_writes_loadable_model_tokenizer_and_adapter(openrl_bin, tmp_path):
    proc = subprocess.run([str(openrl_bin), "quickstart", "--workdir", str(tmp_path),
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
    again = subprocess.run([str(openrl_bin), "quickstart", "--workdir", str(tmp_path),
                            "--data", str(REPO / "data" / "quickstart"),
                            "--pretrain-steps", "40", "--lora-steps", "10"],
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr
    assert "reusing" in again.stderr and "pre-training    " not in again.stdout
