"""Pattern engine speed: 1,000,000 codes of SPRING-$$$$$$$$ without O, 0, I, 1.

Prints one JSON line: {"codes": N, "seconds": s, "codes_per_s": r, "runs_s": [...]}, where
``seconds`` is the median of ``--repeat`` runs (each run listed in ``runs_s``).
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pools.patterns import parse_pattern  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--pattern", default="SPRING-$$$$$$$$")
    parser.add_argument("--exclude", default="O,0,I,1")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    pattern = parse_pattern(args.pattern, args.exclude)
    pattern.generate(1000)  # warm-up: imports, allocator
    runs = []
    for _ in range(args.repeat):
        started = time.perf_counter()
        codes = pattern.generate(args.count)
        runs.append(time.perf_counter() - started)
        assert len(codes) == len(set(codes)) == args.count
        assert all(pattern.matches(code) for code in codes[:1000])
        del codes
    seconds = statistics.median(runs)
    print(
        json.dumps(
            {
                "codes": args.count,
                "seconds": round(seconds, 3),
                "codes_per_s": round(args.count / seconds),
                "runs_s": [round(r, 3) for r in runs],
            }
        )
    )


if __name__ == "__main__":
    main()
