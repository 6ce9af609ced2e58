"""Fuzzing campaign: every harness under libFuzzer (atheris), each in its own process.

    python fuzz/run_all.py --seconds 600            # 600 s per harness, one at a time
    python fuzz/run_all.py --seconds 120 --jobs 2   # two harnesses at a time
    python fuzz/run_all.py --seconds 60 --boundscheck   # Numba kernels with bounds checks

Each harness keeps its corpus in fuzz/corpus/<harness>/ (grown across runs; started from
fuzz/seeds/, made by make_seeds.py if missing, and for whole-file harnesses from the
malformed files of tests/corpus/). A crash, an uncaught exception, a timeout or an RSS over
the limit writes the input to fuzz/artifacts/<harness>-<kind>-<sha1>; with --keep-going the
harness is restarted for the rest of its time. Prints executions per harness at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
ROOT = FUZZ_DIR.parent
sys.path.insert(0, str(FUZZ_DIR))
import ppan_fuzz  # noqa: E402

WHOLE_FILE = {"fuzz_open", "fuzz_container", "fuzz_structured", "fuzz_differential"}


def run_harness(name: str, seconds: int, args) -> dict:
    corpus = FUZZ_DIR / "corpus" / name
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts = FUZZ_DIR / "artifacts"
    artifacts.mkdir(exist_ok=True)
    seeds = [str(FUZZ_DIR / "seeds" / ppan_fuzz.SEED_FOLDERS[name])]
    if name in WHOLE_FILE:
        seeds.append(str(ROOT / "tests" / "corpus"))
    env = dict(os.environ)
    if args.boundscheck:
        env["NUMBA_BOUNDSCHECK"] = "1"
        env["NUMBA_CACHE_DIR"] = str(FUZZ_DIR / ".numba-boundscheck-cache")
    log_path = FUZZ_DIR / "logs" / f"{name}{'-boundscheck' if args.boundscheck else ''}.log"
    log_path.parent.mkdir(exist_ok=True)
    result = {"harness": name, "executions": 0, "findings": [], "runs": 0}
    deadline = time.monotonic() + seconds
    with open(log_path, "w") as log:
        while True:
            left = int(deadline - time.monotonic())
            if left < 5:
                break
            cmd = [sys.executable, str(FUZZ_DIR / f"{name}.py"), str(corpus), *seeds,
                   f"-max_total_time={left}", f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_limit_mb}",
                   f"-max_len={args.max_len}", "-print_final_stats=1",
                   f"-artifact_prefix={artifacts}/{name}-"]
            log.write(f"$ {' '.join(cmd)}\n")
            log.flush()
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  errors="replace", env=env, cwd=ROOT)
            log.write(proc.stdout)
            result["runs"] += 1
            done = re.findall(r"stat::number_of_executed_units: (\d+)", proc.stdout)
            if done:
                result["executions"] += int(done[-1])
            else:
                counts = re.findall(r"^#(\d+)\s", proc.stdout, re.M)
                result["executions"] += int(counts[-1]) if counts else 0
            found = re.findall(r"Test unit written to (\S+)", proc.stdout)
            result["findings"] += found
            if proc.returncode == 0 or not found:
                if proc.returncode != 0:
                    result["findings"].append(f"exit status {proc.returncode}, see {log_path}")
                break
            if not args.keep_going:
                break
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60, help="fuzzing time per harness")
    parser.add_argument("--jobs", type=int, default=1, help="harnesses run at the same time")
    parser.add_argument("--harness", action="append", choices=ppan_fuzz.HARNESSES,
                        help="run only these (repeatable); default: all")
    parser.add_argument("--boundscheck", action="store_true",
                        help="NUMBA_BOUNDSCHECK=1 with a separate NUMBA_CACHE_DIR")
    parser.add_argument("--keep-going", action="store_true", help="restart a harness after a finding")
    parser.add_argument("--timeout", type=int, default=10, help="seconds per input")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--max-len", type=int, default=16384)
    args = parser.parse_args()
    if not (FUZZ_DIR / "seeds").is_dir():
        subprocess.run([sys.executable, str(FUZZ_DIR / "make_seeds.py")], check=True)
    names = args.harness or ppan_fuzz.HARNESSES
    start = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda n: run_harness(n, args.seconds, args), names))
    total = 0
    print(f"\n{'harness':<20} {'executions':>12}  findings")
    for r in results:
        total += r["executions"]
        print(f"{r['harness']:<20} {r['executions']:>12}  {len(r['findings'])}")
        for finding in r["findings"]:
            print(f"{'':<20} {'':>12}  {finding}")
    print(f"{'total':<20} {total:>12}  in {time.monotonic() - start:.0f} s"
          f"{' (NUMBA_BOUNDSCHECK=1)' if args.boundscheck else ''}")
    return 1 if any(r["findings"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
