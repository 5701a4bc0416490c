"""`openrl train`'s loop: steps or epochs, file or shuffled order, learning-rate schedules and
held-out evaluation.

  - the learning rate of every step equals transformers' schedulers (constant, linear, cosine, with
    warmup) driving a torch optimizer;
  - --epochs runs ceil(epochs × rows / batch) steps; each epoch takes every row once, in file order
    or, with --shuffle, in an order drawn from --seed (rows of distinct lengths tell which row a
    step took);
  - --eval-data: the loss before the first step equals transformers' weighted NLL of the same
    examples (a fresh LoRA adapter leaves the base's outputs unchanged), evaluations come at the
    steps asked for, and training on the evaluated rows lowers it;
  - a whole run equals TRL's SFTTrainer's: from the same PEFT adapter, over the same rows in file
    order (its sampler made sequential), with the same AdamW, clipping and schedule, every step's
    loss and the trained adapter agree (ours accumulating over micro-batches, TRL in one);
  - a run resumed from one of its --save-every checkpoints (adapter or model, AdamW state, RNG,
    trainer_state.json) gives the uninterrupted run's remaining steps bit for bit, LoRA (with
    dropout, so the RNG matters) and full fine-tuning; other settings or data are refused;
  - --packing: the rows of TRL's best-fit-decreasing packing, each example attending only to itself;
    a whole packed run equals SFTTrainer(packing=True)'s, and a packed step's loss the unpacked one's;
  - examples longer than --max-length (default: the model's context) are refused when the dataset
    is read, naming the file and line, or with --truncate cut to their first tokens;
  - bad flags are refused naming the flag.
"""
import json
import subprocess

import peft
import pytest
import torch
import transformers
from datasets import Dataset
from safetensors.torch import load_file
from tokenizers import Tokenizer, models as tokenizer_models
from trl import SFTConfig, SFTTrainer
from trl.data_utils import pack_dataset

from model_factory import make_model


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("train-cli-llama")
    make_model("llama", d)
    return d


def train(openrl_bin, model_dir, rows, tmp_path, *args, check=True, eval_rows=None):
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [str(openrl_bin), "train", "--model", str(model_dir), "--data", str(data), "--threads", "1", *args]
    if eval_rows is not None:
        held = tmp_path / "eval.jsonl"
        held.write_text("".join(json.dumps(r) + "\n" for r in eval_rows))
        cmd += ["--eval-data", str(held)]
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(l) for l in proc.stdout.splitlines()]
    return [l for l in lines if "loss" in l], [l for l in lines if "eval_loss" in l]


def token_rows(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"tokens": torch.randint(3, 160, (n,), generator=g).tolist()} for n in lengths]


@pytest.mark.parametrize("schedule,hf", [("constant", "get_constant_schedule_with_warmup"),
                                         ("linear", "get_linear_schedule_with_warmup"),
                                         ("cosine", "get_cosine_schedule_with_warmup")])
def test_learning_rates_match_transformers_schedulers(openrl_bin, llama_dir, tmp_path, schedule, hf):
    steps, warmup, lr = 9, 3, 2e-3
    ours, _ = train(openrl_bin, llama_dir, token_rows([6, 7, 8]), tmp_path, "--steps", steps, "--batch-size", 1,
                    "--lr", lr, "--lr-schedule", schedule, "--warmup-steps", warmup)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    kw = {} if schedule == "constant" else {"num_training_steps": steps}
    sched = getattr(transformers, hf)(opt, num_warmup_steps=warmup, **kw)
    theirs = []
    for _ in range(steps):
        theirs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [l["lr"] for l in ours] == pytest.approx(theirs, rel=1e-12, abs=1e-15)
    assert theirs[0] == 0 and max(theirs) == pytest.approx(lr)


def rows_taken(steps, lengths):
    """The row each step took, from its target count (rows have distinct lengths)."""
    by_targets = {n - 1: i for i, n in enumerate(lengths)}
    return [by_targets[s["tokens"]] for s in steps]


def test_epochs_take_every_row_once_in_file_or_shuffled_order(openrl_bin, llama_dir, tmp_path):
    lengths = [3, 5, 8, 12, 17]
    rows = token_rows(lengths)
    steps, _ = train(openrl_bin, llama_dir, rows, tmp_path, "--epochs", 2, "--batch-size", 1, "--lr", 0)
    assert rows_taken(steps, lengths) == [0, 1, 2, 3, 4] * 2
    assert [s["epoch"] for s in steps] == pytest.approx([(i + 1) / 5 for i in range(10)])

    orders = {}
    for seed in (0, 0, 1):
        steps, _ = train(openrl_bin, llama_dir, rows, tmp_path, "--epochs", 2, "--batch-size", 1, "--lr", 0,
                         "--shuffle", "--seed", seed)
        taken = rows_taken(steps, lengths)
        assert len(taken) == 10 and sorted(taken[:5]) == sorted(taken[5:]) == [0, 1, 2, 3, 4]
        assert taken[:5] != taken[5:], "each epoch draws its own order"
        orders.setdefault(seed, []).append(taken)
    assert orders[0][0] == orders[0][1], "the same --seed gives the same order"
    assert orders[0][0] != orders[1][0]

    # 2.5 epochs of 5 rows in batches of 2: ceil(6.25) = 7 steps, the last inside the third epoch.
    steps, _ = train(openrl_bin, llama_dir, rows, tmp_path, "--epochs", 2.5, "--batch-size", 2, "--lr", 0)
    assert len(steps) == 7
    assert [s["tokens"] for s in steps] == [sum(lengths[(2 * k + i) % 5] - 1 for i in range(2)) for k in range(7)]


def reference_loss(model_dir, rows):
    """Σ w·NLL / Σ w over the rows' targets (token t predicted from the tokens before it)."""
    model = transformers.LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for r in rows:
            ids = torch.tensor([r["tokens"]])
            w = torch.tensor(r.get("weights", [1.0] * len(r["tokens"])), dtype=torch.float64)[1:]
            logp = torch.log_softmax(model(ids).logits[0, :-1].double(), -1)
            nll = -logp.gather(1, ids[0, 1:, None])[:, 0]
            total += float((w * nll).sum())
            weight += float(w.sum())
    return total / weight


def test_eval_loss_matches_transformers_and_falls_with_training(openrl_bin, llama_dir, tmp_path):
    rows = token_rows([9, 14, 20, 11])
    rows[1]["weights"] = [0.0] * 7 + [1.0] * 7  # a masked prompt
    held = token_rows([10, 16], seed=1) + [rows[1]]
    steps, evals = train(openrl_bin, llama_dir, rows, tmp_path, "--steps", 6, "--batch-size", 2, "--lr", 1e-2,
                         "--eval-every", 4, eval_rows=held)
    assert [e["step"] for e in evals] == [0, 4, 6]
    assert evals[0]["eval_tokens"] == 9 + 15 + 7
    assert evals[0]["eval_loss"] == pytest.approx(reference_loss(llama_dir, held), rel=1e-4)

    # Evaluating the training rows themselves: the loss falls as they are learned.
    _, evals = train(openrl_bin, llama_dir, rows, tmp_path, "--steps", 8, "--batch-size", 4, "--lr", 1e-2,
                     eval_rows=rows)
    assert [e["step"] for e in evals] == [0, 8]
    assert evals[0]["eval_loss"] == pytest.approx(reference_loss(llama_dir, rows), rel=1e-4)
    assert evals[1]["eval_loss"] < 0.9 * evals[0]["eval_loss"]


class SequentialSFTTrainer(SFTTrainer):
    """SFTTrainer taking rows in file order, recording each step's loss unrounded."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.losses = []

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        self.losses.append(float((out[0] if return_outputs else out).detach()))
        return out


@pytest.mark.parametrize("schedule,warmup", [("linear", 0), ("cosine", 2)])
def test_a_run_equals_trl_sft_trainer_step_for_step(openrl_bin, llama_dir, tmp_path, schedule, warmup):
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(3, 160, (int(n),), generator=g).tolist() for n in torch.randint(6, 30, (12,), generator=g)]
    # The starting adapter, saved by PEFT; B is random too, so that every LoRA weight moves from step 1.
    torch.manual_seed(0)
    start = peft.get_peft_model(transformers.LlamaForCausalLM.from_pretrained(llama_dir, torch_dtype=torch.float32),
                                peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in start.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    start.save_pretrained(tmp_path / "start")
    batch, epochs, lr = 4, 2, 5e-3  # 6 steps

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, 160)}}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(tokenizer_models.WordLevel(vocab, unk_token="<pad>")),
        pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    model = peft.PeftModel.from_pretrained(transformers.LlamaForCausalLM.from_pretrained(llama_dir, torch_dtype=torch.float32),
                                           tmp_path / "start", is_trainable=True)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, bf16=False,
                     per_device_train_batch_size=batch, num_train_epochs=epochs, learning_rate=lr,
                     lr_scheduler_type=schedule, warmup_steps=warmup, max_grad_norm=1.0, weight_decay=0.0,
                     adam_beta2=0.999, adam_epsilon=1e-8, optim="adamw_torch", save_strategy="no", max_length=None,
                     logging_steps=1, disable_tqdm=True)
    trainer = SequentialSFTTrainer(model=model, args=args, processing_class=tok,
                                   train_dataset=Dataset.from_list([{"input_ids": r} for r in rows]))
    trainer.train()
    trainer.model.save_pretrained(tmp_path / "theirs")

    ours, _ = train(openrl_bin, llama_dir, [{"tokens": r} for r in rows], tmp_path, "--adapter", tmp_path / "start",
                    "--epochs", epochs, "--batch-size", batch, "--micro-batch", 2, "--lr", lr, "--lr-schedule", schedule,
                    "--warmup-steps", warmup, "--clip", 1.0, "--out", tmp_path / "ours")
    assert len(trainer.losses) == len(ours) == 6
    assert [s["loss"] for s in ours] == pytest.approx(trainer.losses, rel=1e-5)
    a, b = load_file(tmp_path / "ours" / "adapter_model.safetensors"), load_file(tmp_path / "theirs" / "adapter_model.safetensors")
    a0 = load_file(tmp_path / "start" / "adapter_model.safetensors")
    assert sorted(a) == sorted(b) and len(a) == 3 * 3 * 2  # layers × targets × (A, B)
    for name in a:
        assert float((a[name] - a0[name]).abs().max()) > 1e-4, f"{name} did not train"
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_packing_equals_trl_sft_trainer_with_packing(openrl_bin, llama_dir, tmp_path):
    """--packing: the rows are those of TRL's best-fit-decreasing packing, each example attends
    only to itself with its positions from 0, and no example's first token is predicted from the one
    before it; so a whole run equals SFTTrainer(packing=True)'s step for step (TRL flattens a batch
    into one padding-free row; we keep packed rows, padded to the longest)."""
    g = torch.Generator().manual_seed(1)
    rows = [torch.randint(3, 160, (int(n),), generator=g).tolist() for n in torch.randint(4, 40, (14,), generator=g)]
    rows.append(torch.randint(3, 160, (len(rows[2]),), generator=g).tolist())  # a tie in length: file order decides
    start = lora_start(llama_dir, tmp_path / "start")
    batch, epochs, lr, length = 2, 2, 5e-3, 48

    packed = pack_dataset(Dataset.from_list([{"input_ids": r} for r in rows]), length, "bfd")
    if len(packed) % batch:  # whole batches per epoch, as TRL's epochs end on a short batch and ours run on
        rows.append(torch.randint(3, 160, (length,), generator=g).tolist())  # a row of its own
        packed = pack_dataset(Dataset.from_list([{"input_ids": r} for r in rows]), length, "bfd")
    assert len(packed) % batch == 0
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, **{f"t{i}": i for i in range(3, 160)}}
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(tokenizer_models.WordLevel(vocab, unk_token="<pad>")),
        pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    model = peft.PeftModel.from_pretrained(transformers.LlamaForCausalLM.from_pretrained(llama_dir, torch_dtype=torch.float32),
                                           start, is_trainable=True)
    args = SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, bf16=False,
                     per_device_train_batch_size=batch, num_train_epochs=epochs, learning_rate=lr,
                     lr_scheduler_type="linear", max_grad_norm=1.0, weight_decay=0.0, adam_beta2=0.999,
                     adam_epsilon=1e-8, optim="adamw_torch", save_strategy="no", max_length=length, packing=True,
                     logging_steps=1, disable_tqdm=True)
    trainer = SequentialSFTTrainer(model=model, args=args, processing_class=tok,
                                   train_dataset=Dataset.from_list([{"input_ids": r} for r in rows]))
    assert trainer.padding_free and len(trainer.train_dataset) == len(packed) < len(rows)
    trainer.train()
    trainer.model.save_pretrained(tmp_path / "theirs")
    steps = len(packed) * epochs // batch

    proc = train(openrl_bin, llama_dir, [{"tokens": r} for r in rows], tmp_path, "--adapter", start, "--packing",
                 "--max-length", length, "--epochs", epochs, "--batch-size", batch, "--micro-batch", 1, "--lr", lr,
                 "--lr-schedule", "linear", "--clip", 1.0, "--out", tmp_path / "ours", check=False)
    assert proc.returncode == 0, proc.stderr
    assert f"packed {len(rows)} examples into {len(packed)} rows of at most {length} tokens" in proc.stderr
    ours = [json.loads(l) for l in proc.stdout.splitlines()]
    # Each step's rows are TRL's packed rows, in order: its targets are their tokens less one per example.
    seq_lengths = packed["seq_lengths"]
    want_tokens = [sum(sum(n - 1 for n in seq_lengths[(2 * k + i) % len(packed)]) for i in range(batch))
                   for k in range(steps)]
    assert [s["tokens"] for s in ours] == want_tokens
    assert len(trainer.losses) == len(ours) == steps
    assert [s["loss"] for s in ours] == pytest.approx(trainer.losses, rel=1e-5)
    a, b = load_file(tmp_path / "ours" / "adapter_model.safetensors"), load_file(tmp_path / "theirs" / "adapter_model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)

    # Packing changes the passes, not the loss: one step over every example packed equals one
    # step over them one per row (and fewer, fuller rows: 100% of the padded tokens are real).
    one = lambda *extra: train(openrl_bin, llama_dir, [{"tokens": r} for r in rows], tmp_path, "--adapter", start,  # noqa: E731
                               "--steps", 1, "--lr", 0, "--max-length", length, *extra)[0][0]
    unpacked, packed_step = one("--batch-size", len(rows)), one("--packing", "--batch-size", len(packed))
    assert unpacked["tokens"] == packed_step["tokens"] == sum(len(r) - 1 for r in rows)
    assert packed_step["loss"] == pytest.approx(unpacked["loss"], rel=1e-5)
    assert packed_step["grad_norm"] == pytest.approx(unpacked["grad_norm"], rel=1e-4)


@pytest.mark.parametrize("family", ["gemma3", "qwen3"])
def test_packed_and_unpacked_steps_agree_for_other_families(openrl_bin, tmp_path, family):
    """Gemma 3's sliding-window layers (window 8 here, shorter than the examples) keep to their
    segment too; Qwen 3's q/k norms see restarted positions."""
    model_dir = tmp_path / family
    make_model(family, model_dir)
    rows = token_rows([20, 7, 13, 31, 9, 16], seed=2)

    def step(*extra):
        steps, _ = train(openrl_bin, model_dir, rows, tmp_path, "--steps", 1, "--lr", 0, "--max-length", 40, *extra)
        return steps[0]

    unpacked, packed = step("--batch-size", len(rows)), step("--packing", "--batch-size", 3)
    assert unpacked["tokens"] == packed["tokens"] == sum(len(r["tokens"]) - 1 for r in rows)
    assert packed["loss"] == pytest.approx(unpacked["loss"], rel=1e-5)
    assert packed["grad_norm"] == pytest.approx(unpacked["grad_norm"], rel=1e-4)


def test_packing_is_refused_without_a_row_length_and_shown_by_print_examples(openrl_bin, llama_dir, tmp_path):
    proc = train(openrl_bin, llama_dir, token_rows([5, 6]), tmp_path, "--packing", check=False)
    assert proc.returncode != 0 and "--packing needs --max-length" in proc.stderr
    rows = token_rows([5, 9, 4, 6])
    proc = train(openrl_bin, llama_dir, rows, tmp_path, "--packing", "--max-length", 10, "--print-examples", check=False)
    assert proc.returncode == 0, proc.stderr
    packed = [json.loads(l) for l in proc.stdout.splitlines()]
    # Longest first, each into the tightest room: [9], [6, 4], [5].
    assert [p["segments"] for p in packed] == [[9], [6, 4], [5]]
    assert packed[1]["tokens"] == rows[3]["tokens"] + rows[2]["tokens"]
    assert packed[1]["weights"] == [0.0] + [1.0] * 5 + [0.0] + [1.0] * 3


def lora_start(model_dir, out, dropout=0.0, seed=0):
    """A PEFT-made adapter whose B is random too, so that every LoRA weight moves from step 1."""
    torch.manual_seed(seed)
    model = peft.get_peft_model(transformers.LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32),
                                peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout,
                                                target_modules=["q_proj", "v_proj", "down_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.05)
    model.save_pretrained(out)
    return out


def tensors_of(directory):
    out = {}
    for f in sorted(directory.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.mark.parametrize("mode", ["lora-with-dropout", "full"])
def test_a_resumed_run_equals_the_uninterrupted_one(openrl_bin, llama_dir, tmp_path, mode):
    rows = token_rows([5, 9, 7, 12, 6, 10, 8])
    start = (["--adapter", lora_start(llama_dir, tmp_path / "start", dropout=0.2)] if mode != "full"
             else ["--lora-rank", 0])
    common = ["--steps", 7, "--batch-size", 2, "--shuffle", "--seed", 3, "--lr", 5e-3, "--lr-schedule", "cosine",
              "--warmup-steps", 2]
    whole, _ = train(openrl_bin, llama_dir, rows, tmp_path, *start, *common, "--save-every", 3, "--out", tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    state = json.loads((tmp_path / "a" / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["steps"] == 7 and state["full_finetune"] == (mode == "full")

    resume = ["--resume", tmp_path / "a" / "checkpoint-3"]
    if mode == "full":
        resume += ["--lora-rank", 0]
    rest, _ = train(openrl_bin, llama_dir, rows, tmp_path, *resume, *common, "--out", tmp_path / "b")
    assert [s["step"] for s in rest] == [4, 5, 6, 7]
    key = lambda s: (s["step"], s["loss"], s["grad_norm"], s["lr"], s["tokens"])  # noqa: E731
    assert [key(s) for s in rest] == [key(s) for s in whole[3:]]
    a, b = tensors_of(tmp_path / "a"), tensors_of(tmp_path / "b")
    assert sorted(a) == sorted(b) and a
    for name in a:
        assert torch.equal(a[name], b[name]), name

    if mode != "full":
        # Without the checkpoint's RNG state the dropout masks differ, and so do the losses.
        fresh_rng = tmp_path / "a" / "checkpoint-3" / "rng_state.safetensors"
        fresh_rng.unlink()
        proc = train(openrl_bin, llama_dir, rows, tmp_path, *resume, *common, check=False)
        assert proc.returncode != 0 and "rng_state.safetensors" in proc.stderr


def test_resume_refuses_other_settings_or_data(openrl_bin, llama_dir, tmp_path):
    rows = token_rows([5, 9, 7, 12])
    flags = {"--lora-rank": 4, "--steps": 4, "--batch-size": 2, "--lr": 1e-3}
    args = lambda **over: [x for k, v in {**flags, **over}.items() for x in ([k] if v is True else [k, v])]  # noqa: E731
    train(openrl_bin, llama_dir, rows, tmp_path, *args(), "--save-every", 2, "--out", tmp_path / "a")
    ckpt = tmp_path / "a" / "checkpoint-2"
    for over, rows_, message in [({"--batch-size": 1}, rows, "batch_size = 2, this one has 1"),
                                 ({"--lr": 2e-3}, rows, "lr = 0.001, this one has 0.002"),
                                 ({"--shuffle": True}, rows, "shuffle = false, this one has true"),
                                 ({}, rows[:3], "rows = 4, this one has 3"),
                                 ({"--packing": True, "--max-length": 16}, rows, "max_length = 256, this one has 16"),
                                 ({}, token_rows([5, 9, 7, 13]), "data_sha256")]:
        proc = train(openrl_bin, llama_dir, rows_, tmp_path, *args(**over), "--resume", ckpt, check=False)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    # Another base model of the same shape (other weights): its fingerprint differs.
    other = tmp_path / "other-llama"
    make_model("llama", other, seed=1)
    proc = train(openrl_bin, other, rows, tmp_path, *args(), "--resume", ckpt, check=False)
    assert proc.returncode != 0 and "model_fingerprint" in proc.stderr, proc.stderr
    # The same base and data go on.
    proc = train(openrl_bin, llama_dir, rows, tmp_path, *args(), "--resume", ckpt, check=False)
    assert proc.returncode == 0, proc.stderr
    proc = train(openrl_bin, llama_dir, rows, tmp_path, *args(), "--resume", tmp_path / "a", check=False)
    assert proc.returncode != 0 and "trainer_state.json" in proc.stderr, proc.stderr


def test_new_adapter_dropout_and_rslora_reach_peft(openrl_bin, llama_dir, tmp_path):
    rows = token_rows([9, 14, 20, 11])
    common = ["--lora-rank", 4, "--lora-alpha", 8, "--steps", 3, "--batch-size", 4, "--lr", 1e-2]
    plain, _ = train(openrl_bin, llama_dir, rows, tmp_path, *common, "--out", tmp_path / "plain")
    drop, _ = train(openrl_bin, llama_dir, rows, tmp_path, *common, "--lora-dropout", 0.3, "--rslora",
                    "--out", tmp_path / "drop")
    cfg = peft.PeftConfig.from_pretrained(tmp_path / "drop")
    assert cfg.lora_dropout == pytest.approx(0.3) and cfg.use_rslora and cfg.r == 4
    assert not peft.PeftConfig.from_pretrained(tmp_path / "plain").use_rslora
    # B starts at 0, so the first step's loss is the base's either way; then they part.
    assert drop[0]["loss"] == plain[0]["loss"] and drop[2]["loss"] != plain[2]["loss"]


def test_long_examples_are_refused_at_reading_or_truncated(openrl_bin, llama_dir, tmp_path):
    rows = token_rows([6, 300, 8])  # the model's context is 256
    proc = train(openrl_bin, llama_dir, rows, tmp_path, "--steps", 1, check=False)
    assert proc.returncode != 0 and "train.jsonl:2:" in proc.stderr and "300 tokens" in proc.stderr \
        and "--max-length" in proc.stderr, proc.stderr
    assert "train 0/" not in proc.stderr, "refused before training starts"

    masked = {"tokens": rows[1]["tokens"][:20], "weights": [0.0] * 12 + [1.0] * 8}
    proc = train(openrl_bin, llama_dir, rows + [masked], tmp_path, "--max-length", 10, "--truncate",
                 "--print-examples", check=False)
    assert proc.returncode != 0 and "train.jsonl:4:" in proc.stderr and "within its first --max-length" in proc.stderr

    proc = train(openrl_bin, llama_dir, rows, tmp_path, "--max-length", 10, "--truncate", "--print-examples",
                 check=False)
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(l) for l in proc.stdout.splitlines()]
    assert [p["tokens"] for p in printed] == [r["tokens"][:10] for r in rows]
    assert all(p["weights"] == [1.0] * len(p["tokens"]) for p in printed)
    steps, _ = train(openrl_bin, llama_dir, rows, tmp_path, "--truncate", "--steps", 1, "--batch-size", 3)
    assert steps[0]["tokens"] == 5 + 255 + 7


@pytest.mark.parametrize("args,message", [
    (["--lr-schedule", "step"], "--lr-schedule"),
    (["--eval-every", "2"], "--eval-every needs --eval-data"),
    (["--epochs", "-1"], "--epochs must be >= 0"),
    (["--warmup-steps", "-1"], "--warmup-steps must be >= 0"),
    (["--steps", "-1"], "--steps must be >= 0"),
    (["--save-every", "2"], "--save-every needs --out"),
    (["--lora-dropout", "1"], "dropout must be in [0, 1)"),
    (["--max-length", "300"], "--max-length 300 exceeds the model's context of 256 tokens"),
])
def test_bad_flags_are_refused_naming_the_flag(openrl_bin, llama_dir, tmp_path, args, message):
    proc = train(openrl_bin, llama_dir, token_rows([5]), tmp_path, *args, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
