"""The Anthropic Messages adapter: required max_tokens, cache reads and writes outside
`input_tokens`, and usage spread over `message_start` and `message_delta`."""

from __future__ import annotations

import pytest
from _support.odd_content import ODD, non_ascii, utf8

from holysheep_lab.core.pricing import Price, Usage
from holysheep_lab.endpoints.anthropic import ANTHROPIC_MESSAGES, MessagesEvents
from holysheep_lab.errors import ConfigError, ResponseFormatError


def request(**extra):
    return {"model": "claude-sonnet-4.5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize("kind", sorted(ODD))
def test_messages_are_measured_whole_whatever_the_script(kind):
    facts = ANTHROPIC_MESSAGES.plan(request(messages=[{"role": "user", "content": ODD[kind]}]), False)
    assert facts.size.text_bytes >= utf8(ODD[kind]) and facts.size.non_ascii_bytes == non_ascii(ODD[kind])
    assert facts.size.safe_bound() >= utf8(ODD[kind])


def test_system_blocks_tools_and_images_are_billed_input():
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    tools = [{"name": "get_weather", "description": "Weather by city", "input_schema": {"type": "object"}}]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    plain = ANTHROPIC_MESSAGES.plan(request(), False)
    full = ANTHROPIC_MESSAGES.plan(request(system=system, tools=tools, stream=True,
                                           messages=[{"role": "user", "content": [image, {"type": "text",
                                                                                          "text": "what?"}]}]), True)
    assert full.size.messages == 2 and full.size.images == 1
    assert full.size.text_bytes >= utf8("You are terse.") + utf8("get_weather") + utf8("Weather by city")
    assert plain.size.messages == 1 and full.stream and not plain.stream
    assert full.content is not None and "You are terse." in full.content
    assert full.conversation_id != plain.conversation_id


def test_max_tokens_is_required_and_is_the_output_bound():
    assert ANTHROPIC_MESSAGES.plan(request(max_tokens=1024), False).max_tokens == 1024
    with pytest.raises(ConfigError, match="requires max_tokens"):
        ANTHROPIC_MESSAGES.plan({"model": "m", "messages": []}, False)
    with pytest.raises(ConfigError, match="positive integer"):
        ANTHROPIC_MESSAGES.plan(request(max_tokens=0), False)
    with pytest.raises(ConfigError, match="must be a list"):
        ANTHROPIC_MESSAGES.plan(request(messages="hi"), False)


def test_usage_adds_cache_reads_and_writes_into_the_input():
    body = {"usage": {"input_tokens": 10, "cache_read_input_tokens": 300, "cache_creation_input_tokens": 50,
                      "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 25}}}
    usage = ANTHROPIC_MESSAGES.usage(body)
    assert usage == Usage(input_tokens=360, output_tokens=40, cached_input_tokens=300, reasoning_tokens=25,
                          cache_write_tokens=50)
    # A price without a cache-write rate bills writes as input: 60 (10 + 50 writes) at input,
    # 300 reads at the cached rate.
    price = Price("3", "15", "0.30")
    assert price.cost_nanos(usage) == 60 * 3000 + 300 * 300 + 40 * 15000
    # Anthropic's rates: 5-minute writes at 1.25x the input, 1-hour writes at 2x.
    dear = Price("3", "15", "0.30", cache_write="3.75", cache_write_1h="6")
    assert dear.cost_nanos(usage) == 10 * 3000 + 300 * 300 + 50 * 3750 + 40 * 15000
    assert ANTHROPIC_MESSAGES.usage({"usage": {"input_tokens": 5, "output_tokens": 1}}) == Usage(5, 1)


def test_cache_writes_by_ttl():
    by_ttl = {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 20}
    body = {"usage": {"input_tokens": 10, "cache_creation_input_tokens": 50, "cache_creation": by_ttl,
                      "output_tokens": 4, "cost": 0.01}}
    usage = ANTHROPIC_MESSAGES.usage(body)
    assert usage == Usage(60, 4, 0, 0, 0.01, cache_write_tokens=50, cache_write_1h_tokens=20)
    price = Price("3", "15", cache_write="3.75", cache_write_1h="6")
    assert price.cost_nanos(usage) == 10 * 3000 + 30 * 3750 + 20 * 6000 + 4 * 15000
    # Only the split given: the writes are its sum.
    split_only = ANTHROPIC_MESSAGES.usage({"usage": {"input_tokens": 10, "cache_creation": by_ttl, "output_tokens": 4}})
    assert (split_only.input_tokens, split_only.cache_write_tokens, split_only.cache_write_1h_tokens) == (60, 50, 20)
    with pytest.raises(ResponseFormatError, match="1-hour cache writes 20 > cache writes 5"):
        ANTHROPIC_MESSAGES.usage({"usage": {"input_tokens": 1, "cache_creation_input_tokens": 5,
                                            "cache_creation": by_ttl, "output_tokens": 1}})


@pytest.mark.parametrize(("usage", "match"), [
    ({"output_tokens": 1}, "input_tokens is missing"),
    ({"input_tokens": 1}, "output_tokens is missing"),
    ({"input_tokens": 1, "output_tokens": 1, "cache_read_input_tokens": -2}, "non-negative"),
    ({"input_tokens": 1, "output_tokens": 1, "output_tokens_details": {"thinking_tokens": 5}}, "Impossible"),
])
def test_impossible_usage_is_a_named_error(usage, match):
    with pytest.raises(ResponseFormatError, match=match):
        ANTHROPIC_MESSAGES.usage({"usage": usage})


def test_completion_text_joins_text_blocks_only():
    body = {"content": [{"type": "thinking", "thinking": "hmm"}, {"type": "text", "text": "Hé "},
                        {"type": "tool_use", "id": "t", "name": "x", "input": {}}, {"type": "text", "text": "😀"}]}
    assert ANTHROPIC_MESSAGES.completion_text(body) == "Hé 😀"
    for odd in (None, {}, {"content": "x"}, {"content": [{"type": "text", "text": 1}]}):
        assert ANTHROPIC_MESSAGES.completion_text(odd) is None


START = {"type": "message_start", "message": {"id": "msg_1", "usage": {
    "input_tokens": 20, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5, "output_tokens": 1}}}


def test_the_bill_is_read_at_message_delta_with_the_start_input_counts():
    events = ANTHROPIC_MESSAGES.stream_reader()
    assert isinstance(events, MessagesEvents) and events is not ANTHROPIC_MESSAGES.stream_reader()  # one per stream
    start = events.read(START, False)
    assert start.usage is None and not start.done  # the start's output count is not the bill
    text = events.read({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "𠮷"}},
                       False)
    assert text.texts == ("𠮷",)
    tool = events.read({"type": "content_block_delta", "delta": {"type": "input_json_delta", "partial_json": "{"}},
                       False)
    assert tool.texts == ()
    delta = events.read({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}},
                        False)
    assert delta.usage == Usage(125, 42, 100, 0, cache_write_tokens=5) and not delta.done
    assert events.read({"type": "message_stop"}, False).done


def test_cumulative_input_counts_in_message_delta_replace_the_start_ones():
    events = MessagesEvents()
    events.read(START, False)
    final = {"type": "message_delta", "usage": {"output_tokens": 9, "input_tokens": 30, "cache_read_input_tokens": None,
                                                "cache_creation_input_tokens": 0}}
    assert events.read(final, False).usage == Usage(30 + 100 + 0, 9, 100, 0)


def test_a_delta_without_the_start_usage_is_an_error_not_a_cheap_bill():
    events = MessagesEvents()
    ev = events.read({"type": "message_delta", "usage": {"output_tokens": 9}}, False)
    assert ev.usage is None and "input_tokens is missing" in (ev.usage_error or "")


def test_billing_free_keeps_usage_and_the_end_marker_decoded():
    events = MessagesEvents()
    delta = b'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"x"}}\n\n'
    assert events.billing_free(delta * 4)
    assert events.billing_free(b'event: ping\ndata: {"type": "ping"}\n\n')
    assert not events.billing_free(b'event: message_delta\ndata: {"usage":{"output_tokens":3}}\n\n')
    assert not events.billing_free(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')


def test_nothing_is_injected_into_a_stream_request():
    payload = request(stream=True)
    assert ANTHROPIC_MESSAGES.request_usage(payload) is False and payload == request(stream=True)
