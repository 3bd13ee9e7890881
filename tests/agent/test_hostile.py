"""Hostile replies and shared templates (issue 15): deep nesting, huge replies, echoed keys,
templates that reach for Python internals or name attributes that do not exist."""

import json

import pytest

from agent.prompts import PromptSet, PromptTemplateError, prompt_context, sample_contexts
from agent.proposers.llm import MAX_QUOTED_REPLY, MAX_STORED_REPLY, stored_reply
from agent.proposers.parse import MAX_DEPTH, parse_reply
from agent.redact import redact, redact_tree
from spaces import TaskInfo, get_space
from tests.agent.fake_openai_server import FakeServer
from tests.agent.test_llm_proposer import SECRET, context, good, proposer

SPACE = get_space("nb201")
TASK = TaskInfo((1, 40), 10)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)


# ---- 1. nesting depth -----------------------------------------------------------------------
@pytest.mark.parametrize("reply", ["[" * 100_000, "{\"a\":" * 30_000 + "1" + "}" * 30_000,
                                   '{"proposals": [' + "[" * 5_000 + "]" * 5_000 + "]}",
                                   'here: ["]]]]]]]]", ' + "[" * 60_000])
def test_a_deeply_nested_reply_is_a_value_error_not_a_recursion_error(reply):
    with pytest.raises(ValueError, match="nest"):
        parse_reply(reply, SPACE, TASK)


def test_nesting_within_the_bound_still_parses():
    spec = json.loads(good(1))["proposals"][0]
    wrapped = {"proposals": [spec], "note": [[[["fine"]]]]}
    assert parse_reply(json.dumps(wrapped), SPACE, TASK)[0].spec is not None
    assert MAX_DEPTH >= 8


def test_a_deeply_nested_reply_becomes_rejected_proposals_and_the_proposer_goes_on():
    with FakeServer([(200, {}, "[" * 100_000), (200, {}, "{" * 100_000), (200, {}, good(1))]) as fake:
        p = proposer(fake.url)
        props = p.propose(context(), 2)
        assert [x.valid for x in props] == [False, False]
        assert "nests brackets" in props[0].repairs[0] and "still invalid" in props[0].error
        assert p.propose(context(), 1)[0].valid  # the next call works as usual


# ---- 3. redaction ---------------------------------------------------------------------------
def test_redact_hides_env_keys_key_shapes_and_url_credentials(monkeypatch):
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok-0123456789abcdef")
    text = ("auth: Bearer abc.DEF-123_xyz, key sk-proj-AAAABBBBCCCCDDDD, env tok-0123456789abcdef, "
            f"{SECRET}, url http://alice:pw-9999@example.com:8080/v1?api_key=QQQ&x=1#frag")
    out = redact(text)
    for secret in ("abc.DEF-123_xyz", "sk-proj-AAAABBBBCCCCDDDD", "tok-0123456789abcdef", SECRET,
                   "alice", "pw-9999", "QQQ"):
        assert secret not in out, secret
    assert "example.com:8080/v1?api_key=[redacted]&x=[redacted]#frag" in out
    assert redact("Authorization: Basic dXNlcjpwYXNzd29yZA==") == "Authorization: [redacted]"
    assert redact('{"api_key": "abcd1234efgh"}') == '{"api_key": "[redacted]"}'
    prose = "monkey-business, a basic building block, a Bearer bond, and sk-local stay"
    assert redact(prose) == prose
    assert redact_tree({"a": [("http://u:p@h/x",)], "n": 1.5}) == {"a": [["http://[redacted]@h/x"]],
                                                                   "n": 1.5}


def test_a_reply_that_echoes_the_authorization_header_is_redacted_everywhere():
    def echo(body, headers):
        return f"I was sent {headers.get('Authorization')} and {json.dumps(headers)}"

    with FakeServer([(200, {}, echo), (200, {}, echo)]) as fake:
        props = proposer(fake.url).propose(context(), 1)
    assert fake.headers_seen[0]["Authorization"] == f"Bearer {SECRET}"  # the key was sent …
    repair_request = json.dumps(fake.requests[1])
    assert SECRET not in repair_request  # … but is not sent back inside the repair turn
    for p in props:
        assert SECRET not in p.raw + (p.error or "") + "".join(p.repairs)
        assert "[redacted]" in p.raw


# ---- 5. bounded replies ---------------------------------------------------------------------
@pytest.mark.parametrize("size", [150_000, 1_000_000])
def test_an_oversized_reply_is_stored_bounded_and_quoted_bounded(size):
    junk = ("x" * (size - 10)) + " not json"
    with FakeServer([(200, {}, junk), (200, {}, junk)]) as fake:
        props = proposer(fake.url).propose(context(), 4)
    assert len(props) == 4 and not any(p.valid for p in props)
    for p in props:
        assert len(p.raw) < MAX_STORED_REPLY + 200, len(p.raw)
        assert f"{size - 1:,}" in p.raw and "sha256" in p.raw
    first, repair = (len(json.dumps(r)) for r in fake.requests)
    assert repair - first < 2 * MAX_QUOTED_REPLY + 3_000, (first, repair)  # not the 1 MB reply


def test_stored_reply_keeps_short_replies_and_fingerprints_long_ones():
    assert stored_reply("short") == "short"
    a, b = stored_reply("a" * 20_000 + "1"), stored_reply("a" * 20_000 + "2")
    assert a[:MAX_STORED_REPLY] == b[:MAX_STORED_REPLY] and a != b  # same prefix, other sha256


# ---- 9. the value that was sent is quoted -----------------------------------------------------
def test_a_validation_error_quotes_the_value_that_was_sent():
    item = parse_reply(good(1, edge_1_0="conv_7x7_magic"), SPACE, TASK)[0]
    assert item.spec is None and "edge_1_0" in item.error and "'conv_7x7_magic'" in item.error
    with FakeServer([(200, {}, good(1, edge_1_0="conv_7x7_magic")), (200, {}, good(1))]) as fake:
        props = proposer(fake.url).propose(context(), 1)
    assert "'conv_7x7_magic'" in fake.requests[1]["messages"][-1]["content"]
    assert "'conv_7x7_magic'" in props[0].repairs[0]


def test_a_quoted_value_is_bounded():
    item = parse_reply(good(1, edge_1_0="z" * 5_000), SPACE, TASK)[0]
    assert item.error.count("z") < 200


def test_a_bad_flag_rung_or_log_line_is_one_line_that_quotes_its_value_bounded():
    from agent.cli import UsageError, checked_config
    from agent.events import LogInconsistent, parse_event
    from evaluators.fidelity import parse_schedule

    with pytest.raises(UsageError, match=r"^--eta 20: Input should be less than or equal to 16$"):
        checked_config({"eta": 20})
    with pytest.raises(ValueError, match=r"^rung 'low': batch_size 0: Input should be greater"):
        parse_schedule("low", 0)
    with pytest.raises(LogInconsistent) as err:
        parse_event({"event": "proposal", "time": "2026-11-24T08:06:48.456Z", "iteration": "x" * 5_000,
                     "proposal_id": "it1-p1"})
    line = str(err.value)
    assert "\n" not in line and line.startswith("event 'proposal' of 'it1-p1': proposal.iteration")
    assert "'xxxx" in line and line.count("x") < 200  # quoted, bounded


# ---- 4. the template sandbox ----------------------------------------------------------------
@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
    "{{ task|attr('__class__') }}",
    "{{ task['__class__'] }}",
    "{% if iteration > 10**6 %}{{ k.__class__.__subclasses__() }}{% endif %}",  # a branch never taken
])
def test_a_template_reaching_for_internals_fails_at_start_up_with_one_line(tmp_path, template):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.j2"
    path.write_text(template.replace("{marker}", str(marker)))
    with pytest.raises(PromptTemplateError) as err:
        PromptSet(str(path))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "internals" in message
    assert not marker.exists()


def test_the_sandbox_refuses_mutation_and_internals_at_render_time_too(tmp_path):
    path = tmp_path / "mutate.j2"
    path.write_text("{{ budget_left.update({'iterations': 1000}) }}")
    with pytest.raises(PromptTemplateError, match="sandbox"):
        PromptSet(str(path))
    prompts = PromptSet()
    prompts.templates["propose.j2"] = prompts.env.from_string("{{ k.real.__class__ }}")
    with pytest.raises(PromptTemplateError, match="sandbox"):
        prompts.render("propose.j2", {"k": 2})


# ---- 6. attributes checked against a full sample context ------------------------------------
@pytest.mark.parametrize("template, needle", [
    ("{{ baseline.nosuch_field }}", "nosuch_field"),
    ("{% for h in last_rejected %}{{ h.spec_jsn }}{% endfor %}", "spec_jsn"),
    ("{{ task.nam }}", "nam"),
    ("{{ budget_left.wall_s }}", "wall_s"),  # absent from runs without a wall budget
    ("{{ baseline.E|round(3) }} {% for h in last_rejected %}{{ h.E|round(3) }}{% endfor %}",
     "round"),  # a rejected proposal has no E
])
def test_a_template_naming_an_unknown_attribute_fails_at_start_up(tmp_path, template, needle):
    path = tmp_path / "t.j2"
    path.write_text(template)
    with pytest.raises(PromptTemplateError, match=needle) as err:
        PromptSet(str(path))
    assert "\n" not in str(err.value)


def test_every_documented_attribute_passes_the_start_up_check(tmp_path):
    path = tmp_path / "all.j2"
    path.write_text(
        "{{ space_name }}{{ space_description }}{{ spec_schema }}{{ task.name }}"
        "{{ task.input_shape }}{{ task.num_classes }}{{ rule }}{{ M }}{{ k }}{{ iteration }}"
        "{{ baseline.spec }}{{ baseline.spec_json }}{{ baseline.E }}{{ baseline.sigma2 }}"
        "{{ baseline.rho }}{{ baseline.predicted_ens_error }}{{ baseline.explanation }}"
        "{{ baseline.proposal_id }}{{ baseline.accepted }}"
        "{% for h in best_accepted + last_rejected %}{{ h.spec_json }}{{ h.E }}{{ h.explanation }}"
        "{% endfor %}{{ budget_left.iterations }}{{ budget_left.get('wall_s', 'none') }}")
    assert PromptSet(str(path)).notes == []


def test_the_sample_context_has_exactly_the_keys_a_run_gives():
    real = prompt_context(context(), 2)
    for sample in sample_contexts("propose.j2"):
        assert set(sample) == set(real)
        assert set(sample["baseline"]) == set(real["baseline"])
        assert set(sample["task"]) == set(real["task"])
    full = sample_contexts("propose.j2")[0]
    assert full["best_accepted"] and full["last_rejected"]
    assert set(full["best_accepted"][0]) == set(real["baseline"])
    assert {"error", "reply"} <= set(sample_contexts("repair.j2")[0])


def test_an_empty_template_is_accepted_with_a_note(tmp_path):
    (tmp_path / "empty.j2").write_text("  \n")
    notes = PromptSet(str(tmp_path / "empty.j2")).notes
    assert len(notes) == 1 and "empty" in notes[0] and "empty.j2" in notes[0]


def test_an_oversized_or_binary_template_is_one_line_naming_it(tmp_path):
    from agent.prompts import MAX_TEMPLATE_BYTES

    huge = tmp_path / "huge.j2"
    huge.write_text("x" * (MAX_TEMPLATE_BYTES + 1))
    with pytest.raises(PromptTemplateError) as err:
        PromptSet(str(huge))
    assert str(err.value) == f"prompt template {huge}: 100,001 bytes; a template has at most 100,000"
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "system.j2").write_bytes(b"\xaf\x00binary")
    with pytest.raises(PromptTemplateError) as err:
        PromptSet(str(tmp_path / "dir"))
    assert str(err.value) == (f"prompt template {tmp_path / 'dir' / 'system.j2'}: not UTF-8 text "
                              "(invalid start byte at byte 0)")


def test_the_default_templates_render_in_the_sandbox():
    prompts = PromptSet()
    assert type(prompts.env).__name__ == "ImmutableSandboxedEnvironment"
    text = prompts.render("propose.j2", prompt_context(context(), 2))
    assert "Propose 2 new" in text and "mnist1d" in text
