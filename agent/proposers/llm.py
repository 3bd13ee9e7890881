"""The LLM proposer: litellm chat completions → schema-checked specs, one repair turn, retries.

Works with any litellm model (``gpt-4o``, ``anthropic/…``, ``gemini/…``, ``ollama/…``,
``openai/<name>`` with ``--api-base``), using the keys litellm reads from the environment.
The reply must be ``{"proposals": [spec, …]}``; that schema is sent as ``response_format``
(``json_schema`` for OpenAI-style models, ``json_object`` + schema for llama.cpp); an
OpenAI-compatible server that answers 400 about ``response_format`` is asked again with the
next form (json_schema → json_object → a fenced JSON block in plain text). Transient errors
(429 honouring Retry-After, timeouts, connection errors, 5xx) are retried with exponential
backoff and jitter; authentication errors and other bad requests end the run with one line.
A call never outlives the run's wall budget: each attempt's HTTP timeout is cut to the time left
before ``ProposalContext.deadline``, no retry starts past it, and running out raises
:class:`~agent.proposers.base.ProposerOutOfTime`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import time
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from agent.prompts import PromptSet, PromptTemplateError, prompt_context
from agent.proposers.base import Proposal, ProposalContext, Proposer, ProposerFatal, ProposerOutOfTime
from agent.proposers.parse import ParsedItem, parse_reply
from agent.proposers.preflight import check_server, has_price, missing_key, unknown_provider
from agent.redact import redact
from spaces.base import SearchSpace

__all__ = ["LLMProposer", "make_llm_proposer", "redact", "reply_schema", "strict_schema",
           "stored_reply", "MAX_STORED_REPLY", "MAX_QUOTED_REPLY", "MAX_ERROR"]

FORMS = ("json_schema", "json_object", "text")
#: a reply longer than this is logged as its first MAX_STORED_REPLY characters + size + sha256
MAX_STORED_REPLY = 8_000
#: the repair turn quotes at most this much of the rejected reply (and of its error)
MAX_QUOTED_REPLY = 2_000
MAX_ERROR = 1_000


def stored_reply(text: str, limit: int = MAX_STORED_REPLY) -> str:
    """``text`` itself, or when longer than ``limit`` its first ``limit`` characters followed by
    one line with the full size and sha256 (so a 1 MB reply costs the log a few kB, and anyone
    holding the reply can still check it is the one that was cut)."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{text[:limit]}\n… [cut: the reply has {len(text):,} characters, sha256 {digest}]"


def _bounded(text: str, limit: int = MAX_ERROR) -> str:
    return text if len(text) <= limit else text[:limit] + f" … [{len(text):,} characters]"


def _split_repeats(items: list[ParsedItem], seen: frozenset[str]
                   ) -> tuple[list[ParsedItem], list[ParsedItem]]:
    """The parsed specs that are new, and those that repeat an architecture already proposed in
    the run (``seen``: canonical hashes, the baseline's included) or earlier in this reply."""
    known, fresh, repeats = set(seen), [], []
    for item in items:
        if item.spec is not None:
            (repeats if item.spec_hash in known else fresh).append(item)
            known.add(item.spec_hash)
    return fresh, repeats


def _repeats_error(repeats: list[ParsedItem], space: SearchSpace) -> str:
    """The repair turn's line for specs that repeat an architecture: how many, their hashes, and
    for each the fields its network does not depend on (dead edges are the usual reason a
    model's "different" spec is the same network)."""
    inert = {}
    for item in repeats:
        fields = space.inert_fields(item.spec)
        if fields and item.spec_hash not in inert:
            inert[item.spec_hash] = fields
    why = "".join(f"; in {h} the network does not depend on {', '.join(f)}"
                  for h, f in sorted(inert.items()))
    return (f"{len(repeats)} spec(s) repeat an architecture already proposed in this run "
            f"({', '.join(sorted({i.spec_hash for i in repeats}))}){why}: propose different ones, "
            "each changing at least one operation of the baseline that its network depends on")


def _litellm():
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map
    import litellm

    litellm.suppress_debug_info = True
    litellm.set_verbose = False
    import logging

    for name in ("LiteLLM", "litellm", "LiteLLM Router", "LiteLLM Proxy", "httpx"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return litellm


def reply_schema(spec_schema: dict[str, Any], k: int | None = None) -> dict[str, Any]:
    """``{"proposals": [spec, …]}`` around a spec's JSON Schema; with ``k``, exactly k specs
    (grammar-constrained decoders honour the bounds; strict mode drops them)."""
    spec = copy.deepcopy(spec_schema)
    defs = spec.pop("$defs", None)
    array: dict[str, Any] = {"type": "array", "items": spec}
    if k is not None:
        array.update(minItems=k, maxItems=k)
    root = {"type": "object", "properties": {"proposals": array},
            "required": ["proposals"], "additionalProperties": False}
    if defs:
        root["$defs"] = defs
    return root


def strict_schema(schema: Any) -> Any:
    """A copy fit for OpenAI strict mode: every object closed with all properties required, and
    keywords strict mode rejects (defaults, titles, length bounds) dropped (we validate after)."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()
           if k not in ("default", "title", "minItems", "maxItems", "minimum", "maximum")}
    if out.get("type") == "object" and "properties" in out:
        out["required"] = list(out["properties"])
        out["additionalProperties"] = False
    return out


def _status(err: BaseException) -> int | None:
    code = getattr(err, "status_code", None)
    return int(code) if isinstance(code, int) else None


def _retry_after(err: BaseException) -> float | None:
    for source in (getattr(err, "response", None), err):
        headers = getattr(source, "headers", None) or getattr(source, "litellm_response_headers", None)
        if not headers:
            continue
        for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
            value = headers.get(name) if hasattr(headers, "get") else None
            if value is not None:
                try:
                    return max(0.0, float(value) * scale)
                except ValueError:
                    continue
    return None


class LLMProposer(Proposer):
    """Writes specs with an LLM. ``forms`` is the response-format chain to try, in order."""

    def __init__(self, model: str, *, api_base: str | None, prompts: PromptSet, seed: int,
                 timeout_s: float = 120.0, max_retries: int = 5, forms: tuple[str, ...] = FORMS,
                 source: str = "llm", api_key: str | None = None, fold_system: bool = False,
                 max_tokens: int | None = 2048, backoff_s: float = 1.0, max_wait_s: float = 60.0,
                 temperature: float = 0.7):
        self.model, self.api_base, self.prompts, self.seed = model, api_base, prompts, seed
        self.timeout_s, self.max_retries, self.forms = timeout_s, max_retries, list(forms)
        self.source, self.api_key, self.fold_system = source, api_key, fold_system
        self.max_tokens, self.backoff_s, self.max_wait_s = max_tokens, backoff_s, max_wait_s
        self.temperature = temperature
        self.calls, self.costs = 0, []
        self.litellm = _litellm()

    # ---- one HTTP call, retried -----------------------------------------------------------
    def _transient(self, err: BaseException) -> bool:
        ll = self.litellm
        if isinstance(err, (ll.RateLimitError, ll.Timeout, ll.APIConnectionError,
                            ll.InternalServerError, ll.ServiceUnavailableError, ll.BadGatewayError)):
            return True
        status = _status(err)
        return status is not None and (status == 429 or status >= 500)

    def _wait(self, retry_state: RetryCallState) -> float:
        err = retry_state.outcome.exception()
        after = _retry_after(err) if err is not None else None
        if after is not None:
            return min(after, self.max_wait_s)
        return wait_random_exponential(multiplier=self.backoff_s, max=self.max_wait_s)(retry_state)

    def _response_format(self, form: str, schema: dict[str, Any]) -> dict[str, Any] | None:
        if form == "json_schema":
            return {"type": "json_schema", "json_schema": {
                "name": "proposals", "schema": strict_schema(schema), "strict": True}}
        if form == "json_object":
            return {"type": "json_object", "schema": schema}
        return None

    def _messages(self, messages: list[dict[str, str]], form: str) -> list[dict[str, str]]:
        if form == "text":
            messages = messages[:-1] + [{"role": messages[-1]["role"], "content": messages[-1]["content"]
                                         + "\nWrite the JSON inside one ```json fenced block."}]
        if self.fold_system and messages and messages[0]["role"] == "system":
            system, first, *rest = messages
            messages = [{"role": "user", "content": system["content"] + "\n\n" + first["content"]},
                        *rest]
        return messages

    def _retrying(self, deadline: float | None) -> Retrying:
        stop = stop_after_attempt(self.max_retries)
        if deadline is not None:
            stop = stop | stop_before_delay(max(0.0, deadline - time.time()))
        return Retrying(stop=stop, wait=self._wait, retry=retry_if_exception(self._transient),
                        reraise=True)

    def _attempt(self, kwargs: dict[str, Any], deadline: float | None):
        """One HTTP attempt; its timeout never reaches past ``deadline``."""
        timeout = self.timeout_s
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0:
                raise ProposerOutOfTime(f"{self.model}: the run's wall budget ended before the call")
            timeout = min(timeout, left)
        return self.litellm.completion(**kwargs, timeout=timeout)

    def complete(self, messages: list[dict[str, str]], schema: dict[str, Any],
                 deadline: float | None = None) -> tuple[str, int, int, float]:
        """One completion (text, tokens in, tokens out, cost), trying the response-format chain;
        raises :class:`ProposerOutOfTime` when ``deadline`` (epoch seconds) passes first."""
        ll = self.litellm
        while True:
            form = self.forms[0]
            kwargs = dict(model=self.model, messages=self._messages(messages, form),
                          seed=self.seed + self.calls, num_retries=0, max_retries=0,
                          temperature=self.temperature)
            if self.api_base:
                kwargs["api_base"] = self.api_base
            if self.api_key:
                kwargs["api_key"] = self.api_key
            if self.max_tokens:
                kwargs["max_tokens"] = self.max_tokens
            if (rf := self._response_format(form, schema)) is not None:
                kwargs["response_format"] = rf
            retrying = self._retrying(deadline)
            try:
                response = retrying(self._attempt, kwargs, deadline)
            except ProposerOutOfTime:
                raise
            except Exception as err:
                attempts = retrying.statistics.get("attempt_number", self.max_retries)
                if deadline is not None and self._transient(err) and (
                        attempts < self.max_retries or time.time() >= deadline):
                    raise ProposerOutOfTime(f"{self.model}: the run's wall budget ended during the "
                                            f"call ({type(err).__name__})") from None
                message = redact(str(err)).splitlines()[0][:300] if str(err) else type(err).__name__
                status = _status(err)
                if (status == 400 or isinstance(err, ll.BadRequestError)) and \
                        "response_format" in str(err).lower() and len(self.forms) > 1:
                    self.forms.pop(0)  # remember the working form for later calls
                    continue
                auth = (ll.AuthenticationError, ll.PermissionDeniedError)
                if isinstance(err, auth) or status in (401, 403):
                    raise ProposerFatal(f"{self.model}: authentication failed ({message}); set the "
                                        "provider's API key in the environment") from None
                if self._transient(err):
                    raise ProposerFatal(f"{self.model}: still failing after {self.max_retries} "
                                        f"attempts of at most {self.timeout_s:g} s each "
                                        f"({message})") from None
                raise ProposerFatal(f"{self.model}: request refused ({message})") from None
            break
        self.calls += 1
        text = redact(response.choices[0].message.content or "")  # a reply may echo a key
        usage = getattr(response, "usage", None)
        tokens_in = int(getattr(usage, "prompt_tokens", 0) or 0)
        tokens_out = int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            cost = float(ll.completion_cost(completion_response=response) or 0.0)
        except Exception:  # unknown models (local, openai-compatible) have no price
            cost = 0.0
        self.costs.append(cost)
        return text, tokens_in, tokens_out, cost

    # ---- the proposer interface -----------------------------------------------------------
    def expected_call_cost_usd(self) -> float:
        return sum(self.costs) / len(self.costs) if self.costs else 0.0

    def priced(self) -> bool:
        return has_price(self.litellm, self.model)

    def _parse(self, text: str, context: ProposalContext) -> tuple[list[ParsedItem], str | None]:
        try:
            return parse_reply(text, context.space, context.task, context.cap,
                               context.width_mult), None
        except ValueError as err:
            return [], f"the reply is not usable JSON: {err}"

    def _render(self, name: str, variables: dict[str, Any]) -> str:
        try:
            return self.prompts.render(name, variables)
        except PromptTemplateError as err:  # e.g. the sandbox refused a branch the check missed
            raise ProposerFatal(str(err)) from None

    def propose(self, context: ProposalContext, k: int) -> list[Proposal]:
        variables = prompt_context(context, k)
        schema = reply_schema(context.space.json_schema(), k)
        messages = [{"role": "system", "content": self._render("system.j2", variables)},
                    {"role": "user", "content": self._render("propose.j2", variables)}]
        call_id = f"{self.source}-{self.calls + 1}"
        text, t_in, t_out, cost = self.complete(messages, schema, context.deadline)
        items, whole_error = self._parse(text, context)
        fresh, repeats = _split_repeats(items, context.seen_hashes)
        valid = fresh[:k]
        # a repeat is logged (the loop rejects it as a duplicate) but asked for again
        out = [self._proposal(call_id, i, text) for i in valid + repeats]
        errors = ([whole_error] if whole_error else []) + [i.error for i in items if i.error] + (
            [_repeats_error(repeats, context.space)] if repeats else [])
        missing = k - len(valid)
        if missing > 0:
            error = _bounded("; ".join(errors)
                             or f"the reply held {len(valid)} valid spec(s); {k} were asked for")
            quoted = stored_reply(text, MAX_QUOTED_REPLY)  # never the whole of a huge reply
            repair_vars = variables | {"error": error, "reply": quoted, "k": missing}
            repair = messages + [{"role": "assistant", "content": quoted or "(empty)"},
                                 {"role": "user", "content": self._render("repair.j2", repair_vars)}]
            repair_id = f"{self.source}-{self.calls + 1}"
            try:
                text2, r_in, r_out, r_cost = self.complete(
                    repair, reply_schema(context.space.json_schema(), missing), context.deadline)
                items2, whole2 = self._parse(text2, context)
                still = "; ".join(([whole2] if whole2 else []) + [i.error for i in items2 if i.error]) \
                    or "the repair reply held too few specs"
                still = f"still invalid after one repair turn: {still}"
            except ProposerOutOfTime:  # keep what the first reply gave (and its tokens)
                text2, r_in, r_out, r_cost, items2 = "", 0, 0, 0.0, []
                still = f"not repaired: the run's wall budget ended during the repair turn ({error})"
            fixed = [i for i in items2 if i.spec is not None][:missing]
            repaired = [self._proposal(repair_id, i, text2) for i in fixed]
            repaired += [Proposal(source=self.source, call_id=repair_id,
                                  raw=stored_reply(text2 or text), error=_bounded(still))
                         for _ in range(missing - len(fixed))]
            for p in repaired:
                p.repairs.append(error)
            repaired[0].tokens_in, repaired[0].tokens_out, repaired[0].cost_usd = r_in, r_out, r_cost
            out += repaired
        out[0].tokens_in += t_in
        out[0].tokens_out += t_out
        out[0].cost_usd += cost
        return out

    def _proposal(self, call_id: str, item: ParsedItem, text: str) -> Proposal:
        raw = stored_reply(json.dumps(item.raw) if item.raw is not None else text)
        return Proposal(source=self.source, call_id=call_id, raw=raw, spec=item.spec,
                        spec_hash=item.spec_hash)


def default_forms(model: str, api_base: str | None) -> tuple[str, ...]:
    if model.startswith(("ollama/", "ollama_chat/")):
        return ("json_object", "text")
    return FORMS


def make_llm_proposer(model: str, *, api_base: str | None, prompt: str | None, seed: int,
                      timeout_s: float = 120.0, max_retries: int = 5) -> Proposer:
    """A proposer for any litellm model name; templates, the provider key and a user-run server's
    address are checked here, at start-up (:mod:`agent.proposers.preflight`)."""
    litellm = _litellm()
    if (why := unknown_provider(litellm, model, api_base)) is not None:
        raise ProposerFatal(f"{model}: litellm cannot tell which provider serves it ({why}); name "
                            "it provider/model, e.g. anthropic/…, or openai/<name> with --api-base")
    if (keys := missing_key(litellm, model, api_base)) is not None:
        raise ProposerFatal(f"{model}: no API key: set {keys} in the environment")
    check_server(model, api_base)
    return LLMProposer(model, api_base=api_base, prompts=PromptSet(prompt), seed=seed,
                       timeout_s=timeout_s, max_retries=max_retries,
                       forms=default_forms(model, api_base))

