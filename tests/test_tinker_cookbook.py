"""tinker-cookbook's basic recipes, unmodified, against `openrl serve` on SmolLM2-135M-Instruct, offline.

Each recipe runs as the cookbook documents it, `python -m tinker_cookbook.recipes.<name> key=value ...`,
in a subprocess pointed at our server:
  * recipes.sl_basic          -> supervised/train.py, on a local JSONL (FromConversationFileBuilder);
  * recipes.sl_loop           -> the minimal SL loop; its HuggingFaceH4/no_robots comes from a local
                                 `datasets` cache built here;
  * recipes.math_rl.train env=arithmetic -> rl/train.py on the synthetic arithmetic environment;
  * recipes.rl_loop           -> the minimal RL loop; its openai/gsm8k comes from a local `datasets` cache;
  * recipes.distillation.on_policy_distillation dataset=deepmath -> distillation/train_on_policy.py on a
                                 local zwhe99/DeepMath-103K cache, with a teacher adapter trained here;
  * recipes.preference.dpo.train dataset=hhh -> preference/train_dpo.py on a local Anthropic/hh-rlhf cache:
                                 reference logprobs from a sampler snapshot, the loss through
                                 forward_backward_custom;
  * recipes.sdft.train dataset=toolalpaca -> distillation/sdft.py, self-distillation on a local Arrow
                                 dataset: top-K forward KL through cross_entropy with (T, K) target_tokens
                                 and weights, and reverse=True, top-K reverse KL through
                                 forward_backward_custom on (T, K) logprobs.

Nothing is fetched. The cookbook loads tokenizers with its own `get_tokenizer(model_name)` (AutoTokenizer by
hub name), so the tokenizer directory the server reports in get_info (model_data.tokenizer_id) is laid out
as a Hugging Face hub cache entry under each model name, and HF_HUB_OFFLINE=1 makes transformers read it.

sl_basic, sl_loop and rl_loop look the model up in the cookbook's model table (model_info) and accept no
renderer override, so the same GGUF is also served as "Qwen/Qwen3-4B-Instruct-2507": that table entry's
renderer, qwen3_instruct, is plain ChatML (<|im_start|>role ... <|im_end|>), which is SmolLM2-Instruct's own
chat format and uses its special tokens. math_rl takes renderer_name= and runs under the real name.

requirements.lock pins tinker-cookbook 0.6.1 and the packages it imports on these paths (chz, termcolor,
pillow, blobfile, lxml, pylatexenc), installed with --no-deps: 0.6.1 declares tml-renderers>=0.4.1, which is
not on PyPI, and imports it lazily, only for Inkling and Kimi-K3.1 models.
"""
import importlib
import json
import math
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO
from tinker_server import Server, create_key


def _import_recipes():
    for module in ("tinker_cookbook.recipes.sl_basic", "tinker_cookbook.recipes.sl_loop",
                   "tinker_cookbook.recipes.rl_loop", "tinker_cookbook.recipes.math_rl.train",
                   "tinker_cookbook.recipes.preference.dpo.train",
                   "tinker_cookbook.recipes.distillation.on_policy_distillation",
                   "tinker_cookbook.recipes.sdft.train"):
        try:
            importlib.import_module(module)
        except ImportError as e:  # requirements.lock pins them: a missing one is a broken setup
            raise RuntimeError(f"tinker-cookbook is not importable ({module}: {e}); run `make setup` "
                               "(requirements.lock pins tinker-cookbook==0.6.1 and its imports)") from e


_import_recipes()

from datasets.packaged_modules.json.json import Json as JsonBuilder  # noqa: E402

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
ALIAS = "Qwen/Qwen3-4B-Instruct-2507"  # SmolLM2 again, under a model_info entry whose renderer is ChatML
RENDERER = "qwen3_instruct"
GGUF = REPO / "var" / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
RUN_TIMEOUT = 600

@pytest.fixture(scope="module")
def server(openrl_bin, tmp_path_factory):
    assert GGUF.exists(), f"{GGUF} missing: run `make setup`"
    data = tmp_path_factory.mktemp("cookbook-server")
    key = create_key(openrl_bin, data, name="cookbook")
    srv = Server(openrl_bin, data, base_models={SMOLLM2: GGUF, ALIAS: GGUF}).start()
    yield {"url": srv.url, "key": key, "log": srv.log_path}
    srv.stop()


def _conversations(n_rounds):
    colors = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown", "gray",
              "gold"]
    return [{"messages": [{"role": "user", "content": f"Say the secret word for {c}."},
                          {"role": "assistant", "content": f"The secret word for {c} is zorblax-{c}."}]}
            for _ in range(n_rounds) for c in colors]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _hub_cache_entry(hub, name, tokenizer_dir):
    """Lays `tokenizer_dir`'s files out as the hub cache snapshot of `name` (refs/main -> snapshot)."""
    repo = hub / ("models--" + name.replace("/", "--"))
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    for f in pathlib.Path(tokenizer_dir).iterdir():
        if f.suffix in (".json", ".jinja", ".txt", ".model") and f.name != "openrl_import.json":
            shutil.copy(f, snapshot / f.name)


def _datasets_cache_entry(cache, repo_id, config_name, splits):
    """Prepares local JSONL files as `datasets`' own cache of hub dataset `repo_id` (what a previous online
    load_dataset leaves behind), so load_dataset(repo_id, config_name) works with HF_DATASETS_OFFLINE=1."""
    org, name = repo_id.split("/")
    builder = JsonBuilder(cache_dir=str(cache), dataset_name=name, config_name=config_name,
                          data_files={k: [str(v)] for k, v in splits.items()}, hash="offline")
    builder.download_and_prepare()
    built = pathlib.Path(builder.cache_dir)  # <cache>/<name>/<config>-<hash>/<version>/offline
    # datasets looks a hub id up under <org>___<name in snake case> (DeepMath-103K -> deep_math-103_k).
    from datasets.naming import camelcase_to_snakecase
    target = (pathlib.Path(cache) / f"{org}___{camelcase_to_snakecase(name)}" / config_name /
              built.relative_to(cache).parts[2] / "offline")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(target))


@pytest.fixture(scope="module")
def cookbook(server, tmp_path_factory):
    """The environment the recipes run in: our server, offline tokenizers and datasets, data files."""
    work = tmp_path_factory.mktemp("cookbook")
    env = dict(os.environ, TINKER_API_KEY=server["key"], TINKER_BASE_URL=server["url"], TINKER_TELEMETRY="0",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_HUB_CACHE=str(work / "hub"), HF_DATASETS_CACHE=str(work / "datasets"),
               PYTHONUNBUFFERED="1")
    env.pop("HF_HOME", None)
    # The tokenizer directory comes from the server, as any Tinker client gets it (get_info).
    probe = subprocess.run(
        [sys.executable, "-c",
         "import tinker\n"
         f"tc = tinker.ServiceClient().create_lora_training_client(base_model={SMOLLM2!r}, rank=1).result()\n"
         "print(tc.get_info().model_data.tokenizer_id)"],
        env=env, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    tokenizer_dir = probe.stdout.strip().splitlines()[-1]
    assert (pathlib.Path(tokenizer_dir) / "tokenizer.json").exists(), tokenizer_dir
    for name in (SMOLLM2, ALIAS):
        _hub_cache_entry(work / "hub", name, tokenizer_dir)

    sl8 = _write_jsonl(work / "sl8.jsonl", _conversations(1)[:8])      # sl_basic: 2 batches of 4
    sl24 = _write_jsonl(work / "sl24.jsonl", _conversations(2))        # sl_loop: 6 batches of 4
    gsm = _write_jsonl(work / "gsm8k.jsonl", [
        {"question": f"What is {a} + {b}?", "answer": f"{a} + {b} = <<{a}+{b}={a + b}>>{a + b}\n#### {a + b}"}
        for a, b in [(1, 2), (3, 4), (5, 6), (7, 8)]])
    _datasets_cache_entry(work / "datasets", "HuggingFaceH4/no_robots", "default", {"train": sl24, "test": sl8})
    _datasets_cache_entry(work / "datasets", "openai/gsm8k", "main", {"train": gsm, "test": gsm})
    # Anthropic/hh-rlhf's layout: whole conversations as text, identical up to the last assistant turn.
    hh = [{"chosen": f"\n\nHuman: {c['messages'][0]['content']}\n\nAssistant: {c['messages'][1]['content']}",
           "rejected": f"\n\nHuman: {c['messages'][0]['content']}\n\nAssistant: I do not know any secret words."}
          for c in _conversations(2)]
    hh_train = _write_jsonl(work / "hh_train.jsonl", hh)
    hh_test = _write_jsonl(work / "hh_test.jsonl", hh[:4])
    _datasets_cache_entry(work / "datasets", "Anthropic/hh-rlhf", "default", {"train": hh_train, "test": hh_test})
    questions = _write_jsonl(work / "deepmath.jsonl", [{"question": c["messages"][0]["content"]} for c in _conversations(6)])
    _datasets_cache_entry(work / "datasets", "zwhe99/DeepMath-103K", "default", {"train": questions})
    return {"env": env, "work": work, "url": server["url"], "key": server["key"], "sl8": sl8,
            "server_log": server["log"]}


def run_recipe(cookbook, name, module, args):
    """Runs `python -m <module> <args>`; returns (completed process, log dir, combined output)."""
    log_path = cookbook["work"] / name
    out_file = cookbook["work"] / f"{name}.out"
    argv = [sys.executable, "-m", module, *args, f"log_path={log_path}", f"base_url={cookbook['url']}"]
    start = time.monotonic()
    with open(out_file, "w") as out:
        proc = subprocess.run(argv, env=cookbook["env"], stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT)
    output = out_file.read_text()
    print(f"{name}: exit {proc.returncode} after {time.monotonic() - start:.1f} s; output in {out_file}")
    return proc, log_path, output


def read_metrics(log_path, output):
    path = log_path / "metrics.jsonl"
    assert path.exists(), output[-4000:]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def final_checkpoint(log_path, output):
    path = log_path / "checkpoints.jsonl"
    assert path.exists(), output[-4000:]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    final = [r for r in rows if r.get("name") == "final"]
    assert final, rows
    assert re.fullmatch(r"tinker://[^/]+/weights/final", final[-1]["state_path"]), final
    assert re.fullmatch(r"tinker://[^/]+/sampler_weights/final", final[-1]["sampler_path"]), final
    return final[-1]


def check_exit(proc, output):
    """The recipe exited 0 (which includes ServiceClient.close() posting /sessions/{id}/finish)."""
    assert proc.returncode == 0, f"exit {proc.returncode}:\n{output[-4000:]}"


def test_sl_basic_on_local_conversations_lowers_the_loss(cookbook):
    """recipes.sl_basic (supervised/train.py): 2 batches x 3 epochs of a local JSONL, cross_entropy + Adam."""
    sl8 = cookbook["sl8"]
    proc, log_path, output = run_recipe(cookbook, "sl_basic", "tinker_cookbook.recipes.sl_basic", [
        f"model_name={ALIAS}",
        "dataset_builder=tinker_cookbook.supervised.data:FromConversationFileBuilder",
        f"dataset_builder.file_path={sl8}",
        f"dataset_builder.common_config.model_name_for_tokenizer={ALIAS}",
        f"dataset_builder.common_config.renderer_name={RENDERER}",
        "dataset_builder.common_config.batch_size=4",
        "dataset_builder.common_config.max_length=128",
        "learning_rate=1e-3", "num_epochs=3", "eval_every=0", "save_every=0", "lora_rank=8"])
    metrics = read_metrics(log_path, output)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6], metrics
    nll = [m["train_mean_nll"] for m in metrics]
    assert all(math.isfinite(x) and x > 0 for x in nll), nll
    # Three passes over the same 8 conversations: the assistant turns become far more likely.
    assert nll[-1] < 0.5 * nll[0] and sum(nll[4:]) < sum(nll[:2]), nll
    assert all(m["num_sequences"] == 4 and m["num_loss_tokens"] > 0 for m in metrics), metrics
    assert all(math.isfinite(m["grad_norm"]) and m["grad_norm"] > 0 for m in metrics), metrics
    final_checkpoint(log_path, output)
    check_exit(proc, output)


def test_sl_loop_on_offline_no_robots_lowers_the_loss(cookbook):
    """recipes.sl_loop: the minimal loop, reading HuggingFaceH4/no_robots (here: the local cache)."""
    proc, log_path, output = run_recipe(cookbook, "sl_loop", "tinker_cookbook.recipes.sl_loop", [
        f"model_name={ALIAS}", "batch_size=4", "learning_rate=1e-3", "lora_rank=8", "save_every=0"])
    assert proc.returncode == 0, output[-4000:]
    assert "Training completed" in output
    metrics = read_metrics(log_path, output)
    assert len(metrics) == 6, metrics  # 24 conversations / batch 4
    nll = [m["train_mean_nll"] for m in metrics]
    assert all(math.isfinite(x) and x > 0 for x in nll), nll
    assert nll[-1] < 0.5 * nll[0], nll
    assert all(math.isfinite(m["train_mean_bpb"]) for m in metrics), metrics
    final_checkpoint(log_path, output)


def test_math_rl_arithmetic_samples_and_trains(cookbook):
    """recipes.math_rl.train env=arithmetic (rl/train.py): sample groups, grade, importance_sampling + Adam."""
    steps = 3
    proc, log_path, output = run_recipe(cookbook, "math_rl", "tinker_cookbook.recipes.math_rl.train", [
        "env=arithmetic", f"model_name={SMOLLM2}", f"renderer_name={RENDERER}", "group_size=4",
        "groups_per_batch=2", "max_tokens=5", f"max_steps={steps}", "eval_every=0", "save_every=0",
        # The recipe's default loss, stable_reinforce, is not offered by openrl serve (400 at once).
        "loss_fn=importance_sampling", "lora_rank=8", "learning_rate=1e-4",
        "behavior_if_log_dir_exists=delete"])
    rows = read_metrics(log_path, output)
    metrics = [m for m in rows if "env/all/reward/total" in m]
    assert [m["step"] for m in metrics] == list(range(1, steps + 1)), rows
    for m in metrics:
        # Rewards: 1 for a right answer, minus 0.1 for a badly formatted one.
        assert -0.1 - 1e-9 <= m["env/all/reward/total"] <= 1.0, m
        assert m["env/all/total_episodes"] == 8 and m["env/all/ac_tokens_per_turn"] > 0, m
    trained = [m for m in metrics if "optim/kl_sample_train_v1" in m]
    assert trained, rows
    for m in trained:
        # The trainer's logprobs of the sampled tokens match the sampler's (same weights, same tokens).
        assert abs(m["optim/kl_sample_train_v1"]) < 1e-2, m
        assert math.isfinite(m["optim/entropy"]) and m["optim/entropy"] > 0, m
    assert max(m.get("tokens/cumulative/trained", 0) for m in rows) > 0, rows
    iterations = sorted(p.name for p in log_path.glob("iteration_*"))
    assert len(iterations) == steps, iterations
    final_checkpoint(log_path, output)
    check_exit(proc, output)


def test_dpo_recipe_on_offline_hh_rlhf_grows_the_margin(cookbook):
    """recipes.preference.dpo.train dataset=hhh (preference/train_dpo.py): the reference is a sampler
    snapshot of the initial weights (save_weights_and_get_sampling_client) scored with compute_logprobs,
    the DPO loss goes through forward_backward_custom (forward, then a linearized backward)."""
    steps = 6
    proc, log_path, output = run_recipe(cookbook, "dpo", "tinker_cookbook.recipes.preference.dpo.train", [
        f"model_name={SMOLLM2}", f"renderer_name={RENDERER}", "dataset=hhh", "batch_size=4",
        f"max_steps={steps}", "learning_rate=1e-4", "lr_schedule=constant", "dpo_beta=0.1",
        "behavior_if_log_dir_exists=delete"])
    check_exit(proc, output)
    rows = [m for m in read_metrics(log_path, output) if "dpo_loss" in m]
    assert len(rows) == steps, rows
    # Step 1: the policy is the reference, so the trainer's logprobs equal the sampler's and the loss is ln 2.
    assert abs(rows[0]["margin"]) < 1e-3 and abs(rows[0]["dpo_loss"] - math.log(2)) < 1e-4, rows[0]
    margins = [m["margin"] for m in rows]
    assert all(b > a for a, b in zip(margins, margins[1:])), margins  # it prefers the chosen answers more each step
    assert margins[-1] > 1.0 and rows[-1]["accuracy"] == 1.0 and rows[-1]["dpo_loss"] < 0.3, rows[-1]
    final_checkpoint(log_path, output)


def test_on_policy_distillation_moves_the_student_toward_its_teacher(cookbook):
    """recipes.distillation.on_policy_distillation (distillation/train_on_policy.py): the student samples,
    a teacher sampling client (SmolLM2 with an adapter taught the secret words, made here through the SDK)
    scores the samples with compute_logprobs, and importance_sampling trains on the negative reverse KL."""
    import tinker
    from tinker import types

    teacher = tinker.ServiceClient(base_url=cookbook["url"], api_key=cookbook["key"]).create_lora_training_client(
        base_model=SMOLLM2, rank=8, seed=3).result()
    tok = teacher.get_tokenizer()
    data = []
    for conv in _conversations(1):
        prompt = tok.apply_chat_template(conv["messages"][:1], add_generation_prompt=True, tokenize=False)
        p = tok(prompt, add_special_tokens=False).input_ids
        ids = tok(prompt + conv["messages"][1]["content"] + "<|im_end|>\n", add_special_tokens=False).input_ids
        data.append(types.Datum(model_input=types.ModelInput.from_ints(ids[:-1]), loss_fn_inputs={
            "target_tokens": ids[1:], "weights": [0.0] * (len(p) - 1) + [1.0] * (len(ids) - len(p))}))
    for _ in range(8):
        teacher.forward_backward(data, "cross_entropy").result()
        teacher.optim_step(types.AdamParams(learning_rate=2e-3)).result()
    teacher_path = teacher.save_weights_for_sampler("teacher").result().path
    steps = 24  # the 72 questions of the local DeepMath cache, 3 groups of 4 samples per step
    proc, log_path, output = run_recipe(
        cookbook, "distill", "tinker_cookbook.recipes.distillation.on_policy_distillation", [
            f"model_name={SMOLLM2}", f"renderer_name={RENDERER}", f"teacher_model={SMOLLM2}",
            f"teacher_checkpoint={teacher_path}", "dataset=deepmath", "group_size=4", "groups_per_batch=3",
            "max_tokens=12", "lora_rank=8", "learning_rate=5e-4", f"max_steps={steps}", "eval_every=0",
            "save_every=0", "behavior_if_log_dir_exists=delete"])
    check_exit(proc, output)
    kl = [m["teacher_kl"] for m in read_metrics(log_path, output) if "teacher_kl" in m]
    assert len(kl) == steps and all(math.isfinite(x) for x in kl), kl
    # The student starts far from the teacher (it does not know the words) and moves toward it.
    # Sampling is unseeded, so runs differ, and they end in one of two places. Of 12 runs here (6 at
    # this lr, one of them in a full make test; 6 at 3e-4), the mean of the last four steps was
    # 0.12-0.25 of the first two's in the 8 where the student found the teacher's words (KL ~1 nat
    # per token) and 0.42-0.54 in the 4 where it settled on their frame without them (KL ~3). At lr 1e-3
    # over 12 steps one run of five did not move at all (7.1, 6.6 -> 7.5, 7.2, 5.2).
    assert kl[0] > 3.0, kl
    assert sum(kl[-4:]) / 4 < 0.7 * sum(kl[:2]) / 2, kl


def test_rl_loop_on_offline_gsm8k_completes(cookbook):
    """recipes.rl_loop: the minimal loop, sampling groups for openai/gsm8k (here: the local cache)."""
    proc, log_path, output = run_recipe(cookbook, "rl_loop", "tinker_cookbook.recipes.rl_loop", [
        f"model_name={ALIAS}", "batch_size=2", "group_size=4", "max_tokens=8", "max_steps=1", "lora_rank=8",
        "save_every=0",
        # The recipe's default loss, stable_reinforce, is not offered by openrl serve (400 at once).
        "loss_fn=importance_sampling"])
    assert proc.returncode == 0, output[-4000:]
    assert "Training completed" in output
    metrics = read_metrics(log_path, output)
    assert [m["progress/batch"] for m in metrics] == [0], metrics  # max_steps=1 of 2 batches
    assert all(0.0 <= m["reward/total"] <= 1.0 and m["time/total"] > 0 for m in metrics), metrics
    final_checkpoint(log_path, output)


@pytest.mark.parametrize("reverse", [False, True])
def test_sdft_distills_the_teachers_top_k(cookbook, reverse):
    """recipes.sdft.train (distillation/sdft.py) on a local ToolAlpaca-format Arrow dataset: the student
    samples, the teacher (the same model, shown the golden answer) scores the completion with its top-K
    prompt logprobs, and the student trains on them: top-K forward KL as cross_entropy over (T, K)
    target_tokens and weights, or (reverse=True) top-K reverse KL through forward_backward_custom."""
    from datasets import Dataset
    data = cookbook["work"] / "toolalpaca"
    if not data.exists():
        Dataset.from_dict({
            "prompt": [f"Which tool adds {a} and {b}?" for a, b in zip(range(10), range(10, 20))],
            "golden_response": [f"The calculator tool: {a} + {b} = {a + b}." for a, b in zip(range(10), range(10, 20))],
        }).save_to_disk(str(data))
    steps, topk = 2, 5
    name = "sdft_reverse" if reverse else "sdft"
    proc, log_path, output = run_recipe(cookbook, name, "tinker_cookbook.recipes.sdft.train", [
        f"model_name={SMOLLM2}", f"renderer_name={RENDERER}", "dataset=toolalpaca",
        f"toolalpaca_data_path={data}", "groups_per_batch=2", "group_size=1", "max_tokens=12",
        f"max_steps={steps}", f"topk={topk}", f"reverse={reverse}", "lora_rank=4", "learning_rate=1e-3",
        "eval_every=0", "save_every=0", "max_context_length=2048", "behavior_if_log_dir_exists=delete"])
    check_exit(proc, output)
    rows = read_metrics(log_path, output)
    trained = [m for m in rows if m.get("sdft/topk") == topk]
    assert len(trained) == steps, rows
    for m in trained:
        assert m["sdft/num_datums"] == 2 and m["grad_norm"] > 0, m  # the student took a step
        if reverse:
            assert m["sdft/reverse_kl_positions"] > 0 and math.isfinite(m["sdft/reverse_kl_loss"]), m
        else:
            assert m["sdft/total_completion_tokens"] > 0 and m["sdft/mean_teacher_entropy"] >= 0, m
