// `openrl chat-template --model DIR`: renders conversations with the model's chat template,
// as transformers' apply_chat_template(..., tokenize=False) does. JSON lines on stdin:
//   {"messages": [...], "add_generation_prompt"?: bool, "tools"?: [...], <extra vars>...}
//   -> {"text": "..."}
// Every other key (e.g. "enable_thinking") becomes a template variable.
//
// Unlike cli::RunJsonLines this filter parses lines with ordered_json: the template's tojson
// prints objects in the order the caller wrote them (as Python dicts do), so key order must
// survive parsing. Output and error lines have the RunJsonLines format.
#include <iostream>
#include <memory>

#include "openrl/cli/command.h"
#include "openrl/template/chat_template.h"

namespace openrl::cli {
namespace {

using OrderedJson = nlohmann::ordered_json;

Result<Json> RenderOne(const chat::ChatTemplate& ct, const OrderedJson& req) {
  if (!req.contains("messages")) return InvalidArgument("request: missing field 'messages'");
  bool add_generation_prompt = false;
  if (req.contains("add_generation_prompt")) {
    if (!req["add_generation_prompt"].is_boolean()) {
      return InvalidArgument("request: field 'add_generation_prompt' must be boolean");
    }
    add_generation_prompt = req["add_generation_prompt"].get<bool>();
  }
  OrderedJson tools = req.contains("tools") ? req["tools"] : OrderedJson(nullptr);
  OrderedJson extra = OrderedJson::object();
  for (auto it = req.begin(); it != req.end(); ++it) {
    if (it.key() != "messages" && it.key() != "tools" && it.key() != "add_generation_prompt") extra[it.key()] = it.value();
  }
  OPENRL_ASSIGN_OR_RETURN(std::string text, ct.Render(req["messages"], add_generation_prompt, tools, extra));
  return Json{{"text", std::move(text)}};
}

int RunOrderedJsonLines(const chat::ChatTemplate& ct) {
  return RunLines([&](const std::string& line, const std::string& where) -> Result<Json> {
    // ordered_json keeps the request's key order, as Python dicts do for tools | tojson.
    OrderedJson req = OrderedJson::parse(line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded()) return InvalidArgument(where + ": invalid JSON");
    if (!req.is_object()) return InvalidArgument(where + ": expected a JSON object");
    Result<Json> r = RenderOne(ct, req);
    if (!r.ok()) return r.status().WithContext(where);
    return r;
  });
}

void Install(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  auto* sub = app.add_subcommand(
      "chat-template",
      "Render JSON lines {\"messages\", \"add_generation_prompt\"?, \"tools\"?, ...extra vars} to {\"text\"} "
      "with the model's chat template");
  sub->add_option("--model", *model, "directory holding tokenizer_config.json (and/or chat_template.jinja)")
      ->required();
  sub->callback([model] {
    Result<chat::ChatTemplate> ct = chat::ChatTemplate::FromDirectory(*model);
    if (!ct.ok()) {
      SetExitCode(PrintError(ct.status()));
      return;
    }
    SetExitCode(RunOrderedJsonLines(*ct));
  });
}

}  // namespace

OPENRL_CLI_COMMAND("chat-template", Install);

}  // namespace openrl::cli
