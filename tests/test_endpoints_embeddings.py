"""The Embeddings adapter: strings, batches and token arrays (counted exactly), no output."""

from __future__ import annotations

import pytest
from _support.odd_content import ODD, non_ascii, utf8

from holysheep_lab.core.metering import Metering
from holysheep_lab.core.pricing import Price, Usage
from holysheep_lab.endpoints.embeddings import EMBEDDINGS
from holysheep_lab.errors import ConfigError, ResponseFormatError


@pytest.mark.parametrize("kind", sorted(ODD))
def test_a_string_is_measured_whole_whatever_the_script(kind):
    facts = EMBEDDINGS.plan({"model": "text-embedding-3-small", "input": ODD[kind]}, False)
    assert facts.size.text_bytes == utf8(ODD[kind]) and facts.size.non_ascii_bytes == non_ascii(ODD[kind])
    assert facts.size.safe_bound() >= utf8(ODD[kind])
    assert (facts.answers, facts.max_tokens, facts.stream, facts.exact_tokens) == (0, None, False, 0)


def test_a_batch_is_measured_item_by_item():
    batch = [ODD["digits"], ODD["emoji"], "plain"]
    facts = EMBEDDINGS.plan({"model": "m", "input": batch}, True)
    assert facts.size.messages == 3
    assert facts.size.text_bytes == sum(utf8(t) for t in batch)
    assert facts.content is not None and "plain" in facts.content


@pytest.mark.parametrize(("value", "tokens", "texts"), [
    ([1, 2, 3, 4], 4, 0),                       # one token array
    ([[1, 2, 3], [4, 5], [6]], 6, 0),           # a batch of token arrays
    ([[0] * 8191] * 3, 3 * 8191, 0),            # ids are counted, not their digits
    (["two words", [7, 8, 9]], 3, 1),           # a mixed batch: the text is measured too
    ([[1, "x", 2]], 2, 1),                      # odd elements are measured, never dropped
])
def test_token_arrays_are_counted_exactly(value, tokens, texts):
    facts = EMBEDDINGS.plan({"model": "m", "input": value}, False)
    assert facts.exact_tokens == tokens
    assert facts.size.messages == texts


def test_the_bound_adds_token_ids_unscaled_and_has_no_output(log_dir):
    m = Metering(log_dir=log_dir, prices={"emb": Price("0.02", "0")})
    arrays = m.preview(EMBEDDINGS, {"model": "emb", "input": [[1] * 500, [2] * 300]})
    assert arrays.output_bound == 0
    assert arrays.input_bound == 800 + m.estimator.bound("emb", arrays.size)
    text = m.preview(EMBEDDINGS, {"model": "emb", "input": "𠮷" * 100})
    assert text.output_bound == 0 and text.input_bound >= 400
    assert text.estimate_nanos == text.input_bound * 20  # $0.02 per 1M tokens = 20 nanos a token
    m.close()


@pytest.mark.parametrize(("payload", "match"), [
    ({"input": "x"}, "'model' string"),
    ({"model": "m"}, "needs 'input'"),
    ({"model": "m", "input": 5}, "string, a list"),
    ({"model": "m", "input": {"text": "x"}}, "string, a list"),
])
def test_unreadable_requests_are_named_errors(payload, match):
    with pytest.raises(ConfigError, match=match):
        EMBEDDINGS.plan(payload, False)


def test_usage_bills_the_input_and_never_output():
    assert EMBEDDINGS.usage({"usage": {"prompt_tokens": 8, "total_tokens": 8}}) == Usage(8, 0)
    assert EMBEDDINGS.usage({"usage": {"total_tokens": 9}}) == Usage(9, 0)  # a relay that sends only the total
    assert EMBEDDINGS.usage({"usage": {"prompt_tokens": 8, "total_tokens": 11}}).input_tokens == 11  # the larger
    assert EMBEDDINGS.usage({"usage": {"prompt_tokens": 8, "cost": 0.25}}).relay_cost_usd == 0.25
    with pytest.raises(ResponseFormatError, match="prompt_tokens is missing"):
        EMBEDDINGS.usage({"usage": {}})
    with pytest.raises(ResponseFormatError, match="non-negative"):
        EMBEDDINGS.usage({"usage": {"prompt_tokens": -8}})
    with pytest.raises(ResponseFormatError, match="no 'usage'"):
        EMBEDDINGS.usage({"data": []})


def test_no_text_no_stream_no_injection():
    payload = {"model": "m", "input": "x"}
    assert EMBEDDINGS.request_usage(payload) is False and payload == {"model": "m", "input": "x"}
    assert EMBEDDINGS.completion_text({"data": [{"embedding": [0.1]}]}) is None
    reader = EMBEDDINGS.stream_reader()
    assert reader.read({"usage": {"prompt_tokens": 1}}, False).usage is None
    assert not reader.billing_free(b"data: {}\n\n")
