"""`holysheep-lab` command line: demo | sim | report | compact | serve | prices."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from holysheep_lab.errors import HolySheepError

__all__ = ["main"]

SEED_MODELS = ("gpt-4.1", "claude-sonnet-4.5", "gemini-2.5-flash", "deepseek-v3.2")


def _demo(args: argparse.Namespace) -> int:
    import secrets

    from holysheep_lab.alerts import AlertManager, CallbackChannel
    from holysheep_lab.client.client import Client
    from holysheep_lab.client.results import ChatResult
    from holysheep_lab.core.budget import Budget
    from holysheep_lab.core.limits import Retry
    from holysheep_lab.errors import BudgetExceededError
    from holysheep_lab.sim.server import Simulator

    run = f"demo-{secrets.token_hex(3)}"
    alerts_seen: list[str] = []
    alerts = AlertManager(channels=[CallbackChannel(lambda a: alerts_seen.append(a.text))], cooldown=0)
    # Global limits are generous; this run's project has a small daily budget, so every run shows
    # its own alerts and refusals while the global totals persist across runs (rebuilt from the log).
    budget = Budget(daily=500, monthly=5000, projects={run: Budget(daily=args.budget, monthly=None)})
    prompts = [
        f"Summarise experiment {i}: " + "observations " * (20 + (i * 37) % 200) for i in range(args.calls)
    ]
    with Simulator(latency=0.002, fault_rate=0.04, retry_after=0.02, seed=7) as sim, Client(
        base_url=sim.base_url, budget=budget, log_dir=args.log_dir, alerts=alerts, project=run,
        retry=Retry(max_attempts=4, backoff=0.01, max_backoff=0.05),
    ) as client:
        print(f"simulator at {sim.base_url}; logging to {Path(args.log_dir).resolve()}; project {run}")
        per_model = len(prompts) // len(SEED_MODELS) + 1
        results: list[ChatResult | BaseException] = []
        for j, model in enumerate(SEED_MODELS):
            batch = prompts[j * per_model:(j + 1) * per_model]
            results += client.chat_many(batch, model=model, concurrency=16, progress=False, max_tokens=300)
        stream = client.chat("gpt-4.1", "Stream a short haiku about budgets.", max_tokens=60, stream=True)
        streamed = "".join(stream)
        answered = [r for r in results if isinstance(r, ChatResult)]
        refused = sum(isinstance(r, BudgetExceededError) for r in results)
        failed = len(results) - len(answered) - refused
        retried = sum(r.record.attempts - 1 for r in answered)
        print(f"{len(results)} calls: {len(answered)} answered ({retried} retries after injected faults), "
              f"{refused} refused before sending, {failed} failed after retries")
        print(f"streamed {len(streamed)} characters; cost ${stream.result.cost_usd:.6f}")
        alerts.flush(5)
        for text in alerts_seen:
            print("alert:", text)
        report = client.usage_report(days=1)
        print(json.dumps(report, indent=2, default=str))
    return 0


def _sim(args: argparse.Namespace) -> int:
    from holysheep_lab.sim.server import serve

    options = {"latency": args.latency}
    if args.fault_rate:
        options["fault_rate"] = args.fault_rate
    serve(host=args.host, port=args.port, **options)
    return 0


def _report(args: argparse.Namespace) -> int:
    from holysheep_lab.analysis import by_model
    from holysheep_lab.log.reader import read_log
    from holysheep_lab.reports.html import report

    paths = args.log_dir  # folders or globs; every log below them is read
    df = read_log(paths[0] if len(paths) == 1 else paths)
    rep = report(df, title=args.title)
    if args.html:
        rep.save(args.html)
        print(f"wrote {args.html}")
    else:
        print(by_model(df).to_string())
    return 0


def _compact(args: argparse.Namespace) -> int:
    from holysheep_lab.log import compact

    print(compact(args.log_dir))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from holysheep_lab.serve import serve

    serve(args.log_dir, host=args.host, port=args.port, token=args.token, token_file=args.token_file)
    return 0


def _price_table(args: argparse.Namespace) -> Any:
    from holysheep_lab.core.pricing import PriceTable

    return PriceTable.from_file(args.prices) if args.prices else PriceTable.default()


def _prices(args: argparse.Namespace) -> int:
    from holysheep_lab.errors import UnknownModelError
    from holysheep_lab.reports.prices import list_text, price_lines, show_text

    table = _price_table(args)
    if args.action == "show":
        try:
            print(show_text(table, args.model))
        except UnknownModelError:
            like = price_lines(table, text=args.model)
            hint = (f" Models whose names contain it: {', '.join(line.name for line in like[:8])}"
                    f"{', ...' if len(like) > 8 else ''}." if like else
                    f" Search with: holysheep-lab prices search {args.model.split('-')[0]}")
            print(f"holysheep-lab: no price for {args.model!r} in this table.{hint}", file=sys.stderr)
            return 2
        return 0
    text = args.text if args.action == "search" else None
    lines = price_lines(table, provider=args.provider, source=args.source, text=text)
    if not lines:
        print("holysheep-lab: no model matches.", file=sys.stderr)
        return 1
    print(list_text(table, lines))
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="holysheep-lab", description="LLM spend, visible and bounded.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="run a few hundred calls against the built-in simulator")
    d.add_argument("--log-dir", default="holysheep_logs")
    d.add_argument("--calls", type=int, default=300)
    d.add_argument("--budget", type=float, default=1.0, help="this run's daily project budget, USD")
    d.set_defaults(fn=_demo)
    s = sub.add_parser("sim", help="run the OpenAI-compatible simulator in the foreground")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--latency", type=float, default=0.0)
    s.add_argument("--fault-rate", type=float, default=0.0)
    s.set_defaults(fn=_sim)
    r = sub.add_parser("report", help="summarise the logs below folders (or write a self-contained HTML report)")
    r.add_argument("log_dir", nargs="+", help="folders or globs: every call log below them is read")
    r.add_argument("--html")
    r.add_argument("--title", default=None)
    r.set_defaults(fn=_report)
    c = sub.add_parser("compact", help="roll stale journals into Parquet and merge small files")
    c.add_argument("log_dir")
    c.set_defaults(fn=_compact)
    v = sub.add_parser("serve", help="serve the read-only usage API and HTML report of a log folder")
    v.add_argument("log_dir")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8765)
    v.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer TOKEN' (visible to `ps`: prefer --token-file or "
                        "$HOLYSHEEP_SERVE_TOKEN); needed for any --host but loopback")
    v.add_argument("--token-file", default=None, metavar="PATH", help="read the token from the first line of PATH")
    v.set_defaults(fn=_serve)
    from holysheep_lab.reports.prices import SOURCE_KINDS

    pr = sub.add_parser("prices", help="list, search and show model prices (USD per 1M tokens) and their source")
    actions = pr.add_subparsers(dest="action", required=True)
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--prices", metavar="FILE", help="a TOML/JSON price file layered over the defaults")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--provider", help="only this provider's models (openai, anthropic, google, ...)")
    filters.add_argument("--source", choices=SOURCE_KINDS, help="only models priced by the relay, the list "
                         "prices (genai-prices) or your own prices")
    actions.add_parser("list", parents=[options, filters], help="every model, one line each")
    found = actions.add_parser("search", parents=[options, filters], help="models whose names contain TEXT")
    found.add_argument("text", metavar="TEXT")
    show = actions.add_parser("show", parents=[options], help="a model's price history, tiers, cache rates, source")
    show.add_argument("model", metavar="MODEL")
    pr.set_defaults(fn=_prices)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except HolySheepError as exc:
        print(f"holysheep-lab: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
