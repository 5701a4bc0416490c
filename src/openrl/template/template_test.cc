#include "openrl/template/template.h"

#include <gtest/gtest.h>

namespace openrl::tmpl {
namespace {

std::string R(std::string_view text, const Json& ctx = Json::object()) {
  auto t = Template::Parse(text, "t");
  if (!t.ok()) return "PARSE ERROR: " + t.status().message();
  auto out = t->Render(ctx);
  if (!out.ok()) return "ERROR: " + out.status().message();
  return *out;
}

Status RenderStatus(std::string_view text, const Json& ctx = Json::object(), const RenderLimits& limits = {}) {
  auto t = Template::Parse(text, "t");
  if (!t.ok()) return t.status();
  auto out = t->Render(FromJson(ctx), limits);
  return out.ok() ? Status::Ok() : out.status();
}

TEST(TemplateExpr, Literals) {
  EXPECT_EQ(R("{{ 'a\\n\\'b' }}|{{ \"x\\u00e9\" }}|{{ 42 }}|{{ 1_000 }}|{{ 2.5 }}|{{ 1e3 }}"), "a\n'b|xé|42|1000|2.5|1000.0");
  EXPECT_EQ(R("{{ true }} {{ False }} {{ none }} {{ None }}"), "True False None None");
  EXPECT_EQ(R("{{ [1, 'a', none, (1,), (1, 2), {'k': 1.0}] }}"), "[1, 'a', None, (1,), (1, 2), {'k': 1.0}]");
  EXPECT_EQ(R("{{ \"it's\" }}|{{ [\"it's\"] }}"), "it's|[\"it's\"]");
}

TEST(TemplateExpr, ArithmeticFollowsPython) {
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 10 / 4 }} {{ 2 ** 10 }} {{ 1 + 2 * 3 }}"),
            "3 -4 2 -2 2.5 1024 7");
  EXPECT_EQ(R("{{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1e-5 }} {{ 123.0 }} {{ 1/3 }}"),
            "0.30000000000000004 1e+16 1e-05 123.0 0.3333333333333333");
  EXPECT_EQ(R("{{ 'ab' ~ 1 ~ none ~ true }}|{{ 'ab' * 2 }}|{{ [1] + [2] }}"), "ab1NoneTrue|abab|[1, 2]");
  EXPECT_NE(R("{{ 1 / 0 }}").find("division by zero"), std::string::npos);
  EXPECT_NE(R("{{ 9223372036854775807 + 1 }}").find("integer overflow"), std::string::npos);
}

TEST(TemplateExpr, ComparisonsAndLogic) {
  EXPECT_EQ(R("{{ 1 < 2 < 3 }} {{ 1 == 1.0 }} {{ 'a' in 'cat' }} {{ 2 not in [1] }} {{ 'k' in {'k': 1} }}"),
            "True True True True True");
  EXPECT_EQ(R("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not [] }} {{ 'a' if 0 else 'b' }}"), "x y True b");
  EXPECT_EQ(R("[{{ 'a' if false }}]"), "[]");
}

TEST(TemplateExpr, SubscriptsAndSlices) {
  Json ctx = {{"s", "héllo"}, {"xs", {1, 2, 3, 4}}, {"m", {{"content", "c"}}}};
  EXPECT_EQ(R("{{ s[::-1] }}|{{ s[1:] }}|{{ s[-1] }}|{{ xs[1:3] }}|{{ xs[::-2] }}|{{ xs[-1] }}", ctx),
            "olléh|éllo|o|[2, 3]|[4, 2]|4");
  EXPECT_EQ(R("{{ m.content }}{{ m['content'] }}{{ xs.0 }}", ctx), "cc1");
}

TEST(TemplateExpr, UndefinedLikeJinja) {
  Json ctx = {{"d", Json::object()}};
  EXPECT_EQ(R("[{{ nope }}]{{ nope is defined }}{{ d.x is defined }}{{ d.x | length }}{{ nope ~ 'z' }}", ctx),
            "[]FalseFalse0z");
  EXPECT_EQ(R("{% for x in nope %}x{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{{ nope.attr }}"), "ERROR: t: line 1, column 8: 'nope' is undefined");
  EXPECT_NE(R("{{ d.x.y }}", ctx).find("'dict object' has no attribute 'x'"), std::string::npos);
  EXPECT_NE(R("{{ nope + 1 }}").find("'nope' is undefined"), std::string::npos);
}

TEST(TemplateExpr, StringMethods) {
  EXPECT_EQ(R("{{ '  a b \\n'.strip() }}|{{ 'xxaxx'.lstrip('x') }}|{{ 'a,b'.split(',') }}|{{ ' a  b '.split() }}"),
            "a b|axx|['a', 'b']|['a', 'b']");
  EXPECT_EQ(R("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}"),
            "TrueTrueABab");
  EXPECT_EQ(R("{{ 'a-a'.replace('a', 'b') }}|{{ 'hello world'.title() }}|{{ 'x{}{}'.format(1, 2) }}|{{ 'abc'.find('c') }}"),
            "b-b|Hello World|x12|2");
}

TEST(TemplateStmt, WhitespaceControlAndTrimBlocks) {
  EXPECT_EQ(R("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");
  EXPECT_EQ(R("a  {{- ' x ' -}}  b"), "a x b");
  EXPECT_EQ(R("a\n  {%- if true -%}\n  b  {%- endif %}"), "ab");
  EXPECT_EQ(R("x {# comment #}\ny"), "x y");
  EXPECT_EQ(R("  {%+ if true %}x{% endif %}"), "  x");
  EXPECT_EQ(R("{% if true +%}\nx{% endif %}"), "\nx");
  EXPECT_EQ(R("line\n"), "line");  // one trailing newline is dropped
  EXPECT_EQ(R("{% raw %}{{ x }}{% endraw %}"), "{{ x }}");
}

TEST(TemplateStmt, LoopVariables) {
  Json ctx = {{"xs", {"a", "b", "c"}}};
  EXPECT_EQ(R("{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}"
              "{{ loop.revindex0 }};{% endfor %}", ctx),
            "10TrueFalse32;21FalseFalse31;32FalseTrue30;");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.previtem }}>{{ loop.nextitem }}|{% endfor %}", ctx), ">b|a>c|b>|");
  EXPECT_EQ(R("{% for x in xs if x != 'b' %}{{ loop.index }}{{ x }}{% endfor %}", ctx), "1a2c");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}"), "a1b2");
  EXPECT_EQ(R("{% for x in range(10) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}"
              "{{ x }}{% endfor %}"),
            "023");
  EXPECT_EQ(R("{% for x in xs %}{{ loop.cycle('o', 'e') }}{% endfor %}", ctx), "oeo");
}

TEST(TemplateStmt, ScopingAndNamespace) {
  EXPECT_EQ(R("{% set y = 5 %}{% for x in [1, 2] %}{{ y }}{% set y = x %}{{ y }}{% endfor %}{{ y }}"), "51525");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set ns.n = ns.n + x %}{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_NE(R("{% set s = 'x' %}{% set s.a = 1 %}").find("non-namespace"), std::string::npos);
  EXPECT_NE(R("{% set ns = namespace() %}{% set ns._x = 1 %}").find("underscore"), std::string::npos);
  EXPECT_EQ(R("{% set a, b = 1, 2 %}{{ b }}{{ a }}"), "21");
  EXPECT_EQ(R("{% set b | upper %}x{{ 1 }}{% endset %}{{ b }}"), "X1");
  EXPECT_EQ(R("{% with q = 3 %}{{ q }}{% endwith %}[{{ q }}]"), "3[]");
}

TEST(TemplateStmt, MacrosCallAndFilterBlocks) {
  EXPECT_EQ(R("{% macro m(a, b=2) %}{{ a }}-{{ b }}{% endmacro %}{{ m(1) }} {{ m(1, 3) }} {{ m(b=4, a=0) }}"),
            "1-2 1-3 0-4");
  EXPECT_EQ(R("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}in{% endcall %}"), "[in]");
  EXPECT_EQ(R("{% filter upper %}ab{{ 'c' }}{% endfilter %}"), "ABC");
  EXPECT_EQ(R("{% generation %}g{% endgeneration %}"), "g");
  EXPECT_NE(R("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}").find("takes not more than 1"), std::string::npos);
}

TEST(TemplateFilters, Common) {
  Json ctx = {{"xs", {3, 1, 2, 3}}, {"u", {{{"n", "b"}, {"a", true}}, {{"n", "a"}, {"a", false}}}}};
  EXPECT_EQ(R("{{ xs | length }}{{ xs | first }}{{ xs | last }}{{ xs | join('-') }}{{ xs | sort | list }}"
              "{{ xs | unique | list }}{{ xs | reverse | list }}{{ xs | sum }}{{ xs | max }}",
              ctx),
            "4333-1-2-3[1, 2, 3, 3][3, 1, 2][3, 2, 1, 3]93");
  EXPECT_EQ(R("{{ u | map(attribute='n') | join }}|{{ u | selectattr('a') | map(attribute='n') | list }}|"
              "{{ u | rejectattr('a') | list | length }}|{{ u | sort(attribute='n') | map(attribute='n') | list }}|"
              "{{ [1, 2, 3, 4] | select('odd') | list }}|{{ ['a'] | map('upper') | list }}",
              ctx),
            "ba|['b']|1|['a', 'b']|[1, 3]|['A']");
  EXPECT_EQ(R("{{ ' x ' | trim }}|{{ 'ab' | upper }}|{{ 'hello world' | title }}|{{ 'aB' | capitalize }}|"
              "{{ none | default('d') }}|{{ nope | d('d') }}|{{ '' | default('e', true) }}|{{ 1 | string }}"),
            "x|AB|Hello World|Ab|None|d|e|1");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 2} | dictsort }}|{{ {'a': 1} | items | list }}|{{ '3.9' | float }}|{{ '12' | int }}"
              "|{{ 3.9 | int }}|{{ -3 | abs }}|{{ 2.567 | round(2) }}|{{ '%s=%d' | format('a', 1) }}"),
            "[('a', 2), ('b', 1)]|[('a', 1)]|3.9|12|3|3|2.57|a=1");
}

TEST(TemplateFilters, ToJsonMatchesTransformers) {
  Json ctx = {{"x", {{"a", "é\"<"}, {"b", {1, 2.0, nullptr, true}}}}};
  EXPECT_EQ(R("{{ x | tojson }}", ctx), "{\"a\": \"é\\\"<\", \"b\": [1, 2.0, null, true]}");
  EXPECT_EQ(R("{{ x.b | tojson(indent=2) }}", ctx), "[\n  1,\n  2.0,\n  null,\n  true\n]");
  EXPECT_EQ(R("{{ 'é' | tojson(ensure_ascii=true) }}|{{ {} | tojson }}|{{ x.b | tojson(separators=(',', ':')) }}", ctx),
            "\"\\u00e9\"|{}|[1,2.0,null,true]");
  EXPECT_NE(R("{{ nope | tojson }}").find("not JSON serializable"), std::string::npos);
}

TEST(TemplateTests, IsTests) {
  Json ctx = {{"d", {{"k", 1}}}, {"xs", {1}}};
  EXPECT_EQ(R("{{ d is mapping }}{{ xs is mapping }}{{ 'a' is string }}{{ xs is iterable }}{{ 1 is number }}"
              "{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ true is true }}{{ 0 is false }}",
              ctx),
            "TrueFalseTrueTrueTrueTrueTrueTrueTrueFalse");
  EXPECT_EQ(R("{{ 4 is even }}{{ 4 is odd }}{{ 9 is divisibleby 3 }}{{ 3 is eq 3 }}{{ 3 is equalto 4 }}"
              "{{ 2 is lt 3 }}{{ 2 is gt 3 }}{{ none is none }}{{ 1 is not none }}{{ x is undefined }}"),
            "TrueFalseTrueTrueFalseTrueFalseTrueTrueTrue");
}

TEST(TemplateErrors, ParseErrorsNameLineAndColumn) {
  auto t = Template::Parse("a\nb\n{{ x + }}", "tokenizer_config.json: chat_template");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().message(), "tokenizer_config.json: chat_template: line 3, column 8: unexpected 'end of print statement'");
  EXPECT_NE(R("{% if x %}").find("line 1, column 11: unexpected end of template"), std::string::npos);
  EXPECT_NE(R("{{ x }").find("unexpected '}'"), std::string::npos);
  EXPECT_NE(R("{% foo %}").find("unknown tag 'foo'"), std::string::npos);
  EXPECT_NE(R("{{ 'abc }}").find("unterminated string"), std::string::npos);
  EXPECT_NE(R("{# open").find("Missing end of comment tag"), std::string::npos);
}

TEST(TemplateErrors, RaiseExceptionCarriesMessage) {
  Status st = RenderStatus("ok\n{{ raise_exception('Roles must alternate') }}");
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "t: line 2, column 19: Roles must alternate");
}

TEST(TemplateLimits, RunawayTemplatesStop) {
  RenderLimits small;
  small.max_output_bytes = 1000;
  small.max_steps = 100000;
  EXPECT_EQ(RenderStatus("{% for i in range(100000) %}xxxxxxxx{% endfor %}", Json::object(), small).code(),
            ErrorCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                         Json::object(), small).code(),
            ErrorCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{{ 'x' * 100000000000 }}").code(), ErrorCode::kResourceExhausted);
  EXPECT_EQ(RenderStatus("{{ range(1000000) }}").code(), ErrorCode::kInvalidArgument);
  EXPECT_TRUE(Template::Parse(std::string(5000, '('), "t").ok());  // plain text
  EXPECT_FALSE(Template::Parse("{{ " + std::string(5000, '(') + " }}", "t").ok());
  // A namespace holding itself renders and is freed (no crash, no leak under ASan).
  EXPECT_EQ(R("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns.me.me is defined }}"), "True");
}

}  // namespace
}  // namespace openrl::tmpl
