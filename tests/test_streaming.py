"""The SSE accumulator on its own: bytes in, bytes out, text and usage remembered."""

from __future__ import annotations

import json

from holysheep_lab.endpoints.chat import ChatEvents
from holysheep_lab.endpoints.sse import StreamAccumulator


def event(obj: object, sep: bytes = b"\n\n") -> bytes:
    return b"data: " + json.dumps(obj).encode() + sep


def content(text: str, usage: object = "absent") -> dict:
    chunk: dict = {"choices": [{"index": 0, "delta": {"content": text}}]}
    if usage != "absent":
        chunk["usage"] = usage
    return chunk


USAGE = {"prompt_tokens": 7, "completion_tokens": 3}


def test_text_usage_and_first_token_from_split_bytes():
    raw = (event({"choices": [{"delta": {"role": "assistant"}}]}) + event(content("Hel", None))
           + event(content("lo", None)) + event(content(" you", None))
           + event({"choices": [], "usage": USAGE}) + b"data: [DONE]\n\n")
    acc = StreamAccumulator(ChatEvents(), strip_usage_chunk=True)
    out = b"".join(acc.feed(raw[i:i + 5]) for i in range(0, len(raw), 5)) + acc.flush()
    assert acc.first_token_at is not None and acc.done
    assert (acc.text, acc.chunks) == ("Hello you", 3)
    assert acc.usage is not None and (acc.usage.input_tokens, acc.usage.output_tokens) == (7, 3)
    assert b'"usage": {' not in out and out.count(b"data:") == 5  # the usage-only event was dropped


def test_usage_in_every_chunk_keeps_the_text_in_order_and_the_last_usage():
    # Some relays send a running usage with every chunk: each is read, the text stays in order.
    acc = StreamAccumulator(ChatEvents())
    acc.feed(event(content("a", None)) + event(content("b", None)))
    acc.feed(event(content("c", {"prompt_tokens": 7, "completion_tokens": 3})))
    acc.feed(event(content("d", None), sep=b"\r\n\r\n"))
    acc.feed(event(content("e", {"prompt_tokens": 7, "completion_tokens": 5})))
    assert acc.text == "abcde" and acc.chunks == 5
    assert acc.usage is not None and acc.usage.output_tokens == 5


def test_cut_stream_reports_what_arrived_and_keeps_the_partial_event():
    acc = StreamAccumulator(ChatEvents())
    acc.feed(event(content("x", None)) + event(content("yz", None)) + b'data: {"choices": [{"delta": {"con')
    assert not acc.done and acc.usage is None
    assert (acc.text, acc.chunks) == ("xyz", 2)
    assert acc.flush().startswith(b"data: {")


def test_broken_usage_is_remembered_as_an_error_not_raised():
    acc = StreamAccumulator(ChatEvents())
    acc.feed(event(content("x", None)) + event({"choices": [], "usage": {"prompt_tokens": -1}}))
    assert acc.usage is None and acc.usage_error is not None and "prompt_tokens" in acc.usage_error


def test_content_events_pass_through_unchanged_and_decode_late():
    first = event(content("one ", None))
    blob = b"".join(event(content(f"w{i} ", None)) for i in range(20))  # one network read, many events
    tail = event({"choices": [], "usage": USAGE}) + b"data: [DONE]\n\n"
    acc = StreamAccumulator(ChatEvents())
    out = acc.feed(first) + acc.feed(blob) + acc.feed(tail[:9]) + acc.feed(tail[9:]) + acc.flush()
    assert out == first + blob + tail  # nothing dropped, nothing reordered
    assert acc.done and acc.usage is not None and acc.usage.output_tokens == 3
    assert acc.text == "one " + "".join(f"w{i} " for i in range(20)) and acc.chunks == 21
