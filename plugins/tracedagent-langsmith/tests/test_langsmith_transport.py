"""The transport of the client the tracer builds: a request stuck on an endpoint that never answers is
let go at ``abandon`` (the exit deadline), and every later request fails at once."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests
from requests.adapters import HTTPAdapter

from tracedagent_langsmith import LangSmithTracer
from tracedagent_langsmith._transport import GIVEN_UP, ExitBoundAdapter, exit_bound_session

GUARD_S = 30.0


@pytest.fixture
def black_hole() -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_abandon_releases_a_request_waiting_on_a_silent_endpoint_and_fails_later_ones(black_hole: str) -> None:
    session, adapter = exit_bound_session()
    errors: list[BaseException] = []

    def post() -> None:
        try:
            session.post(black_hole + "/runs/multipart", data=b"x", timeout=(GUARD_S, GUARD_S))
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=post)  # not a daemon, as the SDK's threads are not
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # the endpoint never answers: the request waits
    adapter.abandon()
    waiter.join(GUARD_S)
    assert not waiter.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], requests.ConnectionError)
    assert GIVEN_UP in str(errors[0])
    with pytest.raises(requests.ConnectionError, match="given up"):
        session.get(black_hole + "/info", timeout=(GUARD_S, GUARD_S))
    assert adapter.given_up == 2


def test_requests_and_their_errors_pass_through_until_abandoned() -> None:
    class Inner(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: object, **kwargs: object) -> requests.Response:
            if request.url and request.url.endswith("/boom"):
                raise requests.ConnectTimeout("inner")
            response = requests.Response()
            response.status_code = 204
            response.request = request
            return response

    session = requests.Session()
    adapter = ExitBoundAdapter(Inner())
    session.mount("http://", adapter)
    assert session.get("http://example.invalid/ok").status_code == 204
    with pytest.raises(requests.ConnectTimeout, match="inner"):
        session.get("http://example.invalid/boom")
    assert adapter.given_up == 0


def test_the_client_the_tracer_builds_sends_through_the_exit_bound_transport(
    monkeypatch: pytest.MonkeyPatch, black_hole: str
) -> None:
    monkeypatch.setenv("LANGSMITH_ENDPOINT", black_hole)
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_pt_test")
    tracer = LangSmithTracer()
    client = tracer._client_here()
    try:
        adapter = client.session.get_adapter(black_hole)
        assert isinstance(adapter, ExitBoundAdapter)
        # It wraps the SDK's own adapter (the client mounted it), which carries the bounded retries.
        assert type(adapter.inner).__module__.startswith("langsmith")
        assert adapter.inner.max_retries.connect == 0
        assert client.retry_config.status == 2
    finally:
        tracer._abandon_sdk()  # lets the SDK's threads go at once (the endpoint never answers)
    assert tracer.abandoned


def test_a_client_of_the_application_is_left_alone_at_abandon(monkeypatch: pytest.MonkeyPatch, black_hole: str) -> None:
    class Client:
        session = requests.Session()
        cleaned = False

        def cleanup(self, timeout: float | None = None) -> None:
            self.cleaned = True

    given = Client()
    mounted = dict(given.session.adapters)
    tracer = LangSmithTracer(client=given)
    tracer._abandon_sdk()
    assert not tracer.abandoned
    assert not given.cleaned
    assert dict(given.session.adapters) == mounted
