#include "openrl/template/lexer.h"

#include <cmath>
#include <cstring>

#include "openrl/template/pystr.h"

namespace openrl::tmpl {

std::string LocationPrefix(int line, int col) {
  return "line " + std::to_string(line) + ", column " + std::to_string(col) + ": ";
}

namespace {

std::string NormalizeNewlines(std::string_view src) {
  std::string out;
  out.reserve(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] == '\r') {
      out += '\n';
      if (i + 1 < src.size() && src[i + 1] == '\n') ++i;
    } else {
      out += src[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

// Python's `\s` on one UTF-8 sequence starting at s[i]; returns its byte length or 0.
size_t SpaceAt(std::string_view s, size_t i) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return pystr::IsSpace(c) ? 1 : 0;
  size_t n = (c >= 0xF0) ? 4 : (c >= 0xE0) ? 3 : (c >= 0xC0) ? 2 : 1;
  if (i + n > s.size()) return 0;
  auto cps = pystr::Decode(s.substr(i, n));
  return (cps.size() == 1 && pystr::IsSpace(cps[0])) ? n : 0;
}

size_t SkipSpaces(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t n = SpaceAt(s, i);
    if (!n) break;
    i += n;
  }
  return i;
}

bool AllSpaces(std::string_view s) { return !s.empty() && SkipSpaces(s, 0) == s.size(); }

class Lexer {
 public:
  Lexer(std::string src, const LexOptions& opt) : src_(std::move(src)), opt_(opt) {}

  Result<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      size_t start = FindTagStart(pos_);
      if (start == std::string::npos) {
        Emit(Tok::kData, src_.substr(pos_), pos_);
        Advance(src_.size());
        break;
      }
      char kind = src_[start + 1];
      char sign = (start + 2 < src_.size() && (src_[start + 2] == '-' || src_[start + 2] == '+')) ? src_[start + 2] : 0;
      std::string text = src_.substr(pos_, start - pos_);
      if (sign == '-') {
        text = RStrip(text);
      } else if (sign != '+' && opt_.lstrip_blocks && kind != '{') {
        size_t l_pos = text.rfind('\n');
        l_pos = (l_pos == std::string::npos) ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting_) && AllSpaces(std::string_view(text).substr(l_pos))) text.resize(l_pos);
      }
      if (!text.empty()) Emit(Tok::kData, text, pos_);
      Advance(start);
      size_t open_len = 2 + (sign ? 1 : 0);
      Status st;
      if (kind == '#') {
        st = LexComment(open_len);
      } else if (kind == '%' && IsRaw(start + open_len)) {
        st = LexRaw(open_len);
      } else {
        Emit(kind == '{' ? Tok::kVarBegin : Tok::kBlockBegin, src_.substr(start, open_len), start);
        Advance(start + open_len);
        st = LexTag(kind == '{');
      }
      OPENRL_RETURN_IF_ERROR(st);
    }
    Token eof;
    eof.type = Tok::kEof;
    eof.line = line_;
    eof.col = Col(pos_);
    tokens_.push_back(eof);
    return std::move(tokens_);
  }

 private:
  std::string src_;
  LexOptions opt_;
  size_t pos_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
  bool line_starting_ = true;
  std::vector<Token> tokens_;

  int Col(size_t at) const { return static_cast<int>(at - line_start_) + 1; }

  void Advance(size_t to) {
    for (size_t i = pos_; i < to; ++i) {
      if (src_[i] == '\n') {
        ++line_;
        line_start_ = i + 1;
      }
    }
    if (to > pos_) line_starting_ = src_[to - 1] == '\n';
    pos_ = to;
  }

  void Emit(Tok type, std::string text, size_t at) {
    Token t;
    t.type = type;
    t.text = std::move(text);
    t.line = line_;
    t.col = Col(at);
    tokens_.push_back(std::move(t));
  }

  Status Error(size_t at, const std::string& msg) const {
    int line = line_;
    size_t ls = line_start_;
    for (size_t i = pos_; i < at && i < src_.size(); ++i) {
      if (src_[i] == '\n') { ++line; ls = i + 1; }
    }
    return InvalidArgument(LocationPrefix(line, static_cast<int>(at - ls) + 1) + msg);
  }

  static std::string RStrip(const std::string& text) {
    auto cps = pystr::Decode(text);
    size_t e = cps.size();
    while (e > 0 && pystr::IsSpace(cps[e - 1])) --e;
    if (e == cps.size()) return text;
    return pystr::Encode(std::vector<char32_t>(cps.begin(), cps.begin() + static_cast<ptrdiff_t>(e)));
  }

  size_t FindTagStart(size_t from) const {
    for (size_t i = src_.find('{', from); i != std::string::npos; i = src_.find('{', i + 1)) {
      if (i + 1 < src_.size() && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  // Position after a tag end `%}`/`#}` with its whitespace rules; `at` points at the sign or '%'.
  size_t EndOfClose(size_t at, char closer, bool* found) const {
    *found = false;
    char sign = src_[at];
    size_t p = (sign == '-' || sign == '+') ? at + 1 : at;
    if (p + 1 >= src_.size() || src_[p] != closer || src_[p + 1] != '}') return at;
    *found = true;
    p += 2;
    if (sign == '-') return SkipSpaces(src_, p);
    if (sign != '+' && closer != '}' && opt_.trim_blocks && p < src_.size() && src_[p] == '\n') ++p;
    return p;
  }

  Status LexComment(size_t open_len) {
    size_t p = pos_ + open_len;
    while (true) {
      size_t hit = src_.find("#}", p);
      if (hit == std::string::npos) return Error(pos_, "Missing end of comment tag");
      size_t at = (hit > pos_ + open_len && (src_[hit - 1] == '-' || src_[hit - 1] == '+')) ? hit - 1 : hit;
      bool found = false;
      size_t end = EndOfClose(at, '#', &found);
      if (found) {
        Advance(end);
        return Status::Ok();
      }
      p = hit + 1;
    }
  }

  bool IsRaw(size_t p) const {
    p = SkipSpaces(src_, p);
    if (src_.compare(p, 3, "raw") != 0) return false;
    p = SkipSpaces(src_, p + 3);
    return src_.compare(p, 2, "%}") == 0 || src_.compare(p, 3, "-%}") == 0;
  }

  Status LexRaw(size_t open_len) {
    size_t p = SkipSpaces(src_, SkipSpaces(src_, pos_ + open_len) + 3);
    p = (src_[p] == '-') ? SkipSpaces(src_, p + 3) : p + 2;
    size_t body = p;
    for (size_t hit = src_.find("{%", body); hit != std::string::npos; hit = src_.find("{%", hit + 1)) {
      size_t q = hit + 2;
      char sign = (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ? src_[q] : 0;
      if (sign) ++q;
      q = SkipSpaces(src_, q);
      if (src_.compare(q, 6, "endraw") != 0) continue;
      q = SkipSpaces(src_, q + 6);
      bool found = false;
      size_t end = EndOfClose(q, '%', &found);
      if (!found) continue;
      std::string text = src_.substr(body, hit - body);
      if (sign == '-') text = RStrip(text);
      // lstrip_blocks before {% endraw %} follows the same rule as any block tag.
      else if (sign != '+' && opt_.lstrip_blocks) {
        size_t l_pos = text.rfind('\n');
        l_pos = (l_pos == std::string::npos) ? 0 : l_pos + 1;
        if (l_pos > 0 && AllSpaces(std::string_view(text).substr(l_pos))) text.resize(l_pos);
      }
      Advance(body);
      if (!text.empty()) Emit(Tok::kData, text, body);
      Advance(end);
      return Status::Ok();
    }
    return Error(pos_, "Missing end of raw directive");
  }

  Status LexTag(bool is_var);
  Status LexNumber(size_t* p);
  Status LexString(size_t* p);
};

Status Lexer::LexTag(bool is_var) {
  std::vector<char> balance;
  size_t tag_start = pos_;
  while (true) {
    if (pos_ >= src_.size()) return Error(tag_start, std::string("unexpected end of template, expected '") + (is_var ? "}}" : "%}") + "'");
    if (balance.empty()) {
      bool found = false;
      size_t end = is_var ? pos_ : EndOfClose(pos_, '%', &found);
      if (is_var) {
        if (src_.compare(pos_, 3, "-}}") == 0) { found = true; end = SkipSpaces(src_, pos_ + 3); }
        else if (src_.compare(pos_, 2, "}}") == 0) { found = true; end = pos_ + 2; }
      }
      if (found) {
        Emit(is_var ? Tok::kVarEnd : Tok::kBlockEnd, src_.substr(pos_, end - pos_), pos_);
        Advance(end);
        return Status::Ok();
      }
    }
    size_t p = pos_;
    if (size_t n = SkipSpaces(src_, p); n > p) { Advance(n); continue; }
    unsigned char c = static_cast<unsigned char>(src_[p]);
    if (std::isdigit(c)) {
      OPENRL_RETURN_IF_ERROR(LexNumber(&p));
    } else if (std::isalpha(c) || c == '_') {
      while (p < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[p])) || src_[p] == '_')) ++p;
      Emit(Tok::kName, src_.substr(pos_, p - pos_), pos_);
    } else if (c == '\'' || c == '"') {
      OPENRL_RETURN_IF_ERROR(LexString(&p));
    } else {
      static const char* kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
                                   "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"};
      const char* op = nullptr;
      for (const char* o : kOps) {
        if (src_.compare(p, std::strlen(o), o) == 0) { op = o; break; }
      }
      if (!op) return Error(p, std::string("unexpected char '") + src_[p] + "'");
      std::string s = op;
      if (s == "(" || s == "[" || s == "{") balance.push_back(s == "(" ? ')' : s == "[" ? ']' : '}');
      if (s == ")" || s == "]" || s == "}") {
        if (balance.empty()) return Error(p, "unexpected '" + s + "'");
        if (balance.back() != s[0]) return Error(p, "unexpected '" + s + "', expected '" + balance.back() + "'");
        balance.pop_back();
      }
      p += s.size();
      Emit(Tok::kOp, s, pos_);
    }
    Advance(p);
  }
}

Status Lexer::LexNumber(size_t* pp) {
  size_t p = *pp;
  auto digits = [&](size_t q) {
    size_t s = q;
    while (q < src_.size() && (std::isdigit(static_cast<unsigned char>(src_[q])) ||
                               (src_[q] == '_' && q > s && q + 1 < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q + 1])))))
      ++q;
    return q;
  };
  size_t e = digits(p);
  bool is_float = false;
  if (e + 1 < src_.size() && src_[e] == '.' && std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
    e = digits(e + 1);
    is_float = true;
  }
  if (e < src_.size() && (src_[e] == 'e' || src_[e] == 'E')) {
    size_t q = e + 1;
    if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
    if (q < src_.size() && std::isdigit(static_cast<unsigned char>(src_[q]))) {
      e = digits(q);
      is_float = true;
    }
  }
  std::string text;
  for (size_t i = p; i < e; ++i) {
    if (src_[i] != '_') text += src_[i];
  }
  Token t;
  t.line = line_;
  t.col = Col(p);
  t.text = text;
  if (is_float) {
    t.type = Tok::kFloat;
    t.float_value = std::strtod(text.c_str(), nullptr);
  } else {
    t.type = Tok::kInt;
    errno = 0;
    long long v = std::strtoll(text.c_str(), nullptr, 10);
    if (errno == ERANGE) return Error(p, "integer literal too large");
    t.int_value = v;
  }
  tokens_.push_back(std::move(t));
  *pp = e;
  return Status::Ok();
}

// Python 'unicode-escape' decoding of a string literal body.
Status Lexer::LexString(size_t* pp) {
  size_t p = *pp;
  char q = src_[p++];
  std::string out;
  while (true) {
    if (p >= src_.size()) return Error(*pp, "unterminated string literal");
    char c = src_[p];
    if (c == q) { ++p; break; }
    if (c != '\\') { out += c; ++p; continue; }
    if (p + 1 >= src_.size()) return Error(*pp, "unterminated string literal");
    char e = src_[p + 1];
    p += 2;
    auto hex = [&](int n) -> long {
      if (p + static_cast<size_t>(n) > src_.size()) return -1;
      long v = 0;
      for (int i = 0; i < n; ++i) {
        char h = src_[p + static_cast<size_t>(i)];
        if (!std::isxdigit(static_cast<unsigned char>(h))) return -1;
        v = v * 16 + (std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      p += static_cast<size_t>(n);
      return v;
    };
    switch (e) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': case 'u': case 'U': {
        long v = hex(e == 'x' ? 2 : e == 'u' ? 4 : 8);
        if (v < 0 || v > 0x10FFFF) return Error(p, "invalid \\" + std::string(1, e) + " escape in string");
        pystr::AppendUtf8(out, static_cast<char32_t>(v));
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          int v = e - '0';
          for (int i = 0; i < 2 && p < src_.size() && src_[p] >= '0' && src_[p] <= '7'; ++i) v = v * 8 + (src_[p++] - '0');
          pystr::AppendUtf8(out, static_cast<char32_t>(v));
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  Token t;
  t.type = Tok::kString;
  t.text = std::move(out);
  t.line = line_;
  t.col = Col(*pp);
  tokens_.push_back(std::move(t));
  *pp = p;
  return Status::Ok();
}

}  // namespace

Result<std::vector<Token>> Lex(std::string_view source, const LexOptions& options) {
  Lexer lexer(NormalizeNewlines(source), options);
  return lexer.Run();
}

}  // namespace openrl::tmpl
