"""Signed requests (docs/security.md): verification, replay memory and scopes of signing secrets."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook

from completer.errors import CompleterError, ConfigurationError, Conflict, Forbidden, Unauthorized
from completer.models import CompletionRequest, parse_request
from completer.settings import Settings
from completer.signatures import (
    MemoryReplayStore,
    RememberedAnswer,
    Scope,
    SignatureVerifier,
    SignedRequest,
    SigningKey,
    answer_once,
    check_scope,
    parse_scopes,
)

NOW = 1_800_000_000
BODY = b'{"workflow_id":"acme-42","activity_id":"approve","result":{"ok":true}}'


def new_secret(size: int = 24) -> str:
    return "whsec_" + base64.b64encode(os.urandom(size)).decode()


def key_of(secret: str, *, name: str | None = None, scope: Scope | None = None) -> SigningKey:
    raw = base64.b64decode(secret.removeprefix("whsec_"))
    return SigningKey(name=name, key=raw, scope=scope or Scope())


def sign(secret: str, body: bytes = BODY, *, msg_id: str = "msg_1", at: int = NOW) -> str:
    """The signature the reference library (standardwebhooks) computes."""
    stamp = datetime.fromtimestamp(at, tz=UTC)
    return str(Webhook(secret).sign(msg_id, stamp, body.decode()))


def headers(signature: str, *, msg_id: str = "msg_1", at: int = NOW) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(at), "webhook-signature": signature}


@pytest.fixture
def secrets() -> tuple[str, str]:
    return new_secret(), new_secret(32)


@pytest.fixture
def verifier(secrets: tuple[str, str]) -> SignatureVerifier:
    return SignatureVerifier([key_of(s) for s in secrets], tolerance_seconds=300)


class TestVerify:
    def test_reference_signature_passes_and_says_which_secret(self, verifier, secrets):
        signed = verifier.verify(BODY, headers(sign(secrets[1])), now=NOW)
        assert signed.webhook_id == "msg_1"
        assert signed.timestamp == NOW
        assert signed.key is verifier.keys[1]
        assert signed.key.label == "#1" or signed.key.number == 1  # position kept by settings

    def test_any_matching_entry_passes(self, verifier, secrets):
        other = sign(new_secret())
        assert verifier.verify(BODY, headers(f"{other} {sign(secrets[0])}"), now=NOW)

    @pytest.mark.parametrize(
        "malformed",
        [
            "v1",
            "v1,",
            "v1,not-base64!!",
            "v1,a,b",
            "garbage",
            ",,,",
            "v2,AAAA",
            "v1a,QUJD",
            "v1," + base64.b64encode(b"short").decode(),
            "v1,QUJD=",  # non-canonical padding
        ],
    )
    def test_malformed_entry_does_not_hide_a_valid_one(self, verifier, secrets, malformed):
        header = f"{malformed} {sign(secrets[0])}"
        assert verifier.verify(BODY, headers(header), now=NOW).webhook_id == "msg_1"
        with pytest.raises(Unauthorized):
            verifier.verify(BODY, headers(malformed), now=NOW)

    def test_raw_body_not_text_is_verified_as_bytes(self, secrets):
        import hashlib
        import hmac

        body = b"\xff\xfe not utf-8"
        key = base64.b64decode(secrets[0].removeprefix("whsec_"))
        mac = hmac.new(key, b"msg_1.%d." % NOW + body, hashlib.sha256).digest()
        verifier = SignatureVerifier([key_of(secrets[0])], tolerance_seconds=300)
        signature = "v1," + base64.b64encode(mac).decode()
        assert verifier.verify(body, headers(signature), now=NOW)

    @pytest.mark.parametrize("skew", [-300, 300, 0])
    def test_within_tolerance_both_directions(self, verifier, secrets, skew):
        at = NOW + skew
        assert verifier.verify(BODY, headers(sign(secrets[0], at=at), at=at), now=NOW)

    @pytest.mark.parametrize("skew", [-301, 301, -(10**6), 10**6])
    def test_outside_tolerance_both_directions(self, verifier, secrets, skew):
        at = NOW + skew
        with pytest.raises(Unauthorized, match="tolerance"):
            verifier.verify(BODY, headers(sign(secrets[0], at=at), at=at), now=NOW)

    @pytest.mark.parametrize(
        "change",
        [
            {"webhook-id": "msg_2"},
            {"webhook-timestamp": str(NOW + 1)},
            {"webhook-id": ""},
            {"webhook-timestamp": "1.8e9"},
            {"webhook-timestamp": "-1"},
            {"webhook-id": "x" * 257},
            {"webhook-id": "msg\n1"},
            {"webhook-signature": ""},
        ],
    )
    def test_any_changed_header_is_refused(self, verifier, secrets, change):
        sent = {**headers(sign(secrets[0])), **change}
        with pytest.raises(Unauthorized):
            verifier.verify(BODY, sent, now=NOW)

    def test_changed_body_is_refused(self, verifier, secrets):
        with pytest.raises(Unauthorized, match="no webhook-signature matches"):
            verifier.verify(BODY + b" ", headers(sign(secrets[0])), now=NOW)

    def test_missing_headers_say_what_to_send(self, verifier):
        with pytest.raises(Unauthorized, match="webhook-id, webhook-timestamp"):
            verifier.verify(BODY, {}, now=NOW)

    def test_unbounded_signature_header_is_cut_not_parsed_whole(self, verifier, secrets):
        header = "v1,AAAA " * 100_000 + sign(secrets[0])
        started = time.perf_counter()
        with pytest.raises(Unauthorized):
            verifier.verify(BODY, headers(header), now=NOW)
        assert time.perf_counter() - started < 1

    def test_from_settings(self, secrets):
        settings = Settings(
            COMPLETER_SIGNING_SECRETS=f"acme={secrets[0]} {secrets[1]}",
            COMPLETER_SIGNATURE_TOLERANCE_SECONDS=60,
        )
        verifier = SignatureVerifier.from_settings(settings)
        assert verifier is not None
        assert verifier.tolerance_seconds == 60
        assert [k.label for k in verifier.keys] == ["acme", "#2"]
        assert verifier.verify(BODY, headers(sign(secrets[0])), now=NOW).key.name == "acme"
        assert SignatureVerifier.from_settings(Settings()) is None

    @pytest.mark.parametrize("tolerance", [0, 3601])
    def test_tolerance_out_of_range_is_a_configuration_error(self, secrets, tolerance):
        with pytest.raises(ConfigurationError):
            SignatureVerifier([key_of(secrets[0])], tolerance_seconds=tolerance)


# --- fuzzing: every outcome is a contract error or a verified, valid request -------------------

header_text = st.text(st.characters(codec="utf-8"), max_size=80)
fuzz_headers = st.fixed_dictionaries(
    {},
    optional={
        "webhook-id": header_text,
        "webhook-timestamp": st.one_of(header_text, st.integers(0, 2 * NOW).map(str)),
        "webhook-signature": st.one_of(
            header_text,
            st.lists(
                st.one_of(header_text, st.binary(max_size=40).map(base64.b64encode)),
                max_size=4,
            ).map(lambda parts: " ".join(f"v1,{p!s}" for p in parts)),
        ),
    },
)
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
fuzz_bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(str.encode),
    st.dictionaries(
        st.sampled_from(
            ["task_token", "workflow_id", "activity_id", "run_id", "action", "result", "error"]
        ),
        json_values,
    ).map(lambda d: __import__("json").dumps(d).encode()),
    st.sampled_from(
        [
            b'{"workflow_id":"w","activity_id":"a","workflow_id":"x"}',
            b'{"workflow_id":"\\ud800","activity_id":"a"}',
            b'{"workflow_id":"w","activity_id":"a","result":' + b"9" * 400 + b"}",
            b'{"workflow_id":"w","activity_id":"a","result":1e999}',
            b'{"workflow_id":"w","activity_id":"a","result":NaN}',
            b"[" * 10_000,
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(body=fuzz_bodies, sent=fuzz_headers, sign_it=st.booleans())
def test_fuzzed_requests_end_in_a_contract_error_or_a_valid_request(body, sent, sign_it):
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    verifier = SignatureVerifier([key_of(secret)], tolerance_seconds=300)
    if sign_it:
        import hashlib
        import hmac

        msg_id = "msg_fuzz"
        mac = hmac.new(b"k" * 24, b"%s.%d." % (msg_id.encode(), NOW) + body, hashlib.sha256)
        sent = {**headers("v1," + base64.b64encode(mac.digest()).decode(), msg_id=msg_id)}
    error: CompleterError | None = None
    try:
        signed = verifier.verify(body, sent, now=NOW)
        request = parse_request(body)
        check_scope(Scope(workflow_id_prefixes=("w",)), request)
    except CompleterError as exc:
        error = exc
    if error is not None:
        assert error.code in {"unauthorized", "invalid_request", "forbidden"}
        assert len(error.message) < 400
        return
    assert sign_it
    assert isinstance(signed, SignedRequest)
    assert isinstance(request, CompletionRequest)
    assert (request.workflow_id or "").startswith("w")


# --- scopes -------------------------------------------------------------------------------------


def scope(**spec: Any) -> Scope:
    return parse_scopes(__import__("json").dumps({"p": spec}), secret_names=["p"])["p"]


TOKEN = base64.b64encode(b"opaque-engine-token").decode()
BY_IDS = parse_request(BODY)
BY_TOKEN = parse_request(f'{{"task_token":"{TOKEN}"}}')
FAIL_BY_IDS = parse_request(b'{"workflow_id":"acme-42","activity_id":"a","error":{"message":"no"}}')


class TestScopes:
    def test_unrestricted_allows_everything(self):
        for request in (BY_IDS, BY_TOKEN, FAIL_BY_IDS):
            check_scope(Scope(), request)

    def test_workflow_prefix(self):
        restricted = scope(workflow_id_prefixes=["acme-", "acme2-"])
        check_scope(restricted, BY_IDS)
        other = parse_request(b'{"workflow_id":"beta-1","activity_id":"a"}')
        with pytest.raises(Forbidden, match="this workflow") as info:
            check_scope(restricted, other)
        assert info.value.http_status == 403
        assert info.value.code == "forbidden"
        assert "beta-1" not in info.value.message  # nothing of the input is echoed

    def test_prefix_scope_refuses_tokens(self):
        with pytest.raises(Forbidden, match="by task token"):
            check_scope(scope(workflow_id_prefixes=["acme-"]), BY_TOKEN)

    def test_actions(self):
        only_complete = scope(actions=["complete"])
        check_scope(only_complete, BY_IDS)
        with pytest.raises(Forbidden, match="may not 'fail'"):
            check_scope(only_complete, FAIL_BY_IDS)

    def test_naming_forms(self):
        tokens_only = scope(naming=["token"])
        check_scope(tokens_only, BY_TOKEN)
        with pytest.raises(Forbidden, match="by workflow and activity ID"):
            check_scope(tokens_only, BY_IDS)
        check_scope(scope(naming=["ids"]), BY_IDS)

    def test_prefix_is_a_prefix_not_a_substring(self):
        with pytest.raises(Forbidden):
            check_scope(
                scope(workflow_id_prefixes=["acme-"]),
                parse_request(b'{"workflow_id":"x-acme-1","activity_id":"a"}'),
            )


# --- replay memory ------------------------------------------------------------------------------


def signed_request(msg_id: str = "msg_1", *, body: bytes = BODY, at: int = NOW) -> SignedRequest:
    import hashlib

    return SignedRequest(
        webhook_id=msg_id,
        timestamp=at,
        key=SigningKey(name=None, key=b"k" * 24),
        body_digest=hashlib.sha256(body).hexdigest(),
    )


OK = RememberedAnswer(200, {"status": "failed"})


class TestReplayMemory:
    async def test_replay_gets_the_first_answer_and_runs_nothing(self):
        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: NOW)
        runs: list[int] = []

        async def carry_out() -> RememberedAnswer:
            runs.append(1)
            return OK

        first = await answer_once(store, signed_request(), carry_out)
        again = await answer_once(store, signed_request(), carry_out)
        assert first == (OK, False)
        assert again == (OK, True)
        assert again[0].replayed() == {"status": "failed", "replayed": True}
        assert runs == [1]

    async def test_concurrent_replays_wait_for_the_first(self):
        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: NOW)
        release = asyncio.Event()
        runs: list[int] = []

        async def carry_out() -> RememberedAnswer:
            runs.append(1)
            await release.wait()
            return OK

        tasks = [
            asyncio.create_task(answer_once(store, signed_request(), carry_out)) for _ in range(5)
        ]
        await asyncio.sleep(0.01)
        release.set()
        answers = await asyncio.gather(*tasks)
        assert runs == [1]
        assert sorted(replayed for _, replayed in answers) == [False, True, True, True, True]

    @pytest.mark.parametrize("status", [500, 503, 504])
    async def test_transient_answers_are_not_remembered(self, status):
        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: NOW)
        answers = iter([RememberedAnswer(status, {"error": {}}), OK])

        async def carry_out() -> RememberedAnswer:
            return next(answers)

        assert (await answer_once(store, signed_request(), carry_out))[1] is False
        assert await answer_once(store, signed_request(), carry_out) == (OK, False)
        assert await answer_once(store, signed_request(), carry_out) == (OK, True)

    async def test_exception_releases_the_id(self):
        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: NOW)

        async def boom() -> RememberedAnswer:
            raise RuntimeError("engine exploded")

        with pytest.raises(RuntimeError):
            await answer_once(store, signed_request(), boom)
        assert len(store) == 0

    @pytest.mark.parametrize("status", [400, 403, 404, 409])
    async def test_final_refusals_are_remembered(self, status):
        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: NOW)
        answer = RememberedAnswer(status, {"error": {"code": "x", "message": "y"}})

        async def carry_out() -> RememberedAnswer:
            return answer

        await answer_once(store, signed_request(), carry_out)
        assert await answer_once(store, signed_request(), carry_out) == (answer, True)

    async def test_same_id_other_body_is_a_conflict(self):
        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: NOW)

        async def carry_out() -> RememberedAnswer:
            return OK

        await answer_once(store, signed_request(), carry_out)
        with pytest.raises(Conflict):
            await answer_once(store, signed_request(body=b"{}"), carry_out)

    async def test_entries_expire_with_the_tolerance_window(self):
        now = [float(NOW)]
        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: now[0])

        async def carry_out() -> RememberedAnswer:
            return OK

        await answer_once(store, signed_request("a"), carry_out)
        now[0] += 301
        await answer_once(store, signed_request("b", at=int(now[0])), carry_out)
        assert len(store) == 1

    async def test_memory_is_bounded(self):
        store = MemoryReplayStore(tolerance_seconds=300, capacity=100, clock=lambda: NOW)

        async def carry_out() -> RememberedAnswer:
            return OK

        for number in range(1000):
            await answer_once(store, signed_request(f"msg_{number}"), carry_out)
        assert len(store) == 100

    async def test_a_full_memory_never_drops_a_request_being_carried_out(self):
        store = MemoryReplayStore(tolerance_seconds=300, capacity=1, clock=lambda: NOW)
        release = asyncio.Event()
        runs: list[str] = []

        async def slow() -> RememberedAnswer:
            runs.append("slow")
            await release.wait()
            return OK

        async def fast() -> RememberedAnswer:
            return OK

        first = asyncio.create_task(answer_once(store, signed_request("slow"), slow))
        await asyncio.sleep(0.01)
        for number in range(5):
            await answer_once(store, signed_request(f"other_{number}"), fast)
        replay = asyncio.create_task(answer_once(store, signed_request("slow"), slow))
        await asyncio.sleep(0.01)
        release.set()
        async with asyncio.timeout(2):
            assert await first == (OK, False)
            assert await replay == (OK, True)
        assert runs == ["slow"]

    async def test_two_partners_may_use_the_same_ids(self):
        import hashlib

        store = MemoryReplayStore(tolerance_seconds=300, clock=lambda: NOW)

        def by(name: str, body: bytes) -> SignedRequest:
            return SignedRequest(
                webhook_id="msg_1",
                timestamp=NOW,
                key=SigningKey(name=name, key=b"k" * 24),
                body_digest=hashlib.sha256(body).hexdigest(),
            )

        async def carry_out() -> RememberedAnswer:
            return OK

        assert (await answer_once(store, by("acme", b"{}"), carry_out))[1] is False
        assert (await answer_once(store, by("beta", b"[]"), carry_out))[1] is False
        assert (await answer_once(store, by("acme", b"{}"), carry_out))[1] is True
