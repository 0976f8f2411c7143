"""Every bench script runs end to end with tiny counts and prints its one JSON line (the
figures themselves are measured by hand, at full size: see each script's docstring)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER = "postgres://postgres@127.0.0.1:5432"

BENCHES = {
    "api_claims": (["--clients", "2", "--seconds", "1", "--coupons", "20000", "--workers", "1", "--threads", "2"],
                   {"claims", "claims_per_s", "errors", "duplicates"}),
    "coupon_list": (["--count", "15000", "--invalidate", "500"], {"first_page_ms", "page_100_ms", "bulk_invalidate_s"}),
    "export": (["--count", "3000"], {"rows", "seconds", "copy_baseline_s"}),
    "generation": (["--count", "3000", "--filler", "1000"], {"count", "seconds", "copy_baseline_s"}),
    "imports": (["--rows", "3000"], {"rows", "seconds", "created"}),
    "patterns": (["--count", "2000", "--repeat", "1"], {"codes", "seconds"}),
}


@pytest.mark.parametrize("script", BENCHES)
def test_a_bench_script_runs_with_tiny_counts(script):
    args, figures = BENCHES[script]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL"}}
    env.update(BENCH_POSTGRES=SERVER, DATABASE_URL=f"{SERVER}/coupons_bench_tiny", BENCH_CACHE_URL="redis://127.0.0.1:6379/13")
    result = subprocess.run([sys.executable, f"bench/{script}.py", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1, result.stdout
    line = json.loads(lines[0])
    assert figures <= set(line), line
    if "errors" in line:
        assert line["errors"] == 0 and line["duplicates"] == 0 and line["claims"] > 0, line
