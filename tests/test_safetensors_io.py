"""Parity of OpenRL's safetensors reader and writer with Python `safetensors` and transformers.

Files written by `safetensors.torch.save_file` and by transformers' `save_pretrained` (sharded)
are read by `openrl safetensors inspect` with identical names, dtypes, shapes, bytes (SHA-256)
and metadata; files written by `openrl safetensors copy` are read back by Python identically,
are byte-identical to Python's own output where Python's is deterministic, and shard exactly
like transformers.
"""
import hashlib
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2, "U16": torch.uint16, "U32": torch.uint32,
    "U64": torch.uint64, "C64": torch.complex64,
}


def raw(t: torch.Tensor) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def sample_tensors() -> dict:
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (7,), (), (2, 0, 3), (4, 1, 2)]
    out = {}
    for i, (name, dtype) in enumerate(DTYPES.items()):
        shape = shapes[i % len(shapes)]
        if dtype.is_floating_point or dtype.is_complex:
            t = (torch.randn(shape, generator=g) * 8).to(dtype)
        elif dtype == torch.bool:
            t = torch.randint(0, 2, shape, generator=g).bool()
        else:
            t = torch.randint(0, 100, shape, generator=g).to(dtype)
        out[f"layer.{i}.{name.lower()}"] = t
    return out


def openrl(binary, *args, check=True):
    proc = subprocess.run([str(binary), "safetensors", *map(str, args)], capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    return proc


def assert_inspect_matches(report, tensors: dict, metadata: dict):
    by_name = {t["name"]: t for t in report["tensors"]}
    assert sorted(by_name) == sorted(tensors)
    reverse = {v: k for k, v in DTYPES.items()}
    for name, t in tensors.items():
        ours = by_name[name]
        assert ours["dtype"] == reverse[t.dtype], name
        assert tuple(ours["shape"]) == tuple(t.shape), name
        assert ours["sha256"] == hashlib.sha256(raw(t)).hexdigest(), name
        begin, end = ours["file_offsets"]
        assert pathlib.Path(ours["file"]).read_bytes()[begin:end] == raw(t), name
    for shard in report["shards"]:
        assert shard["metadata"] == metadata


def test_reads_files_written_by_python(tmp_path, openrl_bin):
    tensors = sample_tensors()
    metadata = {"format": "pt", "note": "ünïcode ✓", "step": "12"}
    path = tmp_path / "py.safetensors"
    save_file(tensors, path, metadata=metadata)
    report = openrl(openrl_bin, "inspect", path, "--sha256")
    assert report["index"] is None
    assert report["total_size"] == sum(len(raw(t)) for t in tensors.values())
    assert_inspect_matches(report, tensors, metadata)


def test_python_reads_files_written_by_openrl(tmp_path, openrl_bin):
    tensors = sample_tensors()
    metadata = {"format": "pt", "a": "1", "z": "ünïcode"}
    save_file(tensors, tmp_path / "py.safetensors", metadata=metadata)
    out = tmp_path / "ours.safetensors"
    assert openrl(openrl_bin, "copy", tmp_path / "py.safetensors", out) == {"written": [str(out)]}
    loaded = load_file(out)
    assert sorted(loaded) == sorted(tensors)
    for name, t in tensors.items():
        assert loaded[name].dtype == t.dtype and loaded[name].shape == t.shape, name
        assert raw(loaded[name]) == raw(t), name
    with safe_open(out, "pt") as f:
        assert f.metadata() == metadata


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_openrl_output_is_byte_identical_to_python(tmp_path, openrl_bin, metadata):
    # Python orders metadata keys by hash, so byte equality is only defined for <= 1 key.
    tensors = sample_tensors()
    save_file(tensors, tmp_path / "py.safetensors", metadata=metadata)
    openrl(openrl_bin, "copy", tmp_path / "py.safetensors", tmp_path / "ours.safetensors")
    assert (tmp_path / "ours.safetensors").read_bytes() == (tmp_path / "py.safetensors").read_bytes()


@pytest.fixture(scope="module")
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, vocab_size=128)
    return LlamaForCausalLM(config).eval()


def read_dir(path: pathlib.Path) -> dict:
    tensors = {}
    for f in sorted(path.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


@pytest.mark.parametrize("max_shard_size", ["20KB", "10KB"])
def test_sharded_transformers_checkpoints_round_trip(tmp_path, openrl_bin, tiny_llama,
                                                     max_shard_size):
    from transformers import LlamaForCausalLM

    theirs = tmp_path / "theirs"
    tiny_llama.save_pretrained(theirs, max_shard_size=max_shard_size)
    index = json.loads((theirs / "model.safetensors.index.json").read_text())
    expected = read_dir(theirs)
    assert len(set(index["weight_map"].values())) > 2

    report = openrl(openrl_bin, "inspect", theirs, "--sha256")
    assert report["index"] == str(theirs / "model.safetensors.index.json")
    assert report["total_size"] == index["metadata"]["total_size"]
    assert_inspect_matches(report, expected, {"format": "pt"})
    for t in report["tensors"]:
        assert pathlib.Path(t["file"]).name == index["weight_map"][t["name"]]

    # The state-dict order that transformers shards by is not stored in the files, so our shard
    # boundaries may differ here; test_sharding_matches_huggingface_hub pins the algorithm.
    ours = tmp_path / "ours"
    written = openrl(openrl_bin, "copy", theirs, ours, "--max-shard-size", max_shard_size)["written"]
    our_index = json.loads((ours / "model.safetensors.index.json").read_text())
    assert written[-1] == "model.safetensors.index.json"
    assert sorted(our_index["weight_map"]) == sorted(index["weight_map"])
    assert our_index["metadata"]["total_size"] == index["metadata"]["total_size"]
    limit = int(max_shard_size[:-2]) * 1000
    for shard in written[:-1]:
        loaded = load_file(ours / shard)
        assert len(loaded) == 1 or sum(len(raw(t)) for t in loaded.values()) <= limit
        with safe_open(ours / shard, "pt") as f:
            assert f.metadata() == {"format": "pt"}
    got = read_dir(ours)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert raw(got[name]) == raw(expected[name]), name

    shutil.copy(theirs / "config.json", ours / "config.json")
    reloaded = LlamaForCausalLM.from_pretrained(ours)
    original = tiny_llama.state_dict()
    for name, t in reloaded.state_dict().items():
        assert torch.equal(t, original[name]), name


def test_sharding_matches_huggingface_hub(tmp_path, openrl_bin):
    from huggingface_hub import save_torch_state_dict

    # huggingface_hub shards in insertion order, which a checkpoint does not record; a single
    # file of one dtype with sorted names makes our reader yield exactly that order.
    # Sizes in bytes: 4000, 4000, 16000 (above the limit), ..., 28000 (above) after a full shard.
    sizes = [1000, 1000, 4000, 500, 1500, 2400, 100, 2500, 7000, 300]
    state = {f"t{i:02d}.weight": torch.full((n,), float(i)) for i, n in enumerate(sizes)}
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    save_torch_state_dict(state, theirs, max_shard_size="10KB")
    index = json.loads((theirs / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 3

    save_file(state, tmp_path / "single.safetensors", metadata={"format": "pt"})
    ours = tmp_path / "ours"
    written = openrl(openrl_bin, "copy", tmp_path / "single.safetensors", ours,
                     "--max-shard-size", "10KB")["written"]
    assert sorted(written) == sorted(p.name for p in theirs.iterdir())
    our_index = json.loads((ours / "model.safetensors.index.json").read_text())
    assert our_index["weight_map"] == index["weight_map"]
    assert our_index["metadata"]["total_size"] == index["metadata"]["total_size"]
    for shard in written[:-1]:
        assert (ours / shard).read_bytes() == (theirs / shard).read_bytes(), shard


def test_single_shard_copy_writes_model_safetensors(tmp_path, openrl_bin, tiny_llama):
    tiny_llama.save_pretrained(tmp_path / "theirs", max_shard_size="20KB")
    written = openrl(openrl_bin, "copy", tmp_path / "theirs", tmp_path / "ours")["written"]
    assert written == ["model.safetensors"]
    assert sorted(load_file(tmp_path / "ours" / "model.safetensors")) == sorted(
        read_dir(tmp_path / "theirs"))


def test_malformed_files_fail_with_path_and_tensor(tmp_path, openrl_bin):
    good = tmp_path / "good.safetensors"
    save_file({"model.layers.0.mlp.up_proj.weight": torch.zeros(64, 32)}, good)
    data = bytearray(good.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["model.layers.0.mlp.up_proj.weight"]["data_offsets"] = [0, 4096]
    text = json.dumps(header).encode()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(len(text).to_bytes(8, "little") + text + bytes(4096))
    proc = openrl(openrl_bin, "inspect", bad, check=False)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr
    assert ("tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [0, 4096] hold 4096 bytes "
            "but shape [64, 32] of F32 needs 8192") in proc.stderr

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(good.read_bytes()[:-100]))
    proc = openrl(openrl_bin, "inspect", truncated, check=False)
    assert proc.returncode != 0 and "DATA_LOSS" in proc.stderr and str(truncated) in proc.stderr

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": 8192},
         "weight_map": {"w": "model-00001-of-00002.safetensors"}}))
    proc = openrl(openrl_bin, "inspect", tmp_path / "ckpt", check=False)
    assert proc.returncode != 0
    assert "model-00001-of-00002.safetensors" in proc.stderr and "'w'" in proc.stderr
