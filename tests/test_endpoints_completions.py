"""The legacy Completions adapter: prompts of every form, the default cap of 16, n and best_of."""

from __future__ import annotations

import pytest
from _support.odd_content import ODD, non_ascii, utf8

from holysheep_lab.core.metering import Metering
from holysheep_lab.core.pricing import Price, Usage
from holysheep_lab.endpoints.completions import COMPLETIONS, DEFAULT_MAX_TOKENS, CompletionEvents
from holysheep_lab.errors import ConfigError, ResponseFormatError


@pytest.mark.parametrize("kind", sorted(ODD))
def test_a_string_prompt_is_measured_whole(kind):
    facts = COMPLETIONS.plan({"model": "m", "prompt": ODD[kind]}, False)
    assert facts.size.text_bytes == utf8(ODD[kind]) and facts.size.non_ascii_bytes == non_ascii(ODD[kind])
    assert facts.size.safe_bound() >= utf8(ODD[kind])


def test_the_api_default_cap_applies_when_max_tokens_is_absent():
    assert DEFAULT_MAX_TOKENS == 16
    assert COMPLETIONS.plan({"model": "m", "prompt": "x"}, False).max_tokens == 16
    assert COMPLETIONS.plan({"model": "m", "prompt": "x", "max_tokens": 500}, False).max_tokens == 500


@pytest.mark.parametrize(("prompt", "tokens", "prompts"), [
    ("one prompt", 0, 1),
    (["a", "b", "c"], 0, 3),
    ([101, 102, 103, 104], 4, 1),
    ([[1, 2], [3, 4, 5]], 5, 2),
])
def test_every_prompt_form_and_its_answers(prompt, tokens, prompts):
    facts = COMPLETIONS.plan({"model": "m", "prompt": prompt, "n": 2, "best_of": 3, "suffix": "end"}, False)
    assert facts.exact_tokens == tokens
    assert facts.answers == prompts * 3  # best_of generations of each prompt are billed
    assert facts.size.text_bytes >= utf8("end")


def test_the_output_bound_covers_every_generation(log_dir):
    m = Metering(log_dir=log_dir, prices={"instruct": Price("1.5", "2", max_output=4096)})
    plan = m.preview(COMPLETIONS, {"model": "instruct", "prompt": ["a", "b"], "n": 2})
    assert plan.output_bound == 16 * 2 * 2
    plan = m.preview(COMPLETIONS, {"model": "instruct", "prompt": [[5] * 1000], "max_tokens": 10, "best_of": 4})
    assert plan.output_bound == 40 and plan.input_bound >= 1000
    m.close()


@pytest.mark.parametrize(("extra", "match"), [
    ({"model": 3}, "'model' string"),
    ({"prompt": {"text": "x"}}, "string, a list"),
    ({"max_tokens": 0}, "positive integer"),
    ({"n": 0}, "n must be a positive integer"),
    ({"best_of": "2"}, "best_of must be a positive integer"),
])
def test_unreadable_requests_are_named_errors(extra, match):
    with pytest.raises(ConfigError, match=match):
        COMPLETIONS.plan({"model": "m", "prompt": "x", **extra}, False)


def test_streams_ask_for_usage_like_chat():
    payload: dict = {"model": "m", "prompt": "x", "stream": True}
    assert COMPLETIONS.request_usage(payload) is True
    assert payload["stream_options"] == {"include_usage": True}
    assert COMPLETIONS.request_usage(payload) is False


def test_usage_and_text():
    body = {"choices": [{"text": "Hé 😀", "index": 0}], "usage": {"prompt_tokens": 5, "completion_tokens": 7,
                                                                 "total_tokens": 12}}
    assert COMPLETIONS.usage(body) == Usage(5, 7)
    assert COMPLETIONS.completion_text(body) == "Hé 😀"
    assert COMPLETIONS.completion_text({"choices": [{"message": {"content": "chat"}}]}) is None
    with pytest.raises(ResponseFormatError, match="no 'usage'"):
        COMPLETIONS.usage({"choices": []})


def test_events_read_choice_text_and_hide_the_usage_chunk_only_when_asked():
    events = COMPLETIONS.stream_reader()
    assert isinstance(events, CompletionEvents)
    ev = events.read({"choices": [{"text": "a", "index": 0}, {"text": "𠮷", "index": 1}], "usage": None}, True)
    assert ev.texts == ("a", "𠮷") and ev.keep and ev.usage is None
    last = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    assert events.read(last, True).keep is False and events.read(last, False).keep is True
    assert events.read(last, False).usage == Usage(3, 2)
    assert events.read({"choices": [{"delta": {"content": "chat"}}]}, False).texts == ()
    assert not events.billing_free(b"data: [DONE]\n\n")
    assert events.billing_free(b'data: {"choices":[{"text":"x"}],"usage":null}\n\n')
