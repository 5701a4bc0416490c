"""Token-id parity of `openrl tokenize/detokenize` with Hugging Face `tokenizers`.

For the real Qwen 3, Llama 3 and Gemma 3 tokenizer.json files and for a tokenizer trained by
`openrl train-tokenizer`, a hostile corpus (many scripts, emoji sequences, code, whitespace runs,
odd contractions, special tokens inside text, long words) must encode to exactly the ids HF
produces, with and without special tokens; decoding (both skip_special_tokens values) must
match HF's text; streaming through the incremental decoder must add up to the full decode.
"""
import json
import random
import subprocess

import pytest
from tokenizers import Tokenizer


# TODO(lead): conftest.run_jsonl uses str.splitlines(); once it splits on "\n", use it here.
def run_jsonl(binary, args, requests, timeout=600):
    """conftest.run_jsonl, but splitting stdout on "\n" only: decoded text legitimately holds
    U+2028, U+0085 and other characters that str.splitlines() treats as line breaks."""
    stdin = "".join(json.dumps(r) + "\n" for r in requests)
    proc = subprocess.run([str(binary), *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout)
    lines = [json.loads(line) for line in proc.stdout.split("\n") if line.strip()]
    return lines, proc


SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<pad>",
            "<unk>", "<mask>", "<tool_call>", "<think>", "</think>", "<|s|>", "<|e|>"]

FRAGMENTS = [
    "Hello", " world", "HELLO", "WoRlD", " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n",
    "\r\n\r\n", "\r", " \n ", "'s", "'S", "'LL", "'Ll", "'ve", "'RE", "'d", "'M", "'t", "n't",
    "don't", "I'M", "HE'S", "we'LL", "'ſ", "0", "7", "42", "123", "1234", "12345678901234567890",
    "3.14159", "1,000,000", "٣٤٥", "①②", "中文", "你好，世界！", "汉字测试。", "日本語", "カタカナ",
    "ひらがな", "한국어", "안녕하세요", "مرحبا", "بالعالم", "नमस्ते", "दुनिया", "Привет", "мир",
    "Ελληνικά", "עברית", "ไทย", "Tiếng Việt", "😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸",
    "🇯🇵", "❤️", "🧑🏿‍💻", "e\u0301", "é", "ﬁ", "ℌ", "Ǆ", "İ", "ß", "\u00a0", "\u2003", "\u3000",
    "\u200b", "\u200d", "\u2028", "\u0085", "\ufeff", "�", "\\xff", "<0xFF>", "<0x41>", "\\u00e9",
    "<|im_start", "im_end|>", "<<bos>>", "<bos", "def", "():", "    return", "{", "}", "[];",
    "=>", "!==", "//", "/*", "*/", "#include", "->", "::", "...", "!!!", "???", "—", "–", "«»",
    "“quoted”", "‘single’", "$", "%", "&&", "||", "_", "__init__", "snake_case", "camelCase",
    "https://example.com/path?q=1&r=2", "user@example.com", "C++", "x86_64", "v1.2.3",
]

FIXED = [
    "", " ", "  ", "\n", "\r\n", "\t", "a", "Hello world", "hello  world  ", "trailing spaces   ",
    "   leading spaces", "HE'S WE'LL they'RE I'M you'Ve it'D 'S 'LL 'sx", "don't won't can't",
    "中文测试，你好世界！这是一个很长的句子。", "日本語のテキストです。カタカナとひらがな。", "한국어 텍스트입니다.",
    "مرحبا بالعالم، كيف حالك؟", "नमस्ते दुनिया, आप कैसे हैं?",
    "emoji 😀😃🎉 👍🏽👍🏿 👨‍👩‍👧‍👦 🏳️‍🌈 🇺🇸🇯🇵🇩🇪 ❤️‍🔥",
    "def f(x):\n\treturn x  # comment\n\n    if x:\n        pass\n",
    "class A {\n  public:\n    int x = 0;  \n};\r\n",
    "1234567890 3.14159 1e10 12,345,678 0x1F 99999999999999999999",
    "mixed Русский English 中文 עברית ελληνικά ไทย",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "<bos><start_of_turn>user\nhello<end_of_turn>\n<start_of_turn>model\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "text<|endoftext|>more text<|endoftext|>", "<eos><eos><pad>", "<think>\nhmm\n</think>\n\nok",
    "<0xFF> <0x41> \\xff \\u00e9 � \ufffd\ufffd", "<|im_start", "im_start|>", "<<bos>>",
    "a" * 300, "supercalifragilisticexpialidocious" * 20, "x" * 1000, " " * 50, "\n" * 40,
    "\t" * 17 + "tabbed", "word " * 200, "é" * 100, "中" * 200, "😀" * 50,
    "\u00a0nbsp\u2003em\u3000ideographic", "zero\u200bwidth\u200djoiner", "e\u0301 vs é", "ﬁ ① ℌ ㍿",
    "line1\rline2\r\nline3\n\rline4", "   \n   \n", " \t \r\n ", "ſ 'ſ 'S's", "İstanbul ǅ ß",
]


def hostile_corpus(seed=1234, n_random=260):
    rng = random.Random(seed)
    lines = list(FIXED)
    pool = FRAGMENTS + SPECIALS
    for _ in range(n_random):
        k = rng.randint(1, 14)
        lines.append("".join(rng.choice(pool) for _ in range(k)))
    # Random code points from script blocks and symbol ranges (no surrogates).
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0x3040, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00),
              (0x1F300, 0x1F64F), (0x2000, 0x206F), (0xFF00, 0xFFEF)]
    for _ in range(60):
        chars = []
        for _ in range(rng.randint(1, 40)):
            lo, hi = rng.choice(ranges)
            chars.append(chr(rng.randint(lo, hi)))
        lines.append("".join(chars))
    return lines


def check_parity(openrl_bin, model_dir, hf, lines, random_id_seqs):
    enc_req = []
    for text in lines:
        enc_req.append({"text": text, "add_special_tokens": True})
        enc_req.append({"text": text, "add_special_tokens": False})
    got, proc = run_jsonl(openrl_bin, ["tokenize", "--model", str(model_dir)], enc_req)
    assert proc.returncode == 0, proc.stderr
    assert len(got) == len(enc_req)
    mismatches = []
    for req, resp in zip(enc_req, got):
        want = hf.encode(req["text"], add_special_tokens=req["add_special_tokens"]).ids
        if resp["ids"] != want:
            mismatches.append((req, resp["ids"], want))
    assert not mismatches, f"{len(mismatches)} encode mismatches, first: {mismatches[0]!r}"

    id_seqs = [resp["ids"] for resp in got] + random_id_seqs
    dec_req = [{"ids": ids, "skip_special_tokens": skip, "incremental": True}
               for ids in id_seqs for skip in (False, True)]
    dec, proc = run_jsonl(openrl_bin, ["detokenize", "--model", str(model_dir)], dec_req)
    assert proc.returncode == 0, proc.stderr
    assert len(dec) == len(dec_req)
    bad = []
    for req, resp in zip(dec_req, dec):
        want = hf.decode(req["ids"], skip_special_tokens=req["skip_special_tokens"])
        if resp["text"] != want or "".join(resp["pieces"]) != want:
            bad.append((req, resp, want))
    assert not bad, f"{len(bad)} decode mismatches, first: {bad[0]!r}"


def random_ids(hf, seed, count=60):
    rng = random.Random(seed)
    size = hf.get_vocab_size(with_added_tokens=True)
    seqs = []
    for _ in range(count):
        seqs.append([rng.randrange(size) for _ in range(rng.randint(1, 20))])
    # Byte-ish tokens: low ids are single bytes / byte-fallback tokens in all three families.
    for _ in range(count):
        seqs.append([rng.randrange(0, 300) for _ in range(rng.randint(1, 12))])
    return seqs


@pytest.mark.parametrize("family", ["qwen3", "llama3", "gemma3"])
def test_real_tokenizer_parity(openrl_bin, real_tokenizer_dirs, family):
    model_dir = real_tokenizer_dirs[family]
    hf = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    lines = hostile_corpus()
    assert len(lines) > 300
    check_parity(openrl_bin, model_dir, hf, lines, random_ids(hf, seed=len(family)))


def test_trained_tokenizer_parity(openrl_bin, tmp_path):
    rng = random.Random(99)
    corpus = hostile_corpus(seed=7, n_random=200)
    docs = [" ".join(rng.choice(corpus) for _ in range(3)) for _ in range(300)]
    corpus_file = tmp_path / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    out = tmp_path / "tok"
    _, proc = run_jsonl(openrl_bin, ["train-tokenizer", "--corpus", str(corpus_file),
                                     "--vocab-size", "1200", "--special-token", "<|s|>",
                                     "--special-token", "<|e|>", "--out", str(out)], [])
    assert proc.returncode == 0, proc.stderr
    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    size = hf.get_vocab_size(with_added_tokens=True)
    assert 600 < size <= 1200
    assert hf.token_to_id("<|s|>") == 0 and hf.token_to_id("<|e|>") == 1
    assert hf.encode("hi", add_special_tokens=True).ids[0] == 0  # BOS from the template
    check_parity(openrl_bin, out, hf, hostile_corpus(seed=5), random_ids(hf, seed=3))


def test_errors_name_file_and_field(openrl_bin, tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "tokenizer.json").write_text(json.dumps(
        {"model": {"type": "WordPiece", "vocab": {}}}), encoding="utf-8")
    _, proc = run_jsonl(openrl_bin, ["tokenize", "--model", str(d)], [{"text": "x"}])
    assert proc.returncode == 2
    assert "tokenizer.json: model.type: unsupported model type 'WordPiece'" in proc.stderr
    # A bad request line is reported on its own line and does not stop the stream.
    good = tmp_path / "good"
    _, proc = run_jsonl(openrl_bin, ["train-tokenizer", "--corpus", "/dev/null",
                                     "--vocab-size", "300", "--out", str(good)], [])
    assert proc.returncode == 0, proc.stderr
    got, proc = run_jsonl(openrl_bin, ["tokenize", "--model", str(good)],
                          [{"txt": "x"}, {"text": "ok"}])
    assert proc.returncode == 1
    assert "error" in got[0] and "text" in got[0]["error"]["message"]
    assert got[1]["ids"] == Tokenizer.from_file(str(good / "tokenizer.json")).encode("ok").ids
