"""Which adapter a request gets, for every spelling of every path; what happens to a POST that
none meters (refused before sending, or let through by `passthrough` and logged 'unmetered')."""

from __future__ import annotations

import json

import pytest

import holysheep_lab as hs
from holysheep_lab.core.metering import Metering
from holysheep_lab.endpoints import ENDPOINTS, find_endpoint
from holysheep_lab.endpoints.anthropic import ANTHROPIC_MESSAGES
from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
from holysheep_lab.endpoints.completions import COMPLETIONS
from holysheep_lab.endpoints.embeddings import EMBEDDINGS
from holysheep_lab.endpoints.passthrough import Passthrough
from holysheep_lab.endpoints.responses import RESPONSES
from holysheep_lab.log import read_table

OPENAI_SUFFIXES = [
    ("/chat/completions", CHAT_COMPLETIONS),
    ("/responses", RESPONSES),
    ("/embeddings", EMBEDDINGS),
    ("/completions", COMPLETIONS),
]


def spellings(suffix: str) -> list[str]:
    upper = "/V1" + "/".join(part.capitalize() for part in suffix.split("/"))
    return [
        f"/v1{suffix}",
        suffix,
        f"/v1{suffix}/",
        upper,
        f"/v1{suffix};v=2",
        f"/v1{suffix}?api-version=2024-10-21",
        f"/openai/deployments/my-deployment{suffix}",
        f"/openai/v1{suffix}",
        f"/relay/prefix/v1{suffix}",
    ]


@pytest.mark.parametrize(("path", "endpoint"), [(p, e) for s, e in OPENAI_SUFFIXES for p in spellings(s)])
def test_every_spelling_of_every_openai_path_finds_its_adapter(path, endpoint):
    assert find_endpoint("POST", path) is endpoint
    assert find_endpoint("post", path) is endpoint
    assert find_endpoint("GET", path) is None  # only POSTs are billable


@pytest.mark.parametrize("path", ["/v1/messages", "/messages", "/v1/messages/", "/V1/Messages", "/v1/messages;beta=1",
                                  "/v1/messages?beta=true", "/anthropic/v1/messages"])
def test_every_spelling_of_the_anthropic_path_finds_its_adapter(path):
    assert find_endpoint("POST", path) is ANTHROPIC_MESSAGES


@pytest.mark.parametrize("path", [
    "/v1/threads/thread_1/messages",  # OpenAI Assistants: not Anthropic's format
    "/v1/messages/count_tokens",
    "/v1/messages/batches",
    "/v1/responses/resp_1/cancel",
    "/v1/images/generations",
    "/v1/audio/transcriptions",
    "/v1/audio/speech",
    "/v1/files",
    "/v1/embeddings-x",
    "/v1/chat/completions/abc",
])
def test_lookalike_paths_have_no_adapter(path):
    assert find_endpoint("POST", path) is None


def test_chat_paths_never_reach_the_legacy_completions_adapter():
    assert not COMPLETIONS.match("/v1/chat/completions") and COMPLETIONS.match("/v1/completions")
    assert [e.name for e in ENDPOINTS] == ["chat.completions", "responses", "embeddings", "completions",
                                           "anthropic.messages"]


# -- refusal and passthrough, through Metering.plan ----------------------------------------------


def test_a_post_without_an_adapter_is_refused_naming_the_path_and_the_fix(log_dir):
    m = Metering(log_dir=log_dir)
    body = json.dumps({"model": "dall-e-3", "prompt": "a cat"}).encode()
    with pytest.raises(hs.UnmeteredEndpointError) as info:
        m.plan("POST", "/v1/images/generations", body, {})
    err = info.value
    assert isinstance(err, hs.ConfigError) and err.path == "/v1/images/generations"
    assert "nothing was sent" in str(err) and "passthrough=['/v1/images/generations']" in str(err)
    assert "responses" in str(err) and "anthropic.messages" in str(err)
    with pytest.raises(hs.UnmeteredEndpointError, match=r"passthrough=\['/audio/transcriptions'\]"):
        m.plan("POST", "/openai/deployments/whisper/audio/transcriptions", b"--boundary\r\n", {})
    assert m.plan("GET", "/v1/models", b"", {}) is None  # GETs pass, unlogged
    assert m.plan("DELETE", "/v1/files/file-1", b"", {}) is None
    m.close()
    assert read_table(log_dir).num_rows == 0


def test_a_key_in_the_path_is_not_echoed(log_dir):
    m = Metering(log_dir=log_dir)
    with pytest.raises(hs.UnmeteredEndpointError) as info:
        m.plan("POST", "/key/sk-abcdefghijklmnop/v1/images/generations", b"{}", {})
    assert "sk-abcdefghijklmnop" not in str(info.value) + info.value.path
    m.close()


def test_passthrough_lets_named_paths_through_and_logs_each_as_unmetered(log_dir):
    m = Metering(log_dir=log_dir, passthrough=["/images/generations"], project="p")
    body = json.dumps({"model": "dall-e-3", "prompt": "a cat"}).encode()
    assert m.plan("POST", "/v1/images/generations", body, {}) is None
    assert m.plan("POST", "/openai/deployments/img/images/generations/", b"not json", {}) is None
    with pytest.raises(hs.UnmeteredEndpointError):
        m.plan("POST", "/v1/images/edits", body, {})  # only what was named
    m.close()
    rows = read_table(log_dir).to_pylist()
    assert [(r["status"], r["endpoint"], r["model"]) for r in rows] == [
        ("unmetered", "/v1/images/generations", "dall-e-3"), ("unmetered", "/images/generations", "unknown")]
    for r in rows:
        assert r["cost_usd"] is None and r["cost_nanos"] is None and r["estimated_cost_usd"] is None
        assert r["project"] == "p" and r["attempts"] == 1
    assert rows[0]["input_bytes"] == len(body)


@pytest.mark.parametrize(("value", "match"), [
    ("/v1/images/generations", "list of paths"),
    (["images/generations"], "look like"),
    (["/"], "look like"),
    ([5], "look like"),
    (["/v1/chat/completions"], "metered"),
    (["/V1/Embeddings/"], "metered"),
    (["/anthropic/v1/messages"], "metered"),
])
def test_passthrough_settings_are_checked(value, match):
    with pytest.raises(hs.ConfigError, match=match):
        Passthrough(value)


def test_passthrough_matches_whole_segments_only():
    p = Passthrough(["/images/generations", "/v1/Audio/Speech"])
    assert p.paths == ("/images/generations", "/v1/audio/speech")
    assert p.allows("/v1/images/generations") and p.allows("/images/generations")
    assert not p.allows("/v1/myimages/generations") and not p.allows("/v1/images/generations2")
    assert p.allows("/v1/audio/speech") and not p.allows("/audio/speech")


def test_a_growing_conversation_keeps_its_id_from_its_first_call():
    from holysheep_lab.endpoints.anthropic import ANTHROPIC_MESSAGES
    from holysheep_lab.endpoints.chat import CHAT_COMPLETIONS
    from holysheep_lab.endpoints.responses import RESPONSES

    def turns(n: int, system: bool) -> list[dict[str, str]]:
        out = [{"role": "system", "content": "Be terse."}] if system else []
        for i in range(n):
            out += [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]
        return out[:-1]  # ends on the user's turn

    for system in (False, True):
        chat = [CHAT_COMPLETIONS.plan({"model": "m", "messages": turns(n, system)}, False).conversation_id
                for n in (1, 2, 5)]
        responses = [RESPONSES.plan({"model": "m", "input": turns(n, system)}, False).conversation_id
                     for n in (1, 2, 5)]
        assert chat[0] is not None and len(set(chat)) == 1 and len(set(responses)) == 1
    anthropic = [ANTHROPIC_MESSAGES.plan({"model": "m", "max_tokens": 5, "messages": turns(n, False)},
                                         False).conversation_id for n in (1, 2, 5)]
    assert anthropic[0] is not None and len(set(anthropic)) == 1
    other = CHAT_COMPLETIONS.plan({"model": "m", "messages": [{"role": "user", "content": "q-other"}]}, False)
    assert other.conversation_id != chat[0]
