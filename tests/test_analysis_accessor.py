"""`df.hs` wherever pandas is: registered at `import holysheep_lab` when pandas came first (a
notebook), on first use otherwise, and `import holysheep_lab` alone never imports pandas."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "sample" / "calls"


def run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_pandas_first_then_holysheep_lab_gives_df_hs_on_pd_read_parquet():
    code = (
        "import pandas as pd\n"
        "import holysheep_lab\n"
        f"df = pd.read_parquet({str(SAMPLE)!r})\n"
        "d = df.hs.daily(tz='UTC')\n"
        "import json; print(json.dumps([len(df), int(d['calls'].sum()), round(float(d['cost_usd'].sum()), 6)]))\n"
    )
    rows, calls, cost = json.loads(run(code))
    assert rows > 40_000 and calls == rows and cost > 0


def test_pandas_first_gives_df_hs_on_a_duckdb_frame():
    code = (
        "import pandas as pd, duckdb\n"
        "import holysheep_lab\n"
        f"df = duckdb.sql(\"select * from read_parquet('{SAMPLE}/**/*.parquet', hive_partitioning=true)\").df()\n"
        "ref = pd.read_parquet(" + repr(str(SAMPLE)) + ")\n"
        "a = df.hs.daily(by='model', tz='UTC'); b = ref.hs.daily(by='model', tz='UTC')\n"
        "print(a[['date', 'model', 'calls']].values.tolist() == b[['date', 'model', 'calls']].values.tolist(),"
        " bool(abs(a['cost_usd'] - b['cost_usd']).max() < 1e-9), len(a))\n"
    )
    same, close, groups = run(code).split()
    assert same == "True" and close == "True" and int(groups) > 100


def test_holysheep_lab_first_stays_pandas_free_until_first_use():
    code = (
        "import sys\n"
        "import holysheep_lab as hs\n"
        "before = 'pandas' in sys.modules\n"
        "import pandas as pd\n"
        "plain = hasattr(pd.DataFrame({'x': [1]}), 'hs')\n"
        f"df = hs.read_log({str(SAMPLE)!r})\n"
        "print(before, plain, len(df.hs.by_model()) > 0)\n"
    )
    assert run(code) == "False False True"
