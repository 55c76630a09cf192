"""Two checkouts of hubembed side by side, alternating, on this machine: is a refactor slower?

    python scripts/ab_checkouts.py BEFORE_DIR AFTER_DIR [--lines 1000] [--rounds 3]

Per round, for each checkout in turn (A, B, A, B...):
  * first pass in process: load minilm, embed N sentences the process has never seen (STS-B test), timed;
  * whole process: ``python -m hubembed extract`` of the same N lines (``--no-cache``), wall time.
Best of the rounds per checkout, and the ratio after/before.
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
STSB = os.path.join(HERE, "..", "..", "shared", "data", "stsb", "stsb-en-test.csv")  # sentence1,sentence2,score

FIRST_PASS = """
import sys, time
t0 = time.perf_counter()
import hubembed
assert hubembed.__file__.startswith(sys.argv[2]), (hubembed.__file__, sys.argv[2])  # the checkout asked for
enc = hubembed.load("minilm")
texts = [l.rstrip("\\n") for l in open(sys.argv[1], encoding="utf-8")]
t1 = time.perf_counter()
enc.embed(texts)
print(time.perf_counter() - t1)
"""


def _sentences(n: int, path: str) -> None:
    with open(STSB, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    seen, out = set(), []
    for r in rows:
        for t in (r[0], r[1]):
            if t not in seen:
                seen.add(t)
                out.append(t)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out[:n]) + "\n")


def _env(tree: str) -> dict:
    return dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")


def _child(cmd: list, env: dict, cwd: str) -> tuple:
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=cwd)  # cwd: not a checkout (it comes first)
    wall = time.perf_counter() - t
    if r.returncode:
        sys.exit(r.stderr[-3000:])
    return wall, r.stdout


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--lines", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "texts.txt")
    _sentences(a.lines, src)
    best = {k: {"first_pass": 1e9, "extract": 1e9} for k in ("before", "after")}
    print(f"cpu: {os.cpu_count()} cores, load {os.getloadavg()}")
    for i in range(a.rounds):
        for name in ("before", "after"):
            tree = os.path.abspath(getattr(a, name))
            wall, out = _child([sys.executable, "-c", FIRST_PASS, src, tree], _env(tree), tmp)
            fp = float(out.strip().splitlines()[-1])
            dest = os.path.join(tmp, f"out-{name}-{i}")
            cmd = [sys.executable, "-m", "hubembed", "extract", src, "-o", dest, "--model", "minilm", "-q"]
            ex, _ = _child(cmd + ["--no-cache"], _env(tree), tmp)
            best[name]["first_pass"] = min(best[name]["first_pass"], fp)
            best[name]["extract"] = min(best[name]["extract"], ex)
            print(f"round {i} {name:6s}: first pass {fp:6.2f} s in process; whole-process extract {ex:6.2f} s")
    for k in ("first_pass", "extract"):
        b, f = best["before"][k], best["after"][k]
        print(f"best {k:10s}: before {b:6.2f} s, after {f:6.2f} s, after/before {f / b:.3f}")


if __name__ == "__main__":
    main()
