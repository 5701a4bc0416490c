"""Parity of OpenRL's GGUF reader, dequantizer and quantizer with the `gguf` Python package 0.19.

* `openrl gguf dequant` is bit-identical to gguf.quants.dequantize on every type of two real
  models (SmolLM2 Q4_1: F32, Q4_1, Q8_0; Gemma 3 Q4_K_M: F32, Q5_0, Q4_K, Q8_0, Q6_K), on data
  the gguf package quantized (nasty values included) and on random blocks of every type.
* `openrl gguf quantize` writes the same bytes as gguf.quants.quantize.
* `openrl gguf inspect` reports what gguf.GGUFReader reports, and refuses corrupt files with an
  exit code and a message naming the field at fault, never a crash.

Run `python tests/test_gguf_format.py` to rewrite the fuzz seeds in tests/fuzz/gguf_header_fuzz/.
"""
import json
import pathlib
import platform
import struct
import subprocess
import sys

import numpy as np
import pytest

import gguf
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import safe_open, save_file

SEEDS = pathlib.Path(__file__).resolve().parent / "fuzz" / "gguf_header_fuzz"
QUANTIZABLE = ["F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
ALL_TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
             "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
# Subnormal, infinite and NaN inputs take numpy down paths (float -> int casts of inf/NaN, SIMD
# reductions) whose results OpenRL reproduces as numpy gives them on x86-64.
X86 = platform.machine() in ("x86_64", "AMD64")


def openrl(binary, *args, check=True):
    proc = subprocess.run([str(binary), "gguf", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)
    return proc


def assert_same_floats(ours: np.ndarray, ref: np.ndarray, what: str):
    """Bit-identical, except that NaNs only need to sit in the same places."""
    ref = np.asarray(ref, dtype=np.float32)
    assert ours.shape == ref.shape, what
    ours_nan, ref_nan = np.isnan(ours), np.isnan(ref)
    assert np.array_equal(ours_nan, ref_nan), f"{what}: NaNs differ"
    mismatch = np.nonzero(ours.view(np.uint32)[~ours_nan] != ref.view(np.uint32)[~ref_nan])[0]
    assert mismatch.size == 0, f"{what}: {mismatch.size} elements differ, first at {mismatch[:5]}"


def write_gguf(path, tensors: dict, alignment=None):
    """tensors: name -> (raw bytes as a uint8 array shaped (rows, row bytes), type name)."""
    w = gguf.GGUFWriter(str(path), "llama")
    if alignment:
        w.add_custom_alignment(alignment)
    for name, (data, type_name) in tensors.items():
        w.add_tensor(name, data, raw_dtype=Q[type_name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def nasty_floats(rng, rows=8, cols=256, extreme=False) -> np.ndarray:
    """Random rows at several scales, with special 32-element blocks."""
    x = (rng.standard_normal((rows, cols)) * rng.choice([1e-3, 1.0, 300.0], size=(rows, 1)))
    x = x.astype(np.float32)
    b = x.reshape(-1, 32)
    b[0] = 0.0                      # all zeros
    b[1] = -0.0                     # negative zeros
    b[2] = 3.25                     # identical values
    b[3, ::2] = -0.0
    b[4] *= np.float32(1e30)        # huge: float16 scales overflow
    b[5] = 65504.0
    b[6, 7] = 3e38
    b[6, 8] = -3.4e38
    b[7] *= np.float32(1e-30)       # tiny but normal
    b[8, :16], b[8, 16:] = 1.0, -1.0
    b[9] = -7.5
    if extreme:
        b[10] = 1e-40               # subnormal: the reciprocal scale overflows to inf
        b[11, 5] = 1e-45
        b[12, 3] = np.inf
        b[13] = -np.inf
        b[14, 9] = np.nan
        b[15, :] = np.nan
        b[16, 1] = np.frombuffer(struct.pack("<I", 0xFFC12345), np.float32)[0]
    return x


def dequant(binary, path, out, names=()):
    args = [path, "--out", out]
    for n in names:
        args += ["--tensor", n]
    openrl(binary, "dequant", *args)
    with safe_open(str(out), "np") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.fixture(scope="session")
def readers(real_ggufs):
    """GGUFReader per real file (parsing the vocabularies takes Python a while, so once)."""
    return {name: gguf.GGUFReader(str(path)) for name, path in real_ggufs.items()}


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_dequantizes_real_models_bit_identically(tmp_path, openrl_bin, real_ggufs, readers, model):
    reader = readers[model]
    by_type: dict = {}
    for t in reader.tensors:
        by_type.setdefault(t.tensor_type.name, []).append(t)
    expected_types = {"smollm2": {"F32", "Q4_1", "Q8_0"},
                      "gemma3": {"F32", "Q5_0", "Q4_K", "Q8_0", "Q6_K"}}[model]
    assert set(by_type) == expected_types
    # token_embd plus the first and last tensor of every type.
    chosen = {"token_embd.weight": None}
    for tensors in by_type.values():
        chosen.update({tensors[0].name: None, tensors[-1].name: None})
    ours = dequant(openrl_bin, real_ggufs[model], tmp_path / "out.safetensors", chosen)
    assert sorted(ours) == sorted(chosen)
    covered = set()
    for t in reader.tensors:
        if t.name in chosen:
            assert_same_floats(ours[t.name], gguf.quants.dequantize(t.data, t.tensor_type), t.name)
            covered.add(t.tensor_type.name)
    assert covered == expected_types


@pytest.mark.parametrize("type_name", QUANTIZABLE)
def test_dequantizes_what_the_gguf_package_quantized(tmp_path, openrl_bin, type_name):
    rng = np.random.default_rng(QUANTIZABLE.index(type_name))
    sources = {"plain": nasty_floats(rng), "odd_shape": rng.standard_normal((3, 5, 64)).astype(np.float32)}
    if X86:
        sources["extreme"] = nasty_floats(rng, extreme=True)
    tensors, expected = {}, {}
    with np.errstate(all="ignore"):
        for name, x in sources.items():
            q = gguf.quants.quantize(x, Q[type_name])
            tensors[name] = (q.view(np.uint8).reshape(*x.shape[:-1], -1), type_name)
            expected[name] = gguf.quants.dequantize(q.view(np.uint8), Q[type_name]).reshape(x.shape)
    write_gguf(tmp_path / "q.gguf", tensors)
    ours = dequant(openrl_bin, tmp_path / "q.gguf", tmp_path / "out.safetensors")
    for name, ref in expected.items():
        assert_same_floats(ours[name], ref, f"{type_name} {name}")


@pytest.mark.parametrize("type_name", ALL_TYPES)
def test_dequantizes_random_blocks_of_every_type(tmp_path, openrl_bin, type_name):
    """Random bytes are valid blocks of any type (their float16 scales include NaN and inf)."""
    rng = np.random.default_rng(100 + ALL_TYPES.index(type_name))
    block_size, type_size = gguf.GGML_QUANT_SIZES[Q[type_name]]
    rows, row = 6, 2 * 256
    raw = rng.integers(0, 256, size=(rows, row // block_size * type_size), dtype=np.uint8)
    write_gguf(tmp_path / "r.gguf", {"r": (raw, type_name)}, alignment=64)
    ours = dequant(openrl_bin, tmp_path / "r.gguf", tmp_path / "out.safetensors")
    with np.errstate(all="ignore"):
        ref = gguf.quants.dequantize(raw, Q[type_name])
    assert_same_floats(ours["r"], ref, type_name)


@pytest.mark.parametrize("type_name", QUANTIZABLE)
def test_quantizes_like_the_gguf_package(tmp_path, openrl_bin, type_name):
    rng = np.random.default_rng(200 + QUANTIZABLE.index(type_name))
    tensors = {"w": nasty_floats(rng, extreme=X86),
               "w3d": rng.standard_normal((2, 3, 96)).astype(np.float32),
               "odd_rows": rng.standard_normal((4, 40)).astype(np.float32),   # stays F32
               "half": rng.standard_normal((2, 32)).astype(np.float16)}       # copied as F16
    save_file(tensors, str(tmp_path / "in.safetensors"))
    report = openrl(openrl_bin, "quantize", tmp_path / "in.safetensors", "--type", type_name.lower(),
                    "--out", tmp_path / "q.gguf")
    assert {t["name"]: t["type"] for t in report["tensors"]} == {
        "w": type_name, "w3d": type_name, "half": "F16",
        "odd_rows": "F32" if gguf.GGML_QUANT_SIZES[Q[type_name]][0] > 1 else type_name}
    ours = {t.name: t for t in gguf.GGUFReader(str(tmp_path / "q.gguf")).tensors}
    for name in ("w", "w3d"):
        t = ours[name]
        assert t.tensor_type == Q[type_name]
        assert [int(d) for d in reversed(t.shape)] == list(tensors[name].shape)
        with np.errstate(all="ignore"):
            ref = gguf.quants.quantize(tensors[name], Q[type_name])
        assert np.asarray(t.data).tobytes() == ref.tobytes(), f"{type_name} {name}"
    assert np.asarray(ours["half"].data).tobytes() == tensors["half"].tobytes()


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_inspect_matches_gguf_reader(openrl_bin, real_ggufs, readers, model):
    reader = readers[model]
    full = openrl(openrl_bin, "inspect", real_ggufs[model], "--full-arrays")
    summary = openrl(openrl_bin, "inspect", real_ggufs[model])
    assert full["version"] == reader.fields["GGUF.version"].contents()
    assert full["alignment"] == reader.alignment
    assert full["data_start"] == reader.data_offset
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert list(full["metadata"]) == list(fields)  # file order
    for key, field in fields.items():
        assert full["metadata"][key] == field.contents(), key
        if field.types[0] == gguf.GGUFValueType.ARRAY and len(field.data) > 16:
            assert summary["metadata"][key] == {"type": "array", "element_type": field.types[1].name,
                                                "length": len(field.data)}, key
        else:
            assert summary["metadata"][key] == full["metadata"][key], key
    assert [t["name"] for t in full["tensors"]] == [t.name for t in reader.tensors]
    for ours, t in zip(full["tensors"], reader.tensors):
        assert ours["type"] == t.tensor_type.name
        assert ours["shape"] == [int(d) for d in reversed(t.shape)]
        assert ours["file_offset"] == t.data_offset
        assert ours["offset"] == t.data_offset - reader.data_offset
        assert ours["nbytes"] == t.n_bytes


# ---- corrupt files -------------------------------------------------------------------------

def raw_gguf(tensors=(), kv=(), version=3, data=b"", align=32) -> bytes:
    """Hand-built GGUF bytes: kv = [(key, type id, packed value)], tensors = [(name, dims, type, offset)]."""
    def s(text: str) -> bytes:
        b = text.encode()
        return struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, vtype, packed in kv:
        out += s(key) + struct.pack("<I", vtype) + packed
    for name, dims, ttype, offset in tensors:
        out += s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, offset)
    out += b"\0" * (-len(out) % align)
    return out + data


def corrupt_cases(real_gguf: pathlib.Path) -> dict:
    """name -> (file bytes, text the error must contain)."""
    head = real_gguf.read_bytes()[:4096]
    one = [("blk.0.attn_q.weight", [4], 0, 0)]
    return {
        "truncated_header": (head, "truncated"),
        "wrong_magic": (b"GGML" + head[4:], "bad magic 'GGML'"),
        "version_1": (raw_gguf(version=1), "GGUF version 1 is not supported"),
        "version_4": (raw_gguf(version=4), "GGUF version 4 is not supported"),
        "unknown_type": (raw_gguf([("blk.0.attn_q.weight", [4], 99, 0)], data=bytes(16)),
                         "tensor 'blk.0.attn_q.weight': type 99 is not a known ggml type"),
        "offset_past_end": (raw_gguf([("blk.0.attn_q.weight", [4], 0, 64)], data=bytes(16)),
                            "tensor 'blk.0.attn_q.weight': offset 64"),
        "misaligned": (raw_gguf([("w", [4], 0, 8)], data=bytes(64)), "tensor 'w': offset 8 is not a multiple"),
        "data_cut": (raw_gguf(one, data=bytes(8)), "tensor 'blk.0.attn_q.weight'"),
        "string_past_end": (raw_gguf(kv=[("general.name", 8, struct.pack("<Q", 10**12) + b"abc")]),
                            "metadata 'general.name': string length 1000000000000"),
        "absurd_array": (raw_gguf(kv=[("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 2**62))]),
                         "metadata 'tokenizer.ggml.tokens': array of STRING with length"),
        "absurd_tensor_count": (b"GGUF" + struct.pack("<IQQ", 3, 2**63, 0) + bytes(64), "tensor count"),
        "bad_alignment": (raw_gguf(kv=[("general.alignment", 4, struct.pack("<I", 48))]), "general.alignment"),
        "empty": (b"", "GGUF magic"),
    }


def test_inspect_refuses_corrupt_files_naming_the_field(tmp_path, openrl_bin, real_ggufs):
    for name, (data, message) in corrupt_cases(real_ggufs["smollm2"]).items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        proc = openrl(openrl_bin, "inspect", path, check=False)
        assert proc.returncode > 0, f"{name}: exit {proc.returncode}\n{proc.stderr}"  # < 0: a signal
        assert str(path) in proc.stderr, name
        assert message in proc.stderr, f"{name}: {proc.stderr}"
        proc = openrl(openrl_bin, "dequant", path, "--out", tmp_path / "x.safetensors", check=False)
        assert proc.returncode > 0 and message in proc.stderr, f"dequant {name}: {proc.stderr}"


def test_commands_report_bad_arguments(tmp_path, openrl_bin, real_ggufs):
    proc = openrl(openrl_bin, "dequant", real_ggufs["smollm2"], "--out", tmp_path / "x.safetensors",
                  "--tensor", "no.such.tensor", check=False)
    assert proc.returncode > 0 and "no tensor named 'no.such.tensor'" in proc.stderr
    assert not (tmp_path / "x.safetensors").exists()
    save_file({"w": np.zeros((2, 32), np.float32)}, str(tmp_path / "in.safetensors"))
    proc = openrl(openrl_bin, "quantize", tmp_path / "in.safetensors", "--type", "q4_k",
                  "--out", tmp_path / "q.gguf", check=False)
    assert proc.returncode > 0 and "--type 'q4_k'" in proc.stderr
    save_file({"b": np.zeros((2, 32), np.bool_)}, str(tmp_path / "bool.safetensors"))
    proc = openrl(openrl_bin, "quantize", tmp_path / "bool.safetensors", "--type", "q8_0",
                  "--out", tmp_path / "q.gguf", check=False)
    assert proc.returncode > 0 and "tensor 'b': dtype BOOL has no GGUF type" in proc.stderr


# ---- fuzz seeds ----------------------------------------------------------------------------

def make_fuzz_seeds(directory: pathlib.Path):
    """Tiny GGUF files written by the gguf package, and two broken ones, as libFuzzer seeds."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)

    def write(name, tensors, alignment=None, **kv):
        w = gguf.GGUFWriter(str(directory / name), "llama")
        if alignment:
            w.add_custom_alignment(alignment)
        for key, value in kv.items():
            w.add_key_value(key.replace("__", "."), *value)
        for tname, (data, qtype) in tensors.items():
            w.add_tensor(tname, data, raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    V = gguf.GGUFValueType
    write("valid_f32.gguf", {"w": (rng.standard_normal((2, 4)).astype(np.float32), None)},
          general__name=("tiny", V.STRING), llama__block_count=(1, V.UINT32))
    q8 = gguf.quants.quantize(rng.standard_normal((2, 32)).astype(np.float32), Q.Q8_0)
    q4k = rng.integers(0, 256, size=(1, 144), dtype=np.uint8)
    write("valid_quant.gguf", {"q8": (q8, Q.Q8_0), "q4k": (q4k, Q.Q4_K)}, alignment=64,
          tokenizer__ggml__tokens=(["a", "b", "<s>"], V.ARRAY, V.STRING),
          tokenizer__ggml__scores=([0.5, -1.0, 0.0], V.ARRAY, V.FLOAT32),
          tokenizer__ggml__add_bos_token=(True, V.BOOL), general__eps=(1e-6, V.FLOAT64),
          general__offset=(-3, V.INT64), general__small=(7, V.UINT8))
    write("valid_empty.gguf", {})
    valid = (directory / "valid_f32.gguf").read_bytes()
    (directory / "invalid_truncated.gguf").write_bytes(valid[:len(valid) - 8])
    (directory / "invalid_version1.gguf").write_bytes(valid[:4] + struct.pack("<I", 1) + valid[8:])


def test_fuzz_seeds_parse_as_their_names_say(openrl_bin):
    seeds = sorted(SEEDS.iterdir())
    assert any(p.name.startswith("valid_") for p in seeds)
    for path in seeds:
        assert path.stat().st_size < 4096, path
        proc = openrl(openrl_bin, "inspect", path, check=False)
        if path.name.startswith("valid_"):
            assert proc.returncode == 0, proc.stderr
            assert len(json.loads(proc.stdout)["tensors"]) == len(gguf.GGUFReader(str(path)).tensors)
        else:
            assert proc.returncode > 0, path


if __name__ == "__main__":
    make_fuzz_seeds(SEEDS)
    print(f"wrote {len(list(SEEDS.iterdir()))} seeds to {SEEDS}", file=sys.stderr)
