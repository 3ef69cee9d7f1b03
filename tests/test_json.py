"""holysheep_lab.core.fastjson.loads agrees with json.loads, results and errors alike."""

from __future__ import annotations

import json

import pytest

from holysheep_lab.core import fastjson as _json


@pytest.mark.parametrize("data", [
    b'{"a": 1, "b": [true, null, 2.5]}',
    '{"x": "é"}'.encode(),
    '\ufeff{"bom": 1}'.encode(),  # json.loads accepts a UTF-8 BOM on bytes
    '{"utf16": 1}'.encode("utf-16"),
    b'{"s": "\xed\xa0\x80"}',  # an encoded lone surrogate: json.loads keeps it
    '{"already": "text"}',
])
def test_same_result_as_the_stdlib(data):
    assert _json.loads(data) == json.loads(data)


@pytest.mark.parametrize("data", [b"<html>502</html>", b"", b'{"a":', "\ufeff{}"])
def test_same_error_as_the_stdlib(data):
    with pytest.raises(json.JSONDecodeError) as ours:
        _json.loads(data)
    with pytest.raises(json.JSONDecodeError) as theirs:
        json.loads(data)
    assert str(ours.value) == str(theirs.value)
