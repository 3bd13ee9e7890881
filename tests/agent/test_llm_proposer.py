import dataclasses
import json
import time

import pytest

from agent.prompts import PromptSet, PromptTemplateError
from agent.proposers.base import HistoryItem, ProposalContext, ProposerFatal, ProposerOutOfTime
from agent.proposers.llm import LLMProposer, make_llm_proposer
from spaces import SizeCap, TaskInfo, get_space
from tests.agent.fake_openai_server import FakeServer, error

SPACE = get_space("nb201")
SECRET = "sk-secret-test-123456"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


def context(k_seen=()):
    ref = SPACE.reference()
    base = HistoryItem("baseline", ref.model_dump(), 0.06, 0.06, 0.6, 0.04, True, "")
    return ProposalContext(space=SPACE, task=TaskInfo((1, 40), 10), task_name="mnist1d",
                           iteration=1, ensemble_size=50, rule="exact", baseline=base,
                           best_accepted=[], last_rejected=[], budget_left={"iterations": 3.0})


def good(n=2, **update):
    specs = [SPACE.mutate(SPACE.reference(), __import__("numpy").random.default_rng(i)).model_dump() | update
             for i in range(n)]
    return json.dumps({"proposals": specs})


def proposer(url, **kw):
    p = make_llm_proposer("openai/test", api_base=url, prompt=None, seed=0)
    p.backoff_s = 0.01
    for key, value in kw.items():
        setattr(p, key, value)
    return p


def test_good_reply_becomes_valid_proposals_with_usage():
    with FakeServer([(200, {}, good(2))]) as fake:
        props = proposer(fake.url).propose(context(), 2)
    assert [p.valid for p in props] == [True, True]
    assert props[0].tokens_in == 120 and props[0].tokens_out == 40 and props[1].tokens_in == 0
    req = fake.requests[0]
    assert req["response_format"]["type"] == "json_schema"
    schema = req["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["proposals"]["items"]["additionalProperties"] is False
    assert "nb201" in req["messages"][0]["content"] and req["messages"][1]["role"] == "user"
    assert SECRET not in json.dumps(fake.requests)  # the key goes in a header only


@pytest.mark.parametrize("first, needle", [("I think a good cell is conv", "not usable JSON"),
                                           (good(1, edge_1_0="conv_9x9"), "edge_1_0")])
def test_bad_reply_gets_exactly_one_repair_turn(first, needle):
    with FakeServer([(200, {}, first), (200, {}, good(1))]) as fake:
        props = proposer(fake.url).propose(context(), 1)
    assert len(fake.requests) == 2
    repair_msg = fake.requests[1]["messages"][-1]["content"]
    assert needle in repair_msg
    assert props[0].valid and needle in props[0].repairs[0]
    assert props[0].tokens_in == 240  # both calls' tokens on the proposal they produced


def test_a_repeated_architecture_is_kept_for_the_log_and_asked_for_again():
    """A small model often answers with the baseline itself: that spec (hash already seen) is
    returned, so the loop logs and rejects it as a duplicate, and one repair turn names the
    repeat and asks for a new spec in its place; a spec repeated inside one reply counts too."""
    ref = SPACE.reference()
    seen = dataclasses.replace(context(), seen_hashes=frozenset({SPACE.canonical_hash(ref)}))
    first = json.dumps({"proposals": [ref.model_dump()] + json.loads(good(1))["proposals"] * 2})
    repair = json.dumps({"proposals": json.loads(good(3))["proposals"][1:]})
    with FakeServer([(200, {}, first), (200, {}, repair)]) as fake:
        props = proposer(fake.url).propose(seen, 3)
    assert len(fake.requests) == 2
    repair_msg = fake.requests[1]["messages"][-1]["content"]
    assert "2 spec(s) repeat an architecture already proposed" in repair_msg
    assert SPACE.canonical_hash(ref) in repair_msg
    hashes = [p.spec_hash for p in props]
    assert hashes[0] != SPACE.canonical_hash(ref) and hashes[1:3] == [SPACE.canonical_hash(ref),
                                                                      hashes[0]]
    assert len(props) == 5 and all(p.valid for p in props)  # 1 new + 2 repeats + 2 repaired
    assert len({*hashes[3:]} - {*hashes[:3]}) == 2  # the repair's two are new


def test_a_repeat_through_dead_edges_is_told_which_fields_its_network_ignores():
    """A cell whose output takes only the input's skip connection is one network whatever its
    other edges and N are: the repair turn names those fields for the repeat."""
    identity = SPACE.reference().model_copy(update={
        "edge_3_0": "skip_connect", "edge_3_1": "none", "edge_3_2": "none",
        "edge_1_0": "nor_conv_3x3"})
    seen = dataclasses.replace(context(), seen_hashes=frozenset({SPACE.canonical_hash(identity)}))
    variant = identity.model_copy(update={"edge_1_0": "avg_pool_3x3", "cells_per_stage": 2})
    first = json.dumps({"proposals": [variant.model_dump()]})
    with FakeServer([(200, {}, first), (200, {}, good(1))]) as fake:
        props = proposer(fake.url).propose(seen, 1)
    repair_msg = fake.requests[1]["messages"][-1]["content"]
    assert props[0].spec_hash == SPACE.canonical_hash(identity) and props[1].valid
    assert (f"in {SPACE.canonical_hash(identity)} the network does not depend on edge_1_0, "
            "edge_2_1, cells_per_stage") in repair_msg


def test_still_invalid_after_repair_is_an_error_proposal():
    bad = good(1, edge_1_0="conv_9x9")
    with FakeServer([(200, {}, bad), (200, {}, bad)]) as fake:
        props = proposer(fake.url).propose(context(), 1)
    assert len(fake.requests) == 2
    assert not props[0].valid and "still invalid after one repair turn" in props[0].error


def test_rate_limit_then_success_after_backoff():
    with FakeServer([error(429, "slow down", {"Retry-After": "0"}), (200, {}, good(1))]) as fake:
        props = proposer(fake.url).propose(context(), 1)
    assert len(fake.requests) == 2 and props[0].valid


def test_server_errors_are_retried_then_fatal():
    with FakeServer([error(503, "busy")] * 3) as fake:
        with pytest.raises(ProposerFatal, match="after 3 attempts"):
            proposer(fake.url, max_retries=3).propose(context(), 1)
    assert len(fake.requests) == 3


def test_auth_error_is_fatal_clear_and_not_retried():
    with FakeServer([error(401, f"Incorrect API key provided: {SECRET}")]) as fake:
        with pytest.raises(ProposerFatal) as err:
            proposer(fake.url).propose(context(), 1)
    assert len(fake.requests) == 1
    assert "authentication failed" in str(err.value) and SECRET not in str(err.value)


def test_response_format_fallback_chain():
    script = [error(400, "response_format json_schema is not supported"),
              error(400, "unknown field response_format"), (200, {}, "```json\n" + good(1) + "\n```")]
    with FakeServer(script) as fake:
        p = proposer(fake.url)
        props = p.propose(context(), 1)
    assert props[0].valid
    kinds = [r.get("response_format", {}).get("type") for r in fake.requests]
    assert kinds == ["json_schema", "json_object", None]
    assert "schema" in fake.requests[1]["response_format"]
    assert p.forms == ["text"]  # the working form is remembered


def test_other_bad_request_is_fatal():
    with FakeServer([error(400, "model is overloaded with nonsense")]) as fake:
        with pytest.raises(ProposerFatal, match="refused"):
            proposer(fake.url).propose(context(), 1)


def test_template_with_unknown_variable_fails_fast(tmp_path):
    (tmp_path / "propose.j2").write_text("Write {{ k }} specs better than {{ baseline_speck }}.")
    with pytest.raises(PromptTemplateError, match="baseline_speck"):
        PromptSet(str(tmp_path))
    single = tmp_path / "mine.j2"
    single.write_text("{{ k }} specs for {{ task.name }} please")
    prompts = PromptSet(str(single))
    p = LLMProposer("openai/test", api_base="http://127.0.0.1:9/v1", prompts=prompts, seed=0)
    assert p.prompts.templates["propose.j2"].render(k=2, task={"name": "x"}) == "2 specs for x please"


def test_bare_spec_and_bare_list_replies_are_parsed():
    spec = json.loads(good(1))["proposals"][0]
    with FakeServer([(200, {}, json.dumps(spec)), (200, {}, "Here: " + json.dumps([spec]))]) as fake:
        p = proposer(fake.url)
        assert p.propose(context(), 1)[0].valid
        assert p.propose(context(), 1)[0].valid


def test_a_slow_call_is_cut_at_the_runs_deadline():
    with FakeServer([(200, {}, good(1), 8.0)]) as fake:
        started = time.time()
        with pytest.raises(ProposerOutOfTime, match="wall budget"):
            proposer(fake.url).propose(dataclasses.replace(context(), deadline=started + 1.5), 1)
        assert time.time() - started < 5.0  # not the 8 s reply, nor the 120 s call timeout
    assert len(fake.requests) == 1


def test_no_retry_starts_past_the_deadline():
    with FakeServer([error(503, "busy")] * 50) as fake:
        p = proposer(fake.url, max_retries=50, backoff_s=0.5)
        started = time.time()
        with pytest.raises(ProposerOutOfTime):
            p.propose(dataclasses.replace(context(), deadline=started + 2.0), 1)
        assert time.time() - started < 4.0
    assert 1 <= len(fake.requests) < 50


def test_a_repair_turn_cut_by_the_deadline_keeps_the_first_replys_specs_and_tokens():
    first = json.dumps({"proposals": json.loads(good(1))["proposals"] + [{"nonsense": 1}]})
    with FakeServer([(200, {}, first), (200, {}, good(1), 8.0)]) as fake:
        props = proposer(fake.url).propose(dataclasses.replace(context(), deadline=time.time() + 1.5), 2)
    assert [p.valid for p in props] == [True, False]
    assert "wall budget ended during the repair turn" in props[1].error
    assert props[0].tokens_in == 120 and props[1].repairs


def test_a_spec_over_the_runs_cap_at_its_training_width_gets_a_repair_turn():
    def spec(channels):
        return json.dumps({"proposals": [SPACE.reference().model_dump() | {"channels": channels}]})

    # at width 0.5 channels=32 has 75,898 params (299,754 at full width), channels=64 299,754
    ctx = dataclasses.replace(context(), cap=SizeCap(max_params=100_000), width_mult=0.5)
    with FakeServer([(200, {}, spec(64)), (200, {}, spec(32))]) as fake:
        props = proposer(fake.url).propose(ctx, 1)
    assert len(fake.requests) == 2
    assert "exceeds the cap of 100,000" in fake.requests[1]["messages"][-1]["content"]
    assert props[0].valid and props[0].spec.channels == 32
    assert "299,754" in props[0].repairs[0]


def test_a_hosted_model_without_its_key_fails_at_start_up(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(ProposerFatal, match="gpt-4o: no API key: set OPENAI_API_KEY"):
        make_llm_proposer("gpt-4o", api_base=None, prompt=None, seed=0)
    # a server given by --api-base needs no provider key check
    with FakeServer() as fake:
        make_llm_proposer("openai/test", api_base=fake.url, prompt=None, seed=0)
