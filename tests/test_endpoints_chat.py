"""The endpoint seam and its first adapter, Chat Completions: paths, request facts, usage, events."""

from __future__ import annotations

import pytest

import holysheep_lab as hs
from holysheep_lab.core.pricing import Usage
from holysheep_lab.endpoints import ENDPOINTS, find_endpoint, normalise_path
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS, ChatEvents
from holysheep_lab.errors import ConfigError, ResponseFormatError


@pytest.mark.parametrize(
    "path",
    [
        "/v1/chat/completions",
        "/v1/chat/completions/",
        "/V1/Chat/Completions",
        "/v1/chat/completions;v=2",
        "/v1/chat/completions?api-version=2024-10-21",
        "/openai/deployments/my-gpt/chat/completions",
        "/chat/completions",
    ],
)
def test_every_spelling_of_a_chat_path_finds_the_chat_adapter(path):
    assert find_endpoint("POST", path) is CHAT_COMPLETIONS
    assert find_endpoint("post", path) is CHAT_COMPLETIONS


@pytest.mark.parametrize("method, path", [("GET", "/v1/chat/completions"), ("POST", "/v1/models"),
                                          ("POST", "/v1/chat/completions-not")])
def test_other_requests_have_no_adapter(method, path):
    assert find_endpoint(method, path) is None


def test_normalise_path_keeps_one_spelling():
    assert normalise_path("/V1/Chat;a=1/Completions/?x=1") == "/v1/chat/completions"
    assert normalise_path("/") == "/"
    assert normalise_path("/openai/deployments/X/embeddings") == "/embeddings"


def test_registry_holds_distinct_named_adapters():
    names = [e.name for e in ENDPOINTS]
    assert len(names) == len(set(names)) and "chat.completions" in names


def test_plan_reads_model_bound_choices_and_stream():
    facts = CHAT_COMPLETIONS.plan({"model": "m", "messages": [{"role": "user", "content": "héllo"}],
                                   "max_completion_tokens": 50, "max_tokens": 10, "n": 3, "stream": True}, False)
    assert (facts.model, facts.max_tokens, facts.answers, facts.stream) == ("m", 50, 3, True)
    assert facts.size.text_bytes >= len("héllo".encode()) and facts.size.non_ascii_bytes == 2
    assert facts.content is None and facts.conversation_id is not None
    kept = CHAT_COMPLETIONS.plan({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, True)
    assert kept.content is not None and "hi" in kept.content and kept.answers == 1


@pytest.mark.parametrize("payload, match", [
    ({"messages": []}, "'model' string"),
    ({"model": "m", "messages": "hi"}, "must be a list"),
    ({"model": "m", "messages": [], "max_tokens": 0}, "positive integer"),
    ({"model": "m", "messages": [], "max_tokens": True}, "positive integer"),
])
def test_unreadable_requests_are_named_errors(payload, match):
    with pytest.raises(ConfigError, match=match):
        CHAT_COMPLETIONS.plan(payload, False)


def test_request_usage_asks_once_and_says_whether_it_added_it():
    payload: dict = {"model": "m", "stream": True, "stream_options": {"x": 1}}
    assert CHAT_COMPLETIONS.request_usage(payload) is True
    assert payload["stream_options"] == {"x": 1, "include_usage": True}
    assert CHAT_COMPLETIONS.request_usage(payload) is False


def test_usage_reads_cached_and_reasoning_parts_and_relay_cost():
    body = {"usage": {"prompt_tokens": 100, "completion_tokens": 40, "cost": 0.01,
                      "prompt_tokens_details": {"cached_tokens": 30},
                      "completion_tokens_details": {"reasoning_tokens": 25}}}
    assert CHAT_COMPLETIONS.usage(body) == Usage(100, 40, 30, 25, 0.01)


@pytest.mark.parametrize("usage", [
    {"prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 50}},  # OpenRouter
    {"prompt_tokens_details": {"cached_tokens": 30, "cache_creation_tokens": 50}},  # LiteLLM
    {"prompt_tokens_details": {"cached_tokens": 30}, "cache_creation_input_tokens": 50},  # LiteLLM, Anthropic models
])
def test_usage_reads_relay_reported_cache_writes_as_part_of_the_prompt(usage):
    body = {"usage": {"prompt_tokens": 100, "completion_tokens": 40, **usage}}
    assert CHAT_COMPLETIONS.usage(body) == Usage(100, 40, 30, 0, None, cache_write_tokens=50)
    # billed above the input price: the cost is higher than reading them as plain input
    price = hs.Price("3", "15", "0.3", cache_write="3.75")
    assert price.cost_nanos(CHAT_COMPLETIONS.usage(body)) > price.cost_nanos(Usage(100, 40, 30, 0))


@pytest.mark.parametrize(
    "usage, match",
    [
        ({"completion_tokens": 3}, "prompt_tokens is missing"),
        ({"prompt_tokens": -1, "completion_tokens": 3}, "non-negative"),
        ({"prompt_tokens": "7", "completion_tokens": 3}, "non-negative integer"),
        ({"prompt_tokens": 5, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 9}}, "Impossible"),
        ({"prompt_tokens": 9, "completion_tokens": 3,
          "prompt_tokens_details": {"cached_tokens": 5, "cache_write_tokens": 5}}, "Impossible"),
        ({"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cache_write_tokens": -1}},
         "non-negative"),
    ],
)
def test_bad_usage_is_a_named_error(usage, match):
    with pytest.raises(ResponseFormatError, match=match):
        CHAT_COMPLETIONS.usage({"usage": usage})
    with pytest.raises(ResponseFormatError, match="no 'usage'"):
        CHAT_COMPLETIONS.usage({"choices": []})


def test_completion_text_is_none_for_odd_bodies():
    assert CHAT_COMPLETIONS.completion_text({"choices": [{"message": {"content": "ok"}}]}) == "ok"
    for body in ({}, {"choices": []}, {"choices": [{"message": {"content": 5}}]}, None):
        assert CHAT_COMPLETIONS.completion_text(body) is None


def test_events_read_text_usage_and_hide_the_usage_chunk_only_when_asked():
    events = ChatEvents()
    ev = events.read({"choices": [{"delta": {"content": "a"}}, {"delta": {"content": "b"}}]}, True)
    assert ev.texts == ("a", "b") and ev.usage is None and ev.keep
    usage_only = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    assert events.read(usage_only, True).keep is False
    assert events.read(usage_only, False).keep is True
    assert events.read(usage_only, False).usage == Usage(3, 1)
    bad = events.read({"choices": [], "usage": {"prompt_tokens": -1}}, False)
    assert bad.usage is None and bad.usage_error and "non-negative" in bad.usage_error
    assert events.billing_free(b'data: {"choices":[],"usage":null}\n\n')
    assert not events.billing_free(b'data: {"usage":{"prompt_tokens":1}}\n\n')
    assert not events.billing_free(b"data: [DONE]\n\n")
