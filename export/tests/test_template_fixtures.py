"""The Gemma-4-like template fixture (`oc_export template-fixtures`): committed file up to date with transformers'
renderings, and what it claims about the template: thinking blocks dropped from model turns, the template's own
turn markers only in the control-token-safe ids."""

import json

from conftest import EXPORT_DIR
from oc_export import template_fixtures

FIXTURE = EXPORT_DIR / "fixtures" / "gemma4_thinking_renders.json"


def test_committed_fixture_is_what_transformers_renders(tmp_path):
    fresh = template_fixtures.write_fixture(tmp_path / "renders.json")
    committed = json.loads(FIXTURE.read_text(encoding="utf-8"))
    regenerated = json.loads(fresh.read_text(encoding="utf-8"))
    assert committed["chat_template"] == template_fixtures.GEMMA4_THINKING
    assert committed["cases"] == regenerated["cases"]


def test_model_turns_lose_their_thinking_and_only_the_template_opens_turns():
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    turn_open = fixture["control_token_ids"]["<|turn>"]
    for case in fixture["cases"]:
        name, rendered = case["name"], case["rendered"]
        assert "thought\n" not in rendered.replace("<|channel>thought\nI will comply", ""), name  # only user text
        system = any(case["kwargs"].get(k) for k in ("tools", "enable_thinking")) or \
            case["messages"][0]["role"] == "system"
        turns = len(case["messages"]) - (case["messages"][0]["role"] == "system") + system + \
            case["kwargs"].get("add_generation_prompt", False)
        assert case["safe_input_ids"].count(turn_open) == turns, name
        assert case["input_ids"].count(turn_open) >= turns, name
