"""client.estimate_many: worst case and calibrated expected totals per model, and the budget's room."""

from __future__ import annotations

import re

import pytest

import holysheep_lab as hs
from holysheep_lab.client.frames import ReadableFrame
from holysheep_lab.core.display import format_usd

PROMPTS = [f"Summarise support ticket number {i} for the weekly review, in two sentences." for i in range(30)]


def test_worst_case_is_the_sum_of_the_guards_reservations(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                          budget=hs.Budget(daily=1.0, monthly=20.0, tz="UTC")) as c:
        est = c.estimate_many(PROMPTS, models=["gpt-4.1", "gpt-4.1-mini"], max_tokens=200)
        assert sim.requests == 0  # nothing sent
        for m in ("gpt-4.1", "gpt-4.1-mini"):
            one = sum(c.estimate(m, p, max_tokens=200).cost_usd for p in PROMPTS)
            assert est[m].worst_case_usd == pytest.approx(one, rel=1e-9)
            assert est[m].prompts == len(PROMPTS)
            assert est[m].expected_usd == est[m].worst_case_usd  # no history yet: the worst case
            assert est[m].basis == "no history: worst case"
        assert est["gpt-4.1-mini"].worst_case_usd < est["gpt-4.1"].worst_case_usd
        assert c.budget_status().line("daily")["spent_usd"] == 0


def test_expected_total_is_calibrated_from_the_log_and_close_to_the_real_bill(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        c.chat_many(PROMPTS[:10], model="gpt-4.1", max_tokens=300, progress=False)  # history
        est = c.estimate_many(PROMPTS[10:], model="gpt-4.1", max_tokens=300)["gpt-4.1"]
        assert est.basis == "10 logged calls of gpt-4.1"
        assert est.expected_usd < est.worst_case_usd
        real = c.chat_many(PROMPTS[10:], model="gpt-4.1", max_tokens=300, progress=False, as_frame=True)
        bill = float(real["cost_usd"].sum())
        assert bill <= est.worst_case_usd  # the worst case is a bound
        assert est.expected_usd == pytest.approx(bill, rel=0.35), (est.expected_usd, bill)
        # A model with no calls of its own borrows every model's history.
        other = c.estimate_many(PROMPTS[:3], model="gpt-4.1-mini", max_tokens=300)["gpt-4.1-mini"]
        assert other.basis == "30 logged calls of other models" and other.expected_usd < other.worst_case_usd


def test_fits_what_is_left_of_each_budget(log_dir):
    budget = hs.Budget(daily=0.05, monthly=10.0, tz="UTC", projects={"nlp": hs.Budget(daily=0.01, monthly=None)})
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir, budget=budget) as c:
        est = c.estimate_many(PROMPTS, model="gpt-4.1", max_tokens=500, project="nlp")
        fits = {f.label: f for f in est["gpt-4.1"].fits}
        assert set(fits) == {"daily", "monthly", "daily nlp"}
        daily = c.budget_status().line("daily")
        assert fits["daily"].left_usd == pytest.approx(daily["block_usd"])
        worst = est["gpt-4.1"].worst_case_usd
        assert fits["monthly"].worst_fits and fits["monthly"].verdict == "fits"
        assert (not fits["daily nlp"].worst_fits) == (worst > fits["daily nlp"].left_usd)
        assert not fits["daily nlp"].expected_fits and fits["daily nlp"].verdict == "no"
        frame = est.to_frame()
        assert isinstance(frame, ReadableFrame)
        assert list(frame.columns) == ["model", "prompts", "worst_case_usd", "expected_usd", "basis",
                                       "fits daily", "fits monthly", "fits daily nlp"]
        shown = repr(est)
        assert "nothing sent" in shown and "$" in shown and "fits" in shown
        assert "tex2jax_ignore" in est._repr_html_()
        without = c.estimate_many(PROMPTS[:2], model="gpt-4.1")
        assert {f.label for f in without["gpt-4.1"].fits} == {"daily", "monthly"}  # no project: global lines


def test_bad_arguments_are_refused(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir) as c:
        with pytest.raises(hs.ConfigError, match="one of the two"):
            c.estimate_many(PROMPTS, model="gpt-4.1", models=["gpt-4.1"])
        with pytest.raises(hs.ConfigError, match="one of the two"):
            c.estimate_many(PROMPTS)
        with pytest.raises(hs.ConfigError, match="empty"):
            c.estimate_many([], model="gpt-4.1")
        with pytest.raises(hs.UnknownModelError, match=r"Did you mean 'gpt-4\.1'"):
            c.estimate_many(PROMPTS, models=["gpt-4.1", "gpt-4.l"])
        assert sim.requests == 0


def test_budget_status_reads_well_and_keeps_exact_values(log_dir):
    with hs.Simulator() as sim, hs.Client(base_url=sim.base_url, log_dir=log_dir,
                                          budget=hs.Budget(daily=0.02, monthly=1.0, tz="UTC")) as c:
        c.chat("gpt-4.1", "hello there", max_tokens=64)
        status = c.budget_status()
        daily = status.line("daily")
        assert isinstance(daily["spent_usd"], float) and daily["spent_usd"] > 0
        assert [ln["window"] for ln in status] == ["daily", "monthly"]  # still a list of dicts
        text = repr(status)
        assert text.startswith("BudgetStatus:") and "spent_usd" in text
        assert format_usd(daily["spent_usd"]) in text and "$0.02" in text  # the money rule, not 0.0033363999999999998
        assert not re.search(r"\d\.\d{10,}", text), text
        frame = status.to_frame()
        assert isinstance(frame, ReadableFrame) and list(frame.columns) == status.columns()
        assert {"scope", "window", "spent_usd", "reserved_usd", "limit_usd", "block_usd"} <= set(frame.columns)
        assert frame["spent_usd"].iloc[0] == daily["spent_usd"]
        assert "tex2jax_ignore" in status._repr_html_() and "%" in status._repr_html_()
        with pytest.raises(KeyError, match="no budget line"):
            status.line("weekly")
