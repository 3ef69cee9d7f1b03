"""The legacy test environment: openai SDK < 3 on `httpx`, in `.venv-legacy` (`make legacy-env`).

`legacy_python()` finds its interpreter; it skips locally when the environment was not built,
and fails under CI=true (where `make test` builds it from tests/legacy-requirements.txt).

Run as a script with that interpreter, this module drives the openai 2.x SDK through
`hs.HttpxMeteredTransport` / `hs.AsyncHttpxMeteredTransport` against a simulator the test
started, and prints one JSON line describing what the SDK saw; the test reads the logs.

    python legacy_env.py BASE_URL OUT_DIR SPEC_JSON

With `{"echo_key": KEY}` as the spec it instead sends one call with that key to a relay that
quotes it back (tests/_support/echo_relay.py) and prints what the SDK's exception says.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["LEGACY_VENV", "legacy_python"]

LEGACY_VENV = Path(__file__).resolve().parents[2] / ".venv-legacy"


def legacy_python() -> Path:
    """The legacy environment's python; pytest.skip (fail under CI=true) when it is missing."""
    import pytest

    python = LEGACY_VENV / "bin" / "python"
    if not (LEGACY_VENV / ".synced").exists() or not python.exists():
        message = f"{LEGACY_VENV} is not built: run `make legacy-env` (make test builds it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; it is required under CI=true")
        pytest.skip(message)
    return python


# ---------------------------------------------------------------------------------------------
# The script half: runs inside .venv-legacy only.


def _main(base_url: str, out: Path, spec: dict) -> dict:
    import asyncio
    import time

    import httpx
    import openai

    import holysheep_lab as hs

    budget = hs.Budget(**spec["budget"])
    report: dict = {"openai": openai.__version__, "httpx": httpx.__version__}

    def sync_client(sub: str, **options) -> openai.OpenAI:
        transport = hs.HttpxMeteredTransport(log_dir=out / sub, **options)
        return openai.OpenAI(base_url=base_url, api_key="x", http_client=httpx.Client(transport=transport))

    def refusal(exc: BaseException, elapsed: float) -> dict:
        return {"type": type(exc).__name__, "is_budget": isinstance(exc, hs.BudgetExceededError),
                "is_openai_error": isinstance(exc, openai.OpenAIError),
                "cause": type(exc.__cause__).__name__ if exc.__cause__ else None,
                "window": getattr(exc, "window", None), "seconds": elapsed}

    # 1. sync, under the budget: the same requests as hs.Client
    client = sync_client("sync", budget=budget)
    seen = []
    for model, prompt, max_tokens in spec["requests"]:
        t0 = time.perf_counter()
        try:
            r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                               max_tokens=max_tokens, temperature=0.7)
            seen.append({"ok": [r.usage.prompt_tokens, r.usage.completion_tokens]})
        except Exception as exc:  # reported, and judged by the test
            seen.append({"refused": refusal(exc, time.perf_counter() - t0)})
    report["models"] = [m.id for m in client.models.list()]  # pass-through, unlogged
    client.close()
    report["sync"] = seen

    # 2. streaming without stream_options: no usage chunk reaches the caller
    client = sync_client("stream", budget=budget)
    streams = []
    for model, prompt, max_tokens in spec["requests"]:
        try:
            chunks = list(client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                temperature=0.7, stream=True))
        except hs.BudgetExceededError:
            streams.append(None)
            continue
        streams.append({"n": len(chunks), "all_have_choices": all(bool(c.choices) for c in chunks),
                        "any_usage": any(c.usage is not None for c in chunks)})
    client.close()
    report["stream"] = streams

    # 3. async, under the budget
    async def run_async() -> list:
        transport = hs.AsyncHttpxMeteredTransport(log_dir=out / "async", budget=budget)
        aclient = openai.AsyncOpenAI(base_url=base_url, api_key="x", http_client=httpx.AsyncClient(transport=transport))
        got = []
        for model, prompt, max_tokens in spec["requests"]:
            t0 = time.perf_counter()
            try:
                await aclient.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                      max_tokens=max_tokens, temperature=0.7)
                got.append("ok")
            except Exception as exc:
                got.append(refusal(exc, time.perf_counter() - t0))
        await aclient.close()
        return got

    report["async"] = asyncio.run(run_async())

    # 4. a failing relay: the SDK's retries must not multiply the transport's
    client = sync_client("retry", retry=hs.Retry(max_attempts=2, backoff=0.01, max_backoff=0.02))
    t0 = time.perf_counter()
    try:
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}], max_tokens=20,
                                       extra_headers={"X-Sim-Fault": "server_error"})
        report["retry"] = {"type": None}
    except Exception as exc:
        report["retry"] = {"type": type(exc).__name__, "seconds": time.perf_counter() - t0,
                           "status": getattr(exc, "status_code", None)}
    client.close()
    return report


def _echo(base_url: str, out: Path, key: str) -> dict:
    """A relay that quotes the key in its 401 (the test's EchoRelay): what does the SDK user see?"""
    import httpx
    import openai

    import holysheep_lab as hs

    transport = hs.HttpxMeteredTransport(log_dir=out / "echo")
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, http_client=httpx.Client(transport=transport))
    try:
        client.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "hi"}], max_tokens=20)
        return {"type": None}
    except openai.APIStatusError as exc:
        return {"type": type(exc).__name__, "text": "\n".join([str(exc), repr(exc.body), exc.response.text])}
    finally:
        client.close()


if __name__ == "__main__":
    import json
    import sys

    spec = json.loads(sys.argv[3])
    if "echo_key" in spec:
        print(json.dumps(_echo(sys.argv[1], Path(sys.argv[2]), spec["echo_key"])))
    else:
        print(json.dumps(_main(sys.argv[1], Path(sys.argv[2]), spec)))
