"""Start-up checks of an LLM endpoint (``agent/proposers/preflight.py``): a server the user runs
that nothing answers at fails the run in seconds, before the baseline trains, with one line."""

import socket

import pytest

from agent.proposers.base import ProposerFatal
from agent.proposers.llm import _litellm, make_llm_proposer
from agent.proposers.preflight import OLLAMA_DEFAULT, has_price, server_address, unknown_provider, unreachable
from tests.agent.fake_openai_server import FakeServer
from tests.agent.runcli import TINY, run_cli


def closed_port() -> int:
    """A local port with nothing listening on it (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_address_is_the_api_base_or_ollamas_and_none_for_a_hosted_provider(monkeypatch):
    monkeypatch.delenv("OLLAMA_API_BASE", raising=False)
    assert server_address("gpt-4o", None) is None
    assert server_address("anthropic/claude-sonnet-4", None) is None
    assert server_address("openai/x", "http://h:8000/v1") == "http://h:8000/v1"
    assert server_address("ollama/llama3", None) == OLLAMA_DEFAULT
    monkeypatch.setenv("OLLAMA_API_BASE", "http://gpu-box:11434")
    assert server_address("ollama_chat/llama3", None) == "http://gpu-box:11434"


def test_a_live_server_passes_even_when_it_answers_with_an_error_status():
    with FakeServer() as fake:  # GET /v1 → 200
        assert unreachable(fake.url) is None
        assert unreachable(fake.url.replace("/v1", "/no/such/path")) is None  # 404 is an answer


def test_a_refused_connection_is_one_line_quoting_the_address_without_its_credentials():
    port = closed_port()
    why = unreachable(f"http://bob:hunter2-secret@127.0.0.1:{port}/v1?api_key=query-secret-77")
    assert why is not None and why.startswith(
        f"nothing answers at 'http://[redacted]@127.0.0.1:{port}/v1?api_key=[redacted]'")
    assert "hunter2" not in why and "query-secret" not in why and "\n" not in why


def test_a_server_that_accepts_but_never_replies_times_out_within_the_stated_limit():
    with socket.socket() as listener:  # the kernel accepts the connection; nobody ever reads it
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        why = unreachable(f"http://127.0.0.1:{port}", timeout_s=0.3)
    assert why == f"nothing answered at 'http://127.0.0.1:{port}' within 0.3 s"


def test_an_address_that_is_not_http_is_named():
    why = unreachable("ftp://models.example/v1")
    assert why is not None and "'ftp://models.example/v1' is not an http(s) address" in why


def test_make_llm_proposer_refuses_an_unreachable_ollama_with_the_way_to_fix_it(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("OLLAMA_API_BASE", f"http://127.0.0.1:{port}")
    with pytest.raises(ProposerFatal, match=rf"ollama/llama3: nothing answers at 'http://127.0.0.1:{port}'"
                                            r".*; start it \(ollama serve\) or give its address"):
        make_llm_proposer("ollama/llama3", api_base=None, prompt=None, seed=0)


@pytest.mark.slow
def test_the_run_fails_with_one_line_and_no_run_folder_when_its_server_is_down(tmp_path):
    port = closed_port()
    args = [a for a in TINY if a not in ("--model", "builtin")]
    proc = run_cli("agent.run", *args, "--model", "openai/test", "--api-base",
                   f"http://127.0.0.1:{port}/v1", "--out", tmp_path, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert f"openai/test: nothing answers at 'http://127.0.0.1:{port}/v1'" in lines[0]
    assert "correct --api-base" in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing trained, nothing written


def test_a_model_name_litellm_cannot_place_is_refused_at_start_up_with_the_fix():
    ll = _litellm()
    assert unknown_provider(ll, "gpt-4o", None) is None
    assert unknown_provider(ll, "openai/my-model", "http://h:8000/v1") is None
    assert "You passed model=gpt-4oo" in unknown_provider(ll, "gpt-4oo", None)
    with pytest.raises(ProposerFatal, match=r"gpt-4oo: litellm cannot tell which provider serves it "
                                            r"\(.*\); name it provider/model"):
        make_llm_proposer("gpt-4oo", api_base=None, prompt=None, seed=0)


def test_a_price_is_known_for_mapped_models_including_free_ones_and_not_for_the_rest():
    ll = _litellm()
    assert has_price(ll, "gpt-4o") and has_price(ll, "anthropic/claude-sonnet-4-5")
    assert has_price(ll, "ollama/qwen2.5")  # known, and 0
    assert not has_price(ll, "openai/my-model") and not has_price(ll, "gpt-4oo")


@pytest.mark.slow
def test_a_cost_cap_on_a_model_without_a_price_is_refused_before_anything_runs(tmp_path):
    args = [a for a in TINY if a not in ("--model", "builtin")]
    with FakeServer() as fake:  # reachable: only the cap is wrong
        proc = run_cli("agent.run", *args, "--model", "openai/test", "--api-base", fake.url,
                       "--max-cost-usd", "0.5", "--out", tmp_path, check=False)
        assert fake.requests == []  # no completion was asked for
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: --max-cost-usd 0.5: litellm's price map has no price for 'openai/test', so its "
                     "calls would count as $0 and the cap could never stop the run; leave it out and "
                     "bound the run with --iterations or --max-wall-seconds"]
    assert list(tmp_path.iterdir()) == []
