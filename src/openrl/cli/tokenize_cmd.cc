// `openrl tokenize` and `openrl detokenize`: JSON-lines filters over a tokenizer directory
// (tokenizer.json + optional tokenizer_config.json).
//   tokenize:   {"text": "...", "add_special_tokens"?: bool}          -> {"ids": [...]}
//   detokenize: {"ids": [...], "skip_special_tokens"?: bool,
//                "incremental"?: bool}                                  -> {"text": "...",
//                                                                          "pieces"?: [...]}
// "incremental" also streams the ids through IncrementalDecoder and returns its pieces.
//   train-tokenizer --corpus FILE --vocab-size N [--special-token T]... --out DIR
//     learns a byte-level BPE; each corpus line is a document, or {"text": ...} as JSON.
#include <filesystem>
#include <fstream>
#include <memory>

#include "openrl/cli/command.h"
#include "openrl/tokenizer/tokenizer.h"

namespace openrl::cli {
namespace {

using tokenizer::Tokenizer;

Result<Json> TokenizeOne(const Tokenizer& tok, const Json& req, bool default_special) {
  OPENRL_ASSIGN_OR_RETURN(std::string text, GetField<std::string>(req, "text", "request"));
  OPENRL_ASSIGN_OR_RETURN(bool special,
                          GetFieldOr<bool>(req, "add_special_tokens", default_special, "request"));
  return Json{{"ids", tok.Encode(text, special)}};
}

Result<Json> DetokenizeOne(const Tokenizer& tok, const Json& req) {
  // Tokenizer::Decode skips ids it does not know, as the tokenizers library does; a request naming
  // one is refused instead, so a wrong id is not mistaken for an empty piece of text.
  OPENRL_ASSIGN_OR_RETURN(std::vector<int32_t> ids, TokenIdList(req, "ids", 0));
  for (size_t i = 0; i < ids.size(); ++i)
    if (!tok.IdToToken(ids[i]))
      return InvalidArgument("request: ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                             " is not a token of this tokenizer (" + std::to_string(tok.vocab_size()) +
                             " tokens)");
  OPENRL_ASSIGN_OR_RETURN(bool skip, GetFieldOr<bool>(req, "skip_special_tokens", false, "request"));
  OPENRL_ASSIGN_OR_RETURN(bool incremental, GetFieldOr<bool>(req, "incremental", false, "request"));
  Json out = {{"text", tok.Decode(ids, skip)}};
  if (incremental) {
    tokenizer::IncrementalDecoder dec(tok, skip);
    Json pieces = Json::array();
    for (int32_t id : ids) pieces.push_back(dec.Push(id));
    pieces.push_back(dec.Finish());
    out["pieces"] = std::move(pieces);
  }
  return out;
}

void Install(CLI::App& app) {
  auto model = std::make_shared<std::string>();
  auto no_special = std::make_shared<bool>(false);
  auto* tok = app.add_subcommand(
      "tokenize", "Encode JSON lines {\"text\", \"add_special_tokens\"?} to {\"ids\"}");
  tok->add_option("--model", *model, "directory holding tokenizer.json")->required();
  tok->add_flag("--no-special-tokens", *no_special,
                "do not add the post-processor's special tokens unless a request asks");
  tok->callback([model, no_special] {
    auto t = Tokenizer::FromDirectory(*model);
    if (!t.ok()) return SetExitCode(PrintError(t.status()));
    const Tokenizer& tk = **t;
    bool dflt = !*no_special;
    SetExitCode(RunJsonLines([&](const Json& req) { return TokenizeOne(tk, req, dflt); }));
  });

  auto dmodel = std::make_shared<std::string>();
  auto* detok = app.add_subcommand(
      "detokenize",
      "Decode JSON lines {\"ids\", \"skip_special_tokens\"?, \"incremental\"?} to {\"text\"}");
  detok->add_option("--model", *dmodel, "directory holding tokenizer.json")->required();
  detok->callback([dmodel] {
    auto t = Tokenizer::FromDirectory(*dmodel);
    if (!t.ok()) return SetExitCode(PrintError(t.status()));
    const Tokenizer& tk = **t;
    SetExitCode(RunJsonLines([&](const Json& req) { return DetokenizeOne(tk, req); }));
  });
}

Status TrainTokenizer(const std::string& corpus_path, int vocab_size,
                      const std::vector<std::string>& specials, const std::string& out_dir) {
  std::ifstream in(corpus_path, std::ios::binary);
  if (!in) return NotFound(corpus_path + ": cannot open file");
  std::vector<std::string> corpus;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (!line.empty() && line[0] == '{') {
      OPENRL_ASSIGN_OR_RETURN(Json j, ParseJson(line, corpus_path + ":" + std::to_string(line_no)));
      OPENRL_ASSIGN_OR_RETURN(std::string text, GetField<std::string>(
                                                    j, "text", corpus_path + ":" + std::to_string(line_no)));
      corpus.push_back(std::move(text));
    } else {
      corpus.push_back(line);
    }
  }
  OPENRL_ASSIGN_OR_RETURN(std::string json, tokenizer::TrainByteLevelBpe(corpus, vocab_size, specials));
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return InvalidArgument(out_dir + ": cannot create directory: " + ec.message());
  std::string path = (std::filesystem::path(out_dir) / "tokenizer.json").string();
  std::ofstream out(path, std::ios::binary);
  out << json;
  out.close();
  if (!out) return Internal(path + ": write failed");
  return Status::Ok();
}

void InstallTrain(CLI::App& app) {
  struct Opts {
    std::string corpus, out;
    int vocab_size = 0;
    std::vector<std::string> specials;
  };
  auto o = std::make_shared<Opts>();
  auto* sub = app.add_subcommand("train-tokenizer",
                                 "Learn a byte-level BPE tokenizer.json from a text corpus");
  sub->add_option("--corpus", o->corpus, "text file: one document per line, or {\"text\": ...}")
      ->required();
  sub->add_option("--vocab-size", o->vocab_size, "total tokens, special tokens included")->required();
  sub->add_option("--special-token", o->specials, "special token (repeatable); the first is BOS");
  sub->add_option("--out", o->out, "output directory for tokenizer.json")->required();
  sub->callback([o] {
    Status s = TrainTokenizer(o->corpus, o->vocab_size, o->specials, o->out);
    SetExitCode(s.ok() ? 0 : PrintError(s));
  });
}

}  // namespace

OPENRL_CLI_COMMAND("train-tokenizer", InstallTrain);
OPENRL_CLI_COMMAND("tokenize", Install);

}  // namespace openrl::cli
