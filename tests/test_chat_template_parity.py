"""Chat-template parity: `openrl chat-template` against transformers' apply_chat_template on the
real Qwen3, Llama 3 and Gemma 3 templates, and against jinja2 (transformers' own environment)
on general templates exercising filters, tests, loops and whitespace control."""
import json
import pathlib

import pytest

from conftest import run_jsonl

transformers = pytest.importorskip("transformers")
from transformers.utils.chat_template_utils import _compile_jinja_template  # noqa: E402

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city — «quoted» & <escaped>?",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1.5},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {"type": "function", "function": {"name": "search", "description": "Search the web",
                                                "parameters": {"type": "object", "properties": {}}}}


def _call(args):
    return {"type": "function", "function": {"name": "get_weather", "arguments": args}}


# (name, messages, add_generation_prompt, tools, extra)
CASES = [
    ("single", [{"role": "user", "content": "Hello!"}], True, None, {}),
    ("single_no_gen", [{"role": "user", "content": "Hello!"}], False, None, {}),
    ("system", [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"}], True, None, {}),
    ("multi_turn", [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "  And 3+3?  \n"},
    ], True, None, {}),
    ("multi_turn_end_assistant", [
        {"role": "system", "content": "Be nice."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
    ], False, None, {}),
    ("unicode", [{"role": "user", "content": "Grüße 你好 🙂 \u00a0café\t"}], True, None, {}),
    ("empty_content", [{"role": "user", "content": ""}], True, None, {}),
    ("newlines", [{"role": "user", "content": "\n\nline1\r\nline2\n\n"}], True, None, {}),
    ("jinja_lookalike", [{"role": "user", "content": "{{ 1 + 1 }} {% if x %} {# c #}"}], True, None, {}),
]
TOOL_CASES = [
    ("tools_defined", [{"role": "user", "content": "Weather in Paris?"}], True, [WEATHER_TOOL, SEARCH_TOOL], {}),
    ("tools_with_system", [{"role": "system", "content": "Use tools."},
                           {"role": "user", "content": "Weather?"}], True, [WEATHER_TOOL], {}),
    ("tool_call_dict_args", [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [_call({"city": "Paris", "unit": "celsius", "days": 2})]},
        {"role": "tool", "content": "{\"temp\": 21}"},
        {"role": "tool", "content": "sunny"},
    ], True, [WEATHER_TOOL], {}),
    ("tool_call_string_args", [
        {"role": "user", "content": "Weather in Zürich?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            _call("{\"city\": \"Zürich\"}"), {"name": "search", "arguments": {"q": "zürich ☀"}}]},
        {"role": "tool", "content": "cloudy"},
        {"role": "assistant", "content": "It is cloudy."},
        {"role": "user", "content": "Thanks"},
    ], False, [WEATHER_TOOL, SEARCH_TOOL], {}),
    ("tool_call_none_content", [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [_call({"city": "Oslo"})]},
    ], False, None, {}),
    ("empty_tools_list", [{"role": "user", "content": "Hi"}], True, [], {}),
]
REASONING_CASES = [
    ("reasoning_content", [
        {"role": "user", "content": "Think about 2+2"},
        {"role": "assistant", "content": "4", "reasoning_content": "2 and 2 make 4."},
    ], False, None, {}),
    ("think_in_content", [
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "<think>\nhidden\n</think>\n\nA1"},
        {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "<think>\nmore\n</think>\n\nA2"},
    ], False, None, {}),
    ("reasoning_alias_thinking", [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A", "thinking": "via thinking"},
    ], False, None, {}),
    ("enable_thinking_false", [{"role": "user", "content": "Quick answer"}], True, None, {"enable_thinking": False}),
    ("enable_thinking_true", [{"role": "user", "content": "Slow answer"}], True, None, {"enable_thinking": True}),
    ("tool_response_user_prefix", [
        {"role": "user", "content": "<tool_response>\nx\n</tool_response>"},
        {"role": "assistant", "content": "ok", "reasoning_content": "r"},
    ], True, None, {}),
]
GEMMA_CASES = [
    ("gemma_parts", [{"role": "system", "content": [{"type": "text", "text": "Sys "}]},
                     {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe "}]}],
     True, None, {}),
    ("roles_not_alternating", [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], True, None, {}),
    ("assistant_first", [{"role": "assistant", "content": "a"}], True, None, {}),
]
ALL_CASES = CASES + TOOL_CASES + REASONING_CASES + GEMMA_CASES


def _reference(tokenizer, messages, add_generation_prompt, tools, extra):
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             tools=tools, **extra), None
    except Exception as e:  # the template raised (raise_exception, undefined values, ...)
        return None, e


@pytest.fixture(scope="module")
def tokenizers(real_tokenizer_dirs):
    return {name: transformers.AutoTokenizer.from_pretrained(str(d)) for name, d in real_tokenizer_dirs.items()}


@pytest.mark.parametrize("model", ["qwen3", "llama3", "gemma3"])
def test_real_templates_match_transformers(model, tokenizers, real_tokenizer_dirs, openrl_bin):
    requests = []
    for _, messages, gen, tools, extra in ALL_CASES:
        req = {"messages": messages, "add_generation_prompt": gen, **extra}
        if tools is not None:
            req["tools"] = tools
        requests.append(req)
    got, proc = run_jsonl(openrl_bin, ["chat-template", "--model", str(real_tokenizer_dirs[model])], requests)
    assert len(got) == len(requests), proc.stderr
    compared = errors = 0
    for (name, messages, gen, tools, extra), ours in zip(ALL_CASES, got):
        want, exc = _reference(tokenizers[model], messages, gen, tools, extra)
        if exc is not None:
            assert "error" in ours, f"{model}/{name}: transformers raised {exc!r}, openrl rendered {ours!r}"
            errors += 1
            continue
        assert "error" not in ours, f"{model}/{name}: {ours['error']}"
        assert ours["text"] == want, f"{model}/{name}"
        compared += 1
    assert compared >= 15
    if model == "gemma3":
        assert errors >= 2  # role alternation is enforced with raise_exception


def test_raise_exception_message(real_tokenizer_dirs, openrl_bin):
    got, _ = run_jsonl(openrl_bin, ["chat-template", "--model", str(real_tokenizer_dirs["gemma3"])],
                       [{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}])
    assert got[0]["error"]["code"] == "INVALID_ARGUMENT"
    assert "Conversation roles must alternate user/assistant/user/assistant/..." in got[0]["error"]["message"]


def test_tool_schema_key_order_is_kept(real_tokenizer_dirs, openrl_bin, tokenizers):
    tool = {"type": "function", "function": {"name": "z", "description": "d",
                                             "parameters": {"type": "object", "required": [], "properties": {}}}}
    messages = [{"role": "user", "content": "x"}]
    got, _ = run_jsonl(openrl_bin, ["chat-template", "--model", str(real_tokenizer_dirs["qwen3"])],
                       [{"messages": messages, "tools": [tool], "add_generation_prompt": True}])
    want = tokenizers["qwen3"].apply_chat_template(messages, tools=[tool], tokenize=False, add_generation_prompt=True)
    assert got[0]["text"] == want
    assert '{"type": "function", "function": {"name": "z"' in got[0]["text"]


def test_bad_requests_are_errors_not_crashes(real_tokenizer_dirs, openrl_bin):
    got, proc = run_jsonl(openrl_bin, ["chat-template", "--model", str(real_tokenizer_dirs["qwen3"])],
                          [{"messages": []}, {"nomessages": 1}, {"messages": "hi"}, {"messages": [1]}])
    assert [g["error"]["code"] for g in got] == ["INVALID_ARGUMENT"] * 4
    assert proc.returncode == 1


# ---- general Jinja parity against transformers' own jinja2 environment ----

GENERAL = [
    ("{{ x | tojson }}", {"x": {"b": [1, 2.5, None, True], "a": "é\"\\\n<&>'"}}),
    ("{{ x | tojson(indent=2) }}", {"x": {"a": [1, {"c": 2}], "e": {}, "f": []}}),
    ("{{ x | tojson(sort_keys=true) }}|{{ x | tojson(separators=(',', ':')) }}", {"x": {"b": 1, "a": [1, 2]}}),
    ("{{ x }}|{{ [1, 'a', none, true, 1.0, (1,), {'k': 'v'}] }}|{{ 1e20 }}|{{ 0.1 + 0.2 }}|{{ 10 / 4 }}|{{ 1e-7 }}",
     {"x": {"a": "it's", "b": [None]}}),
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 10 }} {{ 'ab' * 3 }} {{ 3 - 5.5 }} {{ 1 + true }}", {}),
    ("{{ '  hi  ' | trim }}|{{ 'xxhixx' | trim('x') }}|{{ 'hello world' | title }}|{{ 'hELLO' | capitalize }}|"
     "{{ 'a-b c' | upper }}|{{ 'ÀB' | lower }}", {}),
    ("{{ items | length }} {{ items | first }} {{ items | last }} {{ items | join(', ') }} {{ items | reverse | list }}"
     " {{ items | sort | list }} {{ items | unique | list }} {{ 'abc' | reverse }} {{ 'héllo' | length }}",
     {"items": [3, 1, 2, 3]}),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d | dictsort %}{{ k }}{% endfor %}|"
     "{{ d | items | list }}|{{ d.keys() | list }}|{{ d.get('zz', 'dflt') }}|{{ d.get('a') }}",
     {"d": {"b": 2, "a": 1, "C": 3}}),
    ("{{ users | map(attribute='name') | join(',') }}|{{ users | selectattr('admin') | map(attribute='name') | list }}"
     "|{{ users | rejectattr('admin') | list | length }}|{{ [1, 2, 3, 4] | select('even') | list }}"
     "|{{ [1, 2, 3, 4] | reject('odd') | list }}|{{ users | sort(attribute='age') | map(attribute='name') | list }}"
     "|{{ ['a', 'B'] | map('upper') | list }}|{{ users | selectattr('age', 'gt', 30) | list | length }}",
     {"users": [{"name": "ann", "admin": True, "age": 40}, {"name": "bob", "admin": False, "age": 25}]}),
    ("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
     "{{ loop.revindex }}{{ loop.previtem }}{{ loop.nextitem }}{{ loop.cycle('a', 'b') }}|{% else %}empty{% endfor %}",
     {"xs": ["p", "q", "r"]}),
    ("{% for x in xs if x > 1 %}{{ loop.index }}:{{ x }} {% else %}none{% endfor %}|"
     "{% for x in [] %}x{% else %}empty{% endfor %}", {"xs": [1, 2, 3]}),
    ("{% for x in range(10) %}{% if x == 2 %}{% continue %}{% endif %}{% if x > 4 %}{% break %}{% endif %}{{ x }}"
     "{% endfor %}|{{ range(3) | list }}|{{ range(1, 10, 3) | list }}", {}),
    ("{% set ns = namespace(n=0, found=false) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}"
     "{% if x == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.n }} {{ ns.found }}", {}),
    ("{% set y = 5 %}{% for x in [1, 2] %}{{ y }}{% set y = x %}{{ y }}{% endfor %}{{ y }}", {}),
    ("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', '?') }}"
     " {{ greet(name='c', punct='.') }}", {}),
    ("{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}inner{% endcall %}", {}),
    ("{% filter upper %}abc {{ x }}{% endfilter %}|{% set b %}block {{ x }}{% endset %}{{ b }}", {"x": "v"}),
    ("{{ x is defined }} {{ y is defined }} {{ y is undefined }} {{ none is none }} {{ 'a' is string }}"
     " {{ d is mapping }} {{ xs is iterable }} {{ xs is sequence }} {{ 3 is number }} {{ 3 is integer }}"
     " {{ 3.0 is float }} {{ true is boolean }} {{ true is true }} {{ false is false }} {{ 4 is even }} {{ 3 is odd }}"
     " {{ 9 is divisibleby 3 }} {{ 3 is eq 3 }} {{ 3 is ne 3 }} {{ 2 is lt 3 }} {{ 2 is gt 3 }} {{ 'a' in 'cat' }}"
     " {{ 1 not in xs }} {{ 'k' in d }} {{ d is string }} {{ 1 is sameas 1 }}",
     {"x": 1, "d": {"k": 1}, "xs": [1]}),
    ("{{ y }}|{{ y | default('dflt') }}|{{ '' | default('e', true) }}|{{ d.missing }}|{{ d.missing | length }}|"
     "{{ y ~ 'z' }}|{% for a in y %}x{% endfor %}|{{ none }}|{{ true }}|{{ y | string }}", {"d": {}}),
    ("{{ s[1:] }}|{{ s[::-1] }}|{{ s[-2] }}|{{ s[1:4:2] }}|{{ xs[1:] }}|{{ xs[-1] }}|{{ xs[::-2] }}|{{ xs[10:] }}",
     {"s": "héllo", "xs": [1, 2, 3, 4]}),
    ("{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip('\\n ') }}|{{ s.split() }}|{{ 'a,b,,c'.split(',') }}|"
     "{{ 'a b c'.split(' ', 1) }}|{{ s.startswith(' ') }}|{{ s.endswith(('x', '\\n')) }}|{{ 'Ab'.upper() }}|"
     "{{ 'aXbX'.replace('X', '-') }}|{{ 'abcabc'.find('c') }}|{{ 'x{}y{}'.format(1, 'z') }}|{{ 'hi there'.title() }}",
     {"s": "  a b \n"}),
    ("{{ 'a' if x else 'b' }}|{{ 'a' if not x }}|{{ x and 'yes' or 'no' }}|{{ not x }}|{{ 1 < 2 < 3 }}|{{ 1 == 1.0 }}"
     "|{{ [1, 2] == [1, 2] }}|{{ 'a' ~ 1 ~ none }}|{{ (1, 2) }}|{{ -x }}|{{ x | abs }}", {"x": 0}),
    ("{{ '%s is %d' | format('x', 3) }}|{{ 3.7 | int }}|{{ '42' | int }}|{{ 'x' | int(7) }}|{{ '2.5' | float }}|"
     "{{ 2.567 | round(2) }}|{{ 2.5 | round }}|{{ [1, 2, 3] | sum }}|{{ [3, 1, 2] | max }}|{{ [3, 1, 2] | min }}|"
     "{{ 'a b  c' | wordcount }}|{{ 'aXbX' | replace('X', 'y') }}|{{ '<a>' | e }}", {}),
    ("A\n  {% if true %}\n    B\n  {% endif %}\nC\n{# comment #}\nD {{- ' E ' -}} F\n   {%- if true %} G {% endif -%}\n H\n", {}),
    ("{%+ if true %}x{% endif %}\n  {%+ if true %}y{% endif +%}\nz{# c -#}   w", {}),
    ("{% raw %}{{ not evaluated }}{% endraw %}|{{ '{{' }}", {}),
    ("{% set a, b = 1, 2 %}{{ a }}{{ b }}|{% with q = 5 %}{{ q }}{% endwith %}|{{ q }}", {}),
    ("{{ dict(a=1, b='x') }}|{{ {'x': 1, 'y': [2]} }}|{{ {'x': 1}.x }}|{{ {'x': 1}['x'] }}", {}),
    ("{% generation %}gen {{ 1 }}{% endgeneration %}", {}),
    ("{{ raise_exception('boom: ' ~ x) }}", {"x": 1}),
    ("{{ x.y.z }}", {"x": {}}),
    ("{{ x + 1 }}", {}),
    ("{{ [1] + 'a' }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{{ 'a' < 1 }}", {}),
]


def _jinja_reference(template, ctx):
    try:
        return _compile_jinja_template(template).render(**ctx), None
    except Exception as e:
        return None, e


@pytest.mark.parametrize("index", range(len(GENERAL)))
def test_general_jinja_parity(index, tmp_path, openrl_bin):
    template, ctx = GENERAL[index]
    messages = [{"role": "user", "content": "m"}]
    full_ctx = {"messages": messages, "tools": None, "documents": None, "add_generation_prompt": False, **ctx}
    want, exc = _jinja_reference(template, full_ctx)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    got, proc = run_jsonl(openrl_bin, ["chat-template", "--model", str(tmp_path)], [{"messages": messages, **ctx}])
    assert len(got) == 1, proc.stderr
    if exc is not None:
        assert "error" in got[0], f"jinja2 raised {exc!r}; openrl rendered {got[0]!r}"
    else:
        assert got[0].get("text") == want, got[0]


def test_parse_error_names_source_line_and_column(tmp_path, openrl_bin):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "a\nb\n{{ x + }}"}))
    proc_out, proc = run_jsonl(openrl_bin, ["chat-template", "--model", str(tmp_path)], [])
    assert proc.returncode != 0
    assert "tokenizer_config.json: chat_template: line 3, column 8" in proc.stderr


def test_chat_template_jinja_file_takes_priority(tmp_path, openrl_bin):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "config", "eos_token": "</s>"}))
    (tmp_path / "chat_template.jinja").write_text("file {{ messages[0].content }}{{ eos_token }}\n")
    got, _ = run_jsonl(openrl_bin, ["chat-template", "--model", str(tmp_path)],
                       [{"messages": [{"role": "user", "content": "m"}]}])
    assert got[0]["text"] == "file m</s>"
