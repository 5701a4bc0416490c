#include "openrl/engine/sft_data.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <optional>
#include <span>
#include <thread>

namespace openrl::engine {
namespace {

using OJson = nlohmann::ordered_json;

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

size_t CommonPrefix(std::string_view a, std::string_view b) {
  size_t n = std::min(a.size(), b.size()), i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

OJson Prefix(const OJson& messages, size_t n) {
  OJson out = OJson::array();
  for (size_t i = 0; i < n; ++i) out.push_back(messages[i]);
  return out;
}

// Where the template writes message k's content in `full` (the whole conversation rendered),
// found by rendering the conversation with that content replaced by two different one-character
// markers. `end` is known only when the text after the content is the same with the real content
// (a template may render e.g. tool calls differently after empty content).
struct ContentAt {
  size_t begin = 0;
  std::optional<size_t> end;
};

std::optional<ContentAt> LocateContent(const chat::ChatTemplate& tmpl, const OJson& messages, size_t k,
                                       const OJson& tools, const OJson& extra, const std::string& full) {
  auto with_content = [&](const char* marker) {
    OJson m = messages;
    m[k]["content"] = marker;
    return tmpl.Render(m, false, tools, extra);
  };
  Result<std::string> ra = with_content("\x01"), rb = with_content("\x02");
  if (!ra.ok() || !rb.ok()) return std::nullopt;
  const std::string &a = *ra, &b = *rb;
  size_t at = CommonPrefix(a, b);
  if (at >= a.size() || a[at] != '\x01' || a.size() != b.size() ||
      a.compare(at + 1, std::string::npos, b, at + 1) != 0)
    return std::nullopt;  // the content is not written exactly once
  if (full.size() < at || full.compare(0, at, a, 0, at) != 0) return std::nullopt;
  ContentAt out{at, std::nullopt};
  size_t tail = a.size() - at - 1;
  if (full.size() >= at + tail && full.compare(full.size() - tail, tail, a, at + 1, tail) == 0)
    out.end = full.size() - tail;
  return out;
}

// Where every message's content lies in `full`, from one render in which each message's content
// is a distinct marker. When putting the contents back in place of their markers gives `full`
// exactly, each range is known; nullopt when it does not (a template that transforms or branches on
// content, a content that is not a string) or a marker is missing or repeated, and the caller then
// locates contents one message at a time.
std::optional<std::vector<ContentAt>> LocateAllContents(const chat::ChatTemplate& tmpl, const OJson& messages,
                                                        const OJson& tools, const OJson& extra,
                                                        const std::string& full) {
  OJson marked = messages;
  std::vector<std::string> markers, contents;
  for (size_t k = 0; k < messages.size(); ++k) {
    auto c = messages[k].find("content");
    if (c == messages[k].end() || !(c->is_string() || c->is_null())) return std::nullopt;
    markers.push_back("\x01" + std::to_string(k) + "\x02");
    contents.push_back(c->is_string() ? c->get<std::string>() : std::string());
    marked[k]["content"] = markers.back();
  }
  Result<std::string> r = tmpl.Render(marked, false, tools, extra);
  if (!r.ok()) return std::nullopt;
  const std::string& text = *r;
  std::vector<ContentAt> out;
  std::string rebuilt;
  rebuilt.reserve(full.size());
  size_t from = 0;
  for (size_t k = 0; k < markers.size(); ++k) {
    size_t at = text.find(markers[k], from);
    if (at == std::string::npos || text.find(markers[k], at + 1) != std::string::npos) return std::nullopt;
    rebuilt.append(text, from, at - from);
    out.push_back({rebuilt.size(), rebuilt.size() + contents[k].size()});
    rebuilt += contents[k];
    from = at + markers[k].size();
  }
  rebuilt.append(text, from, std::string::npos);
  if (rebuilt != full) return std::nullopt;
  return out;
}

// Position just after the first special token (e.g. <|im_end|>, <|eot_id|>, <end_of_turn>) that
// starts in full[from, limit), or npos.
size_t AfterFirstSpecial(const std::string& full, size_t from, size_t limit,
                         std::span<const std::string> specials) {
  size_t best = std::string::npos, best_end = std::string::npos;
  for (const std::string& s : specials) {
    if (s.empty()) continue;
    size_t p = full.find(s, from);
    if (p != std::string::npos && p < limit && p < best) {
      best = p;
      best_end = p + s.size();
    }
  }
  return best_end;
}

// The trained characters of assistant message i in `full`: from the end of the generation prompt
// that precedes it (so what a template adds before the content, such as an empty reasoning block,
// is trained as the model would write it) through the first special token after its content (the
// end of turn, which teaches the model to stop). Text after that token (a newline, the next
// header) is the next prompt's, not the model's.
// `contents`: every message's content located by LocateAllContents, or null to locate them one at
// a time.
Result<std::pair<size_t, size_t>> AssistantSpan(const chat::ChatTemplate& tmpl, const OJson& messages,
                                                size_t i, const OJson& tools, const OJson& extra,
                                                const std::string& full,
                                                std::span<const std::string> specials,
                                                const std::vector<ContentAt>* contents) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  auto locate = [&](size_t k) -> std::optional<ContentAt> {
    if (contents != nullptr) return (*contents)[k];
    return LocateContent(tmpl, messages, k, tools, extra, full);
  };
  Result<std::string> before = tmpl.Render(Prefix(messages, i), true, tools, extra);
  std::optional<ContentAt> content = locate(i);
  size_t begin;
  if (before.ok() && StartsWith(full, *before) && (!content || before->size() <= content->begin)) {
    begin = before->size();
  } else if (content) {
    begin = content->begin;
  } else {
    return InvalidArgument(where +
                           ": cannot find where this assistant message starts in the rendered conversation "
                           "(the template renders the conversation before it differently on its own); use "
                           "--train-on all");
  }
  size_t scan_from = content && content->end ? *content->end : begin;
  size_t limit = full.size();
  if (i + 1 < messages.size()) {
    if (auto next = locate(i + 1); next && next->begin >= scan_from) limit = next->begin;
  }
  size_t end = AfterFirstSpecial(full, scan_from, limit, specials);
  if (end == std::string::npos) {
    if (!content || !content->end)
      return InvalidArgument(
          where +
          ": cannot find where this assistant message ends in the rendered conversation "
          "(no end-of-turn token after it, and its content cannot be located); use --train-on all");
    end = *content->end;
  }
  if (end <= begin) return InvalidArgument(where + ": this assistant message renders to no text");
  return std::make_pair(begin, end);
}

// tokens and weights of `text`, tokenized piece by piece at the span boundaries.
void AppendPieces(const tokenizer::Tokenizer& tok, const std::string& text,
                  const std::vector<std::pair<size_t, size_t>>& spans, SupervisedExample& ex) {
  size_t pos = 0;
  auto piece = [&](size_t from, size_t to, float w) {
    if (to <= from) return;
    std::vector<int32_t> ids = tok.Encode(std::string_view(text).substr(from, to - from), false);
    ex.tokens.insert(ex.tokens.end(), ids.begin(), ids.end());
    ex.weights.insert(ex.weights.end(), ids.size(), w);
  };
  for (auto [b, e] : spans) {
    piece(pos, b, 0.0f);
    piece(b, e, 1.0f);
    pos = e;
  }
  piece(pos, text.size(), 0.0f);
}

// The field, or null when it is absent or null.
const OJson* Field(const OJson& line, const char* name) {
  auto it = line.find(name);
  return it == line.end() || it->is_null() ? nullptr : &*it;
}

Status NeedTokenizer(const SupervisedFormat& fmt, const char* what, bool chat) {
  if (fmt.tokenizer == nullptr)
    return InvalidArgument(std::string(what) + " needs tokenizer.json in the model directory");
  if (chat && fmt.chat_template == nullptr)
    return InvalidArgument(std::string(what) +
                           " needs a chat template (tokenizer_config.json or chat_template.jinja)");
  return Status::Ok();
}

// Whether the EOS goes after `text`: there is one, and the text does not already end with it.
bool NeedsEos(const SupervisedFormat& fmt, const std::string& text) {
  if (fmt.eos_id < 0) return false;
  std::optional<std::string> eos = fmt.tokenizer->IdToToken(fmt.eos_id);
  return !eos || eos->empty() || text.size() < eos->size() ||
         text.compare(text.size() - eos->size(), eos->size(), *eos) != 0;
}

Result<SupervisedExample> FromTokens(const OJson& line, int64_t vocab_size) {
  SupervisedExample ex;
  OPENRL_ASSIGN_OR_RETURN(ex.tokens, TokenIdList(line, "tokens", vocab_size, ""));
  auto it = line.find("weights");
  if (it == line.end() || it->is_null()) {
    ex.weights.assign(ex.tokens.size(), 1.0f);
    return ex;
  }
  if (!it->is_array() || it->size() != ex.tokens.size())
    return InvalidArgument("field 'weights' must be a list of numbers, one per token (" +
                           std::to_string(ex.tokens.size()) + ")");
  for (size_t k = 0; k < it->size(); ++k) {
    const OJson& w = (*it)[k];
    if (!w.is_number() || !std::isfinite(w.get<double>()) || w.get<double>() < 0)
      return InvalidArgument("weights[" + std::to_string(k) + "] must be a finite number >= 0");
    ex.weights.push_back(w.get<float>());
  }
  return ex;
}

}  // namespace

Result<TrainOn> ParseTrainOn(const std::string& name) {
  if (name == "assistant") return TrainOn::kAssistant;
  if (name == "last-assistant") return TrainOn::kLastAssistant;
  if (name == "all") return TrainOn::kAll;
  return InvalidArgument("train-on: '" + name + "' is not one of assistant, last-assistant, all");
}

Result<RenderedSpans> RenderAssistantSpans(const chat::ChatTemplate& tmpl, const OJson& messages,
                                           const OJson& tools, TrainOn train_on,
                                           std::span<const std::string> special_tokens, const OJson& extra) {
  if (!messages.is_array() || messages.empty())
    return InvalidArgument("field 'messages' must be a non-empty list");
  std::vector<size_t> assistants;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object())
      return InvalidArgument("messages[" + std::to_string(i) + "] must be an object");
    auto role = messages[i].find("role");
    if (role == messages[i].end() || !role->is_string())
      return InvalidArgument("messages[" + std::to_string(i) + "]: field 'role' must be a string");
    if (*role == "assistant") assistants.push_back(i);
  }
  RenderedSpans out;
  OPENRL_ASSIGN_OR_RETURN(out.text, tmpl.Render(messages, false, tools, extra));
  if (train_on == TrainOn::kAll) {
    out.spans.emplace_back(0, out.text.size());
    return out;
  }
  if (assistants.empty()) return InvalidArgument("field 'messages' has no assistant message to train on");
  if (train_on == TrainOn::kLastAssistant) assistants.erase(assistants.begin(), assistants.end() - 1);
  // One render locates every content (else 4 renders per assistant message); a template it cannot
  // serve is handled one message at a time, as before.
  std::optional<std::vector<ContentAt>> contents = LocateAllContents(tmpl, messages, tools, extra, out.text);
  for (size_t i : assistants) {
    OPENRL_ASSIGN_OR_RETURN(auto span, AssistantSpan(tmpl, messages, i, tools, extra, out.text,
                                                     special_tokens, contents ? &*contents : nullptr));
    if (!out.spans.empty() && span.first < out.spans.back().second)
      return InvalidArgument("messages[" + std::to_string(i) +
                             "]: its text overlaps the previous assistant message's");
    out.spans.push_back(span);
  }
  return out;
}

Result<SupervisedExample> ParseSupervisedExample(const OJson& line, const SupervisedFormat& fmt) {
  if (!line.is_object()) return InvalidArgument("expected a JSON object");
  const OJson* tokens = Field(line, "tokens");
  const OJson* text = Field(line, "text");
  const OJson* prompt = Field(line, "prompt");
  const OJson* completion = Field(line, "completion");
  const OJson* messages = Field(line, "messages");
  const OJson* tools = Field(line, "tools");
  const OJson* kwargs = Field(line, "chat_template_kwargs");
  int formats = (tokens != nullptr) + (text != nullptr) + (prompt != nullptr || completion != nullptr) +
                (messages != nullptr);
  if (formats == 0)
    return InvalidArgument("a line needs 'tokens', 'text', 'prompt' and 'completion', or 'messages'");
  if (formats > 1)
    return InvalidArgument(
        "a line takes one of 'tokens', 'text', 'prompt'/'completion' or 'messages', not several");
  if (Field(line, "weights") != nullptr && tokens == nullptr)
    return InvalidArgument("field 'weights' goes with 'tokens' only");
  if (kwargs != nullptr && !kwargs->is_object())
    return InvalidArgument("field 'chat_template_kwargs' must be an object");
  if (tools != nullptr && !tools->is_array()) return InvalidArgument("field 'tools' must be a list");
  const OJson no_tools = nullptr;
  const OJson& tool_list = tools != nullptr ? *tools : no_tools;
  const OJson extra = kwargs != nullptr ? *kwargs : OJson::object();

  SupervisedExample ex;
  if (tokens != nullptr) {
    OPENRL_ASSIGN_OR_RETURN(ex, FromTokens(line, fmt.vocab_size));
  } else if (text != nullptr) {
    if (!text->is_string()) return InvalidArgument("field 'text' must be a string");
    if (Status st = NeedTokenizer(fmt, "'text'", false); !st.ok()) return st;
    ex.tokens = fmt.tokenizer->Encode(text->get<std::string>(), true);
    if (NeedsEos(fmt, text->get<std::string>())) ex.tokens.push_back(fmt.eos_id);
    ex.weights.assign(ex.tokens.size(), 1.0f);
  } else if (prompt != nullptr || completion != nullptr) {
    if (prompt == nullptr || completion == nullptr)
      return InvalidArgument(prompt == nullptr ? "field 'completion' needs a 'prompt'"
                                               : "field 'prompt' needs a 'completion'");
    if (prompt->is_string() && completion->is_string()) {
      if (Status st = NeedTokenizer(fmt, "'prompt'/'completion'", false); !st.ok()) return st;
      ex.tokens = fmt.tokenizer->Encode(prompt->get<std::string>(), true);
      ex.weights.assign(ex.tokens.size(), 0.0f);
      std::vector<int32_t> c = fmt.tokenizer->Encode(completion->get<std::string>(), false);
      if (NeedsEos(fmt, completion->get<std::string>())) c.push_back(fmt.eos_id);
      ex.tokens.insert(ex.tokens.end(), c.begin(), c.end());
      ex.weights.insert(ex.weights.end(), c.size(), 1.0f);
    } else if (prompt->is_array() && completion->is_array()) {
      if (Status st = NeedTokenizer(fmt, "conversational 'prompt'/'completion'", true); !st.ok()) return st;
      if (completion->empty()) return InvalidArgument("field 'completion' is an empty list");
      OJson all = *prompt;
      for (const auto& m : *completion) all.push_back(m);
      OPENRL_ASSIGN_OR_RETURN(std::string head, fmt.chat_template->Render(*prompt, true, tool_list, extra));
      OPENRL_ASSIGN_OR_RETURN(std::string full, fmt.chat_template->Render(all, false, tool_list, extra));
      if (!StartsWith(full, head))
        return InvalidArgument(
            "the chat template renders 'prompt' with its generation prompt differently from the "
            "start of 'prompt' + 'completion'; cannot tell where the completion begins");
      if (full.size() == head.size()) return InvalidArgument("field 'completion' renders to no text");
      AppendPieces(*fmt.tokenizer, full, {{head.size(), full.size()}}, ex);
    } else {
      return InvalidArgument(
          "fields 'prompt' and 'completion' must both be strings or both be lists of messages");
    }
  } else {
    if (Status st = NeedTokenizer(fmt, "'messages'", true); !st.ok()) return st;
    const std::vector<std::string>& specials = fmt.tokenizer->SpecialTokens();
    OPENRL_ASSIGN_OR_RETURN(RenderedSpans r, RenderAssistantSpans(*fmt.chat_template, *messages, tool_list,
                                                                  fmt.train_on, specials, extra));
    AppendPieces(*fmt.tokenizer, r.text, r.spans, ex);
  }
  bool truncated = false;
  if (fmt.max_length > 0 && static_cast<int64_t>(ex.tokens.size()) > fmt.max_length) {
    if (!fmt.truncate)
      return InvalidArgument("the example has " + std::to_string(ex.tokens.size()) +
                             " tokens, more than the " + std::to_string(fmt.max_length) +
                             " of --max-length (default: the model's context); raise it, or --truncate");
    ex.tokens.resize(static_cast<size_t>(fmt.max_length));
    ex.weights.resize(static_cast<size_t>(fmt.max_length));
    truncated = true;
  }
  if (ex.tokens.size() < 2) return InvalidArgument("a training example needs at least 2 tokens");
  for (size_t t = 0; t < ex.tokens.size(); ++t)
    if (ex.tokens[t] < 0 || ex.tokens[t] >= fmt.vocab_size)
      return InvalidArgument("token " + std::to_string(t) + " = " + std::to_string(ex.tokens[t]) +
                             " is outside the vocabulary (size " + std::to_string(fmt.vocab_size) + ")");
  bool trained = false;
  for (size_t t = 1; t < ex.weights.size() && !trained; ++t) trained = ex.weights[t] > 0;
  if (!trained)
    return InvalidArgument(
        truncated ? "no token of this example is trained within its first --max-length tokens"
                  : "no token of this example is trained (every weight after the first token is 0)");
  return ex;
}

Result<std::vector<SupervisedExample>> ReadSupervisedJsonl(const std::string& path,
                                                           const SupervisedFormat& fmt, size_t threads) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot open dataset");
  std::vector<std::pair<int64_t, std::string>> lines;  // (line number, text), blank lines left out
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n)
    if (line.find_first_not_of(" \t\r") != std::string::npos) lines.emplace_back(n, std::move(line));
  if (in.bad()) return DataLoss(path + ": read error");
  if (lines.empty()) return InvalidArgument(path + ": dataset is empty");

  // Rendering and tokenizing dominate; the template and tokenizer are safe to share. Each thread
  // takes the next unread line; after an error, lines past it are skipped and the first bad line in
  // the file is reported, whichever thread met it.
  std::vector<SupervisedExample> rows(lines.size());
  std::atomic<size_t> next{0};
  std::mutex mu;
  size_t first_bad = lines.size();
  Status error = Status::Ok();
  auto work = [&] {
    for (size_t i; (i = next.fetch_add(1)) < lines.size();) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (i > first_bad) return;
      }
      const std::string where = path + ":" + std::to_string(lines[i].first);
      Status st = Status::Ok();
      try {
        Result<SupervisedExample> ex = ParseSupervisedExample(OJson::parse(lines[i].second), fmt);
        if (ex.ok())
          rows[i] = std::move(ex).value();
        else
          st = ex.status().WithContext(where);
      } catch (const OJson::parse_error& e) {
        st = InvalidArgument(where + ": invalid JSON: " + e.what());
      } catch (const std::exception& e) {  // a failure that is not the line's fault (e.g. memory)
        st = Internal(where + ": " + e.what());
      }
      lines[i].second = std::string();  // the text is no longer needed
      if (!st.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (i < first_bad) {
          first_bad = i;
          error = std::move(st);
        }
      }
    }
  };
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = std::min(threads, lines.size());
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  if (!error.ok()) return error;
  return rows;
}

Result<std::vector<SupervisedExample>> PackExamples(std::vector<SupervisedExample> examples,
                                                    int64_t capacity) {
  if (capacity < 1) return InvalidArgument("packing needs a row length of at least 1 token");
  std::vector<size_t> by_length(examples.size());
  std::iota(by_length.begin(), by_length.end(), 0);
  for (size_t i = 0; i < examples.size(); ++i)
    if (static_cast<int64_t>(examples[i].tokens.size()) > capacity)
      return InvalidArgument("example " + std::to_string(i) + " has " +
                             std::to_string(examples[i].tokens.size()) +
                             " tokens, more than a packed row's " + std::to_string(capacity));
  std::stable_sort(by_length.begin(), by_length.end(),
                   [&](size_t a, size_t b) { return examples[a].tokens.size() > examples[b].tokens.size(); });
  std::vector<std::vector<size_t>> rows;               // example indices, in the order they joined
  std::map<int64_t, std::deque<size_t>> rows_by_room;  // free room → rows with it, first come first
  std::vector<int64_t> room;
  for (size_t i : by_length) {
    const int64_t len = static_cast<int64_t>(examples[i].tokens.size());
    if (len == 0) continue;
    size_t row;
    auto fit = rows_by_room.lower_bound(len);
    if (fit != rows_by_room.end()) {
      row = fit->second.front();
      fit->second.pop_front();
      if (fit->second.empty()) rows_by_room.erase(fit);
    } else {
      row = rows.size();
      rows.emplace_back();
      room.push_back(capacity);
    }
    rows[row].push_back(i);
    room[row] -= len;
    if (room[row] > 0) rows_by_room[room[row]].push_back(row);
  }
  std::vector<SupervisedExample> packed;
  packed.reserve(rows.size());
  for (const auto& members : rows) {
    SupervisedExample out;
    for (size_t i : members) {
      SupervisedExample& ex = examples[i];
      out.segments.push_back(static_cast<int64_t>(ex.tokens.size()));
      if (ex.weights.empty()) ex.weights.assign(ex.tokens.size(), 1.0f);
      ex.weights[0] = 0.0f;
      out.tokens.insert(out.tokens.end(), ex.tokens.begin(), ex.tokens.end());
      out.weights.insert(out.weights.end(), ex.weights.begin(), ex.weights.end());
    }
    packed.push_back(std::move(out));
  }
  return packed;
}

}  // namespace openrl::engine
