"""The Responses API adapter: request facts, refusals, usage, completion text and stream events."""

from __future__ import annotations

import pytest
from _support.odd_content import ODD, non_ascii, utf8

from holysheep_lab.core.pricing import Usage
from holysheep_lab.endpoints.responses import RESPONSES, ResponsesEvents
from holysheep_lab.errors import ConfigError, ResponseFormatError


@pytest.mark.parametrize("kind", sorted(ODD))
def test_a_string_input_is_measured_whole_whatever_the_script(kind):
    text = ODD[kind]
    facts = RESPONSES.plan({"model": "gpt-5", "input": text}, False)
    assert facts.size.text_bytes >= utf8(text)
    assert facts.size.non_ascii_bytes == non_ascii(text)
    assert facts.size.safe_bound() >= utf8(text)  # byte-level BPE: never more tokens than bytes
    assert (facts.model, facts.max_tokens, facts.answers, facts.stream, facts.exact_tokens) == ("gpt-5", None, 1,
                                                                                                 False, 0)


def test_items_instructions_tools_and_the_output_schema_are_all_billed_input():
    schema = {"format": {"type": "json_schema", "name": "answer",
                         "schema": {"type": "object", "properties": {"verdict": {"type": "string"}}}}}
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "what is in this picture?"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q": "cats"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "cats are mammals"},
    ]
    bare = RESPONSES.plan({"model": "m", "input": items}, False).size
    full = RESPONSES.plan({"model": "m", "input": items, "instructions": "Answer in one word.", "tools": tools,
                           "text": schema, "max_output_tokens": 300, "stream": True}, True)
    assert bare.images == 1 and bare.messages == 3
    assert full.size.messages == 4  # the instructions count as a message
    extra = utf8("Answer in one word.") + utf8('"lookup"') + utf8('"verdict"')
    assert full.size.text_bytes >= bare.text_bytes + extra
    assert full.content is not None and "cats are mammals" in full.content and "Answer in one word." in full.content
    assert (full.max_tokens, full.stream) == (300, True)


def test_conversation_id_names_the_opening_without_its_text():
    a = RESPONSES.plan({"model": "m", "instructions": "sys", "input": "first"}, False).conversation_id
    b = RESPONSES.plan({"model": "m", "instructions": "sys", "input": "first"}, False).conversation_id
    c = RESPONSES.plan({"model": "m", "instructions": "sys", "input": "other"}, False).conversation_id
    assert a == b != c and a is not None and "first" not in a


@pytest.mark.parametrize(("extra", "match"), [
    ({"previous_response_id": "resp_1"}, "stored conversation"),
    ({"conversation": "conv_1"}, "stored conversation"),
    ({"prompt": {"id": "pmpt_1"}}, "stored prompt"),
    ({"background": True}, "background"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "item_reference"),
    ({"input": 42}, "string or a list"),
    ({"max_output_tokens": 0}, "positive integer"),
    ({"model": None}, "'model' string"),
])
def test_requests_whose_bill_cannot_be_bounded_are_refused(extra, match):
    with pytest.raises(ConfigError, match=match):
        RESPONSES.plan({"model": "m", "input": "hi", **extra}, False)


def test_stream_usage_needs_nothing_injected():
    payload = {"model": "m", "input": "hi", "stream": True}
    assert RESPONSES.request_usage(payload) is False
    assert payload == {"model": "m", "input": "hi", "stream": True}


def test_usage_reads_cached_and_reasoning_parts():
    body = {"usage": {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 100},
                      "output_tokens": 50, "output_tokens_details": {"reasoning_tokens": 30}, "total_tokens": 170}}
    assert RESPONSES.usage(body) == Usage(120, 50, 100, 30)
    assert RESPONSES.usage({"usage": {"input_tokens": 3, "output_tokens": 1, "cost": 0.5}}) == Usage(3, 1, 0, 0, 0.5)


def test_usage_reads_relay_reported_cache_writes_as_part_of_the_input():
    body = {"usage": {"input_tokens": 120, "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 40},
                      "output_tokens": 50}}
    assert RESPONSES.usage(body) == Usage(120, 50, 60, 0, cache_write_tokens=40)
    with pytest.raises(ResponseFormatError, match="Impossible"):
        RESPONSES.usage({"usage": {"input_tokens": 90, "output_tokens": 5,
                                   "input_tokens_details": {"cached_tokens": 60, "cache_write_tokens": 40}}})


@pytest.mark.parametrize(("usage", "match"), [
    ({"output_tokens": 3}, "input_tokens is missing"),
    ({"input_tokens": 3}, "output_tokens is missing"),
    ({"input_tokens": 3, "output_tokens": -1}, "non-negative"),
    ({"input_tokens": 3, "output_tokens": 1, "input_tokens_details": {"cached_tokens": 4}}, "Impossible"),
    ({"input_tokens": 3, "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 2}}, "Impossible"),
])
def test_impossible_usage_is_a_named_error(usage, match):
    with pytest.raises(ResponseFormatError, match=match):
        RESPONSES.usage({"usage": usage})
    with pytest.raises(ResponseFormatError, match="no 'usage'"):
        RESPONSES.usage({"usage": None})


def test_completion_text_joins_the_message_parts_and_skips_reasoning():
    body = {"output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
        {"type": "message", "content": [{"type": "output_text", "text": "Hello "},
                                        {"type": "output_text", "text": "😀 𠮷"}]},
    ]}
    assert RESPONSES.completion_text(body) == "Hello 😀 𠮷"
    for odd in (None, {}, {"output": "x"}, {"output": [{"type": "message", "content": [{"text": 5}]}]}):
        assert RESPONSES.completion_text(odd) is None


def completed(kind="response.completed", usage=None):
    return {"type": kind, "sequence_number": 9, "response": {"id": "resp_1", "status": "completed", "usage": usage}}


def test_events_read_text_deltas_and_the_bill_of_the_terminal_event():
    events = RESPONSES.stream_reader()
    assert isinstance(events, ResponsesEvents)
    delta = events.read({"type": "response.output_text.delta", "delta": "Hé😀"}, False)
    assert delta.texts == ("Hé😀",) and delta.usage is None and not delta.done and delta.keep
    assert events.read({"type": "response.refusal.delta", "delta": "no"}, False).texts == ("no",)
    done_text = events.read({"type": "response.output_text.done", "text": "Hé😀"}, False)
    assert done_text.texts == () and not done_text.done  # the full text again: not counted twice
    usage = {"input_tokens": 10, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 2}}
    for kind in ("response.completed", "response.incomplete"):
        end = events.read(completed(kind, usage), True)
        assert end.done and end.usage == Usage(10, 5, 0, 2) and end.keep
    failed = events.read(completed("response.failed", None), False)
    assert failed.done and failed.usage is None and failed.usage_error is None
    bad = events.read(completed(usage={"input_tokens": -4, "output_tokens": 1}), False)
    assert bad.done and bad.usage is None and "non-negative" in (bad.usage_error or "")
    created = events.read({"type": "response.created", "response": {"usage": None}}, False)
    assert not created.done and created.usage is None


def test_billing_free_lets_only_content_events_wait_undecoded():
    events = ResponsesEvents()
    delta = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"x"}\n\n'
    assert events.billing_free(delta * 3)
    assert events.billing_free(b'data: {"type":"response.in_progress","response":{"usage":null}}\n\n')
    assert not events.billing_free(delta + b'event: response.completed\ndata: {"type":"response.completed"}\n\n')
    assert not events.billing_free(b'data: {"type":"response.failed","response":{"usage":null}}\n\n')
    assert not events.billing_free(b'data: {"response":{"usage":{"input_tokens":1}}}\n\n')
