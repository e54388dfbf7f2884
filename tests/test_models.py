"""The completion request (docs/contract.md): every rule; nothing but invalid_request escapes."""

from __future__ import annotations

import base64
import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from completer.backends.base import ActivityIds
from completer.backends.temporal import TemporalBackend
from completer.errors import InvalidRequest
from completer.models import Action, CompletionRequest, parse_request
from completer.settings import Settings
from completer.tokens import MAX_TOKEN_BYTES, decode_token, encode_token, token_fingerprint

TOKEN = base64.b64encode(b"\x0a\x24binary-token\xff\xfe").decode()


def req(**fields: Any) -> CompletionRequest:
    return parse_request(json.dumps(fields).encode())


def refused(raw: Any) -> str:
    with pytest.raises(InvalidRequest) as info:
        parse_request(raw if isinstance(raw, bytes | str) else json.dumps(raw).encode())
    return info.value.message


class TestTarget:
    def test_token_form(self):
        r = req(task_token=TOKEN, result=1)
        assert r.by_token
        assert r.task_token == TOKEN
        assert r.action is Action.COMPLETE

    def test_id_form_with_and_without_run_id(self):
        r = req(workflow_id="w", activity_id="a")
        assert (r.workflow_id, r.activity_id, r.run_id) == ("w", "a", None)
        assert req(workflow_id="w", activity_id="a", run_id="r").run_id == "r"

    def test_camel_case_aliases(self):
        r = req(workflowId="w", activityId="a", runId="r")
        assert (r.workflow_id, r.activity_id, r.run_id) == ("w", "a", "r")
        assert req(taskToken=TOKEN).task_token == TOKEN
        r = req(taskToken=TOKEN, error={"message": "m", "nonRetryable": True})
        assert r.error is not None
        assert r.error.non_retryable is True

    @pytest.mark.parametrize(
        "fields",
        [
            {},
            {"result": 1},
            {"task_token": TOKEN, "workflow_id": "w", "activity_id": "a"},
            {"task_token": TOKEN, "run_id": "r"},
            {"workflow_id": "w"},
            {"activity_id": "a"},
            {"workflow_id": "", "activity_id": "a"},
            {"task_token": ""},
            {"task_token": "   "},
            {"task_token": 123},
            {"task_token": None},
        ],
    )
    def test_exactly_one_form(self, fields):
        refused(fields)


class TestAction:
    def test_inferred_complete_and_fail(self):
        assert req(task_token=TOKEN).action is Action.COMPLETE
        r = req(task_token=TOKEN, result="ignored", error={"message": "no"})
        assert r.action is Action.FAIL
        assert req(task_token=TOKEN, error=None, result=2).action is Action.COMPLETE

    @pytest.mark.parametrize(
        "fields",
        [
            {"action": "complete", "error": {"message": "x"}},
            {"action": "fail"},
            {"action": "fail", "error": None},
            {"action": "heartbeat", "result": 1},
            {"action": "heartbeat", "error": {"message": "x"}},
            {"action": "cancel", "result": 1},
            {"action": "complete", "details": 1},
            {"action": "finish"},
            {"action": 1},
        ],
    )
    def test_contradictions_are_refused(self, fields):
        refused({"task_token": TOKEN, **fields})

    def test_heartbeat_and_cancel_take_details(self):
        r = req(task_token=TOKEN, action="heartbeat", details={"p": 1})
        assert r.payload() == {"p": 1}
        assert req(task_token=TOKEN, action="cancel").payload() is None

    @pytest.mark.parametrize(
        "error",
        [
            {},
            {"message": ""},
            {"message": "  "},
            {"message": 1},
            {"message": "m", "mesage": "x"},
            {"message": "m", "non_retryable": "yes"},
            {"message": "m", "type": ""},
            "boom",
        ],
    )
    def test_bad_error_objects(self, error):
        refused({"task_token": TOKEN, "error": error})


class TestStrictness:
    @pytest.mark.parametrize("field", ["reslt", "taskTokens", "status", "Result"])
    def test_unknown_fields(self, field):
        message = refused({"task_token": TOKEN, field: 1})
        assert f"unknown field '{field}'" in message

    @pytest.mark.parametrize(
        "raw",
        [
            b"",
            b"   ",
            b"{",
            b"[1]",
            b'"x"',
            b"null",
            b"\xff\xfe{}",
            b'{"result": NaN, "task_token": "x"}',
            b'{"result": 1e400, "task_token": "x"}',
            b'{"result": [-1e999], "task_token": "x"}',
            b"{" * 10_000,
            b"[" * 100 + b"]" * 100,
        ],
    )
    def test_malformed_bodies(self, raw):
        refused(raw)

    def test_deep_nesting_inside_result(self):
        deep = '{{"task_token": "{}", "result": {}}}'.format(TOKEN, "[" * 65 + "]" * 65)
        assert "nested deeper" in refused(deep)
        ok = '{{"task_token": "{}", "result": {}}}'.format(TOKEN, "[" * 60 + "]" * 60)
        parse_request(ok)

    def test_messages_never_echo_the_token(self):
        secret = "c2VjcmV0LXRva2Vu"
        for fields in (
            {"task_token": secret, "workflow_id": "w", "activity_id": "a"},
            {"task_token": secret, "reslt": 1},
            {"task_token": [secret]},
        ):
            assert secret not in refused(fields)


class TestTokens:
    backend = TemporalBackend(Settings(COMPLETER_BACKEND="temporal"))

    def resolve(self, token: str) -> Any:
        return self.backend.resolve_target(req(task_token=token))

    def test_alphabets_and_padding(self):
        raw = bytes(range(256))
        for text in (
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode(),
            encode_token(raw),
            encode_token(raw, urlsafe=False).rstrip("="),
        ):
            assert self.resolve(text) == raw

    @pytest.mark.parametrize("token", ["not base64!", "abcde", "a", "====", "ab$d"])
    def test_undecodable(self, token):
        with pytest.raises(InvalidRequest):
            self.resolve(token)

    def test_size_bound(self):
        assert self.resolve(encode_token(b"x" * MAX_TOKEN_BYTES)) == b"x" * MAX_TOKEN_BYTES
        with pytest.raises(InvalidRequest, match="over 8192 bytes"):
            self.resolve(encode_token(b"x" * (MAX_TOKEN_BYTES + 1)))
        with pytest.raises(InvalidRequest):
            self.resolve("A" * 1_000_000)

    def test_ids_resolve(self):
        target = self.backend.resolve_target(req(workflow_id="w", activity_id="a", run_id="r"))
        assert target == ActivityIds("w", "a", "r")

    def test_fingerprint_is_short_and_stable(self):
        assert token_fingerprint(TOKEN) == token_fingerprint(TOKEN)
        assert len(token_fingerprint(TOKEN)) == 12
        assert TOKEN not in token_fingerprint(TOKEN)
        assert decode_token(encode_token(b"abc")) == b"abc"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)
fields = st.sampled_from(
    [
        "task_token",
        "taskToken",
        "workflow_id",
        "activity_id",
        "run_id",
        "action",
        "result",
        "error",
        "details",
        "message",
        "reslt",
        "nonRetryable",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_parse_or_invalid_request(raw: bytes):
    with contextlib.suppress(InvalidRequest):
        parse_request(raw)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(fields, json_values | st.dictionaries(fields, json_values), max_size=6))
def test_any_object_parses_or_invalid_request(obj: dict[str, Any]):
    backend = TestTokens.backend
    for raw in (obj, json.dumps(obj)):
        try:
            request = parse_request(raw)
            backend.resolve_target(request)
        except InvalidRequest:
            pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_invalid_request(text: str):
    with contextlib.suppress(InvalidRequest):
        parse_request(text)


class TestInputLimits:
    """Input rules of docs/security.md: bounded IDs, finite doubles, no duplicate keys or
    lone surrogates, and messages that never quote unbounded input."""

    @pytest.mark.parametrize("field", ["workflow_id", "activity_id", "run_id"])
    def test_ids_at_most_1000_characters(self, field):
        ids = {"workflow_id": "w", "activity_id": "a", "run_id": "r"}
        assert req(**{**ids, field: "é" * 1000}) is not None
        message = refused({**ids, field: "x" * 1001})
        assert "at most 1000 characters" in message
        assert "x" * 50 not in message

    def test_ids_limit_holds_for_mappings_too(self):
        with pytest.raises(InvalidRequest):
            CompletionRequest.build({"workflow_id": "w" * 1001, "activity_id": "a"})

    @pytest.mark.parametrize(
        "number",
        ["9" * 400, "-" + "9" * 400, "1" + "0" * 309, "1e400", "-1e400", "1" + "0" * 5000],
    )
    def test_numbers_must_fit_a_finite_double(self, number):
        message = refused(f'{{"workflow_id":"w","activity_id":"a","result":{number}}}')
        assert "finite double" in message or "limit" in message
        assert len(message) < 200

    @pytest.mark.parametrize(
        "number", [str(2**53 + 1), str(2**64), "9" * 308, "1" + "0" * 308, "1e-400", "-0"]
    )
    def test_big_integers_that_fit_a_double_are_kept_exact(self, number):
        r = req_raw(f'{{"workflow_id":"w","activity_id":"a","result":{number}}}')
        assert r.result == json.loads(number)

    def test_long_digit_runs_inside_strings_are_fine(self):
        r = req_raw('{"workflow_id":"w","activity_id":"a","result":["' + "7" * 400 + '", 1]}')
        assert r.result == ["7" * 400, 1]

    @pytest.mark.parametrize(
        "raw",
        [
            '{"workflow_id":"w","workflow_id":"x","activity_id":"a"}',
            '{"workflow_id":"w","activity_id":"a","result":{"k":1,"k":1}}',
            '{"workflow_id":"w","activity_id":"a","result":[[{"deep":{"a":1,"b":2,"a":3}}]]}',
            '{"workflowId":"w","workflowId":"x","activityId":"a"}',
        ],
    )
    def test_duplicate_keys_anywhere_are_refused(self, raw):
        assert "twice in one object" in refused(raw.encode())

    def test_duplicate_key_message_is_bounded(self):
        key = "k" * 100_000
        message = refused(f'{{"{key}":1,"{key}":2}}'.encode())
        assert len(message) < 200

    @pytest.mark.parametrize(
        "raw",
        [
            '{"workflow_id":"w","activity_id":"a","result":"\\ud800"}',
            '{"workflow_id":"w","activity_id":"a","result":"\\uDFFF tail"}',
            '{"workflow_id":"w","activity_id":"a","result":{"\\ud83d":1}}',
            '{"workflow_id":"w","activity_id":"a","result":["\\ude00\\ud83d"]}',
            '{"workflow_id":"w\\ud800","activity_id":"a"}',
            '{"workflow_id":"w","activity_id":"a","error":{"message":"\\udbff"}}',
        ],
    )
    def test_lone_surrogate_escapes_are_refused(self, raw):
        assert "surrogate" in refused(raw.encode())

    def test_raw_lone_surrogate_in_text_is_refused(self):
        assert "surrogate" in refused('{"workflow_id":"w","activity_id":"a","result":"\ud800"}')

    def test_encoded_surrogate_bytes_are_not_utf8(self):
        raw = b'{"workflow_id":"w","activity_id":"a","result":"\xed\xa0\x80"}'
        assert "not UTF-8" in refused(raw)

    @pytest.mark.parametrize(
        "text", ["\\ud83d\\ude00", "\\\\ud800", "\\\\\\\\ud800", "\\u00e9", "\\uD83D\\uDE00"]
    )
    def test_pairs_and_escaped_backslashes_are_fine(self, text):
        r = req_raw(f'{{"workflow_id":"w","activity_id":"a","result":"{text}"}}')
        assert r.result == json.loads(f'"{text}"')

    def test_unknown_fields_are_named_briefly_and_few(self):
        fields = {f"{i}" + "f" * 10_000: 1 for i in range(50)}
        message = refused({"workflow_id": "w", "activity_id": "a", **fields})
        assert len(message) < 500
        assert "and 45 more" in message

    def test_two_mib_body_parses_about_as_fast_as_before_the_input_rules(self):
        import time

        from completer.models import _depth_ok, parse_json

        items = [{"id": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(45_000)]
        raw = json.dumps({"workflow_id": "w", "activity_id": "a", "result": items}).encode()
        assert len(raw) > 2 * 1024 * 1024

        def best(parse: Any) -> float:
            times = []
            for _ in range(5):
                started = time.perf_counter()
                parse(raw)
                times.append(time.perf_counter() - started)
            return min(times)

        def before(data: bytes) -> None:  # the depth check and plain json.loads
            text = data.decode()
            _depth_ok(text)
            json.loads(text)

        # The rules run in C (translate, substring search, one hook per object): measured
        # 1.1x the parse before them; a per-character Python pass would be 10x and more.
        assert best(parse_json) < 2 * best(before) + 0.05


def req_raw(raw: str | bytes) -> CompletionRequest:
    return parse_request(raw if isinstance(raw, bytes) else raw.encode())


def _reference_refuses(text: str) -> bool:
    """The input rules written the slow, obvious way: a full walk of the parsed value."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate")
        return dict(items)

    def refuse(_: str) -> Any:
        raise ValueError("constant")

    try:
        value = json.loads(text, object_pairs_hook=pairs, parse_constant=refuse)
    except (ValueError, RecursionError):
        return True
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in item):
                return True
        elif isinstance(item, float) and not math.isfinite(item):
            return True
        elif isinstance(item, int) and not isinstance(item, bool):
            try:
                float(item)
            except OverflowError:
                return True
    return False


json_atoms = st.sampled_from(
    [
        '"\\ud800"',
        '"\\udc00x"',
        '"\\ud83d\\ude00"',
        '"\\\\ud800"',
        '"\\\\\\ud800"',
        '"a\\uD801"',
        "9" * 308,
        "9" * 309,
        "-" + "9" * 400,
        "1e308",
        "1e309",
        "-0.0",
        "12345678901234567890",
        '"' + "7" * 400 + '"',
        "true",
        "null",
    ]
)


@st.composite
def json_texts(draw: st.DrawFn) -> str:
    def value(depth: int) -> str:
        kind = draw(st.integers(0, 2 if depth < 3 else 0))
        if kind == 0:
            return draw(json_atoms)
        if kind == 1:
            return "[" + ",".join(value(depth + 1) for _ in range(draw(st.integers(0, 3)))) + "]"
        keys = draw(st.lists(st.sampled_from(['"a"', '"b"', '"\\ud800"', '"\\u0061"']), max_size=3))
        return "{" + ",".join(f"{k}:{value(depth + 1)}" for k in keys) + "}"

    return value(0)


@settings(max_examples=300, deadline=None)
@given(json_texts())
def test_fast_input_checks_agree_with_a_full_walk(text: str):
    from completer.models import parse_json

    try:
        parse_json(text)
        refused = False
    except InvalidRequest:
        refused = True
    assert refused == _reference_refuses(text), text
