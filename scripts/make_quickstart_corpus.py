"""Writes the synthetic corpora that `openrl quickstart` trains on (committed under data/quickstart).

addition.txt: "a + b = c" for a, b in [0, 39]; subtraction.txt: "a - b = c" for 0 <= b <= a <= 39.
The quickstart holds out a deterministic tenth of each for evaluation.
"""
import pathlib

out = pathlib.Path(__file__).resolve().parents[1] / "data" / "quickstart"
out.mkdir(parents=True, exist_ok=True)
N = 40
(out / "addition.txt").write_text("".join(f"{a} + {b} = {a + b}\n" for a in range(N) for b in range(N)))
(out / "subtraction.txt").write_text(
    "".join(f"{a} - {b} = {a - b}\n" for a in range(N) for b in range(a + 1)))
