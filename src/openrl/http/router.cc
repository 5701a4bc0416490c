#include "openrl/http/router.h"

#include <algorithm>
#include <stdexcept>

namespace openrl::http {
namespace {

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    out.emplace_back(path.substr(start, slash == std::string_view::npos ? std::string_view::npos
                                                                         : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

bool IsParam(const std::string& seg) {
  return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}';
}
bool IsRest(const std::string& seg) {
  return IsParam(seg) && seg.size() > 5 && seg.compare(seg.size() - 4, 4, "...}") == 0;
}

// Returns a specificity score (higher is better) or -1 when `raw` does not match.
int MatchSegments(const Route& route, const std::vector<std::string>& raw,
                  std::map<std::string, std::string>* params) {
  const auto& pat = route.segments;
  int score = 0;
  for (size_t i = 0; i < pat.size(); ++i) {
    const std::string& p = pat[i];
    if (IsRest(p)) {
      std::string rest;
      for (size_t j = i; j < raw.size(); ++j) {
        if (j > i) rest += '/';
        rest += PercentDecode(raw[j], false);
      }
      (*params)[p.substr(1, p.size() - 5)] = rest;
      return score;
    }
    if (i >= raw.size()) return -1;
    if (IsParam(p)) {
      if (raw[i].empty()) return -1;
      (*params)[p.substr(1, p.size() - 2)] = PercentDecode(raw[i], false);
      score += 1;
    } else {
      if (PercentDecode(raw[i], false) != p) return -1;
      score += 2;
    }
  }
  return raw.size() == pat.size() ? score + 1 : -1;
}

}  // namespace

void Router::Add(std::string_view method, std::string_view pattern, Handler handler,
                 RouteOptions options) {
  AddAsync(
      method, pattern,
      [h = std::move(handler)](const Request& req, Responder respond) { respond(h(req)); },
      options);
}

void Router::AddAsync(std::string_view method, std::string_view pattern, AsyncHandler handler,
                      RouteOptions options) {
  if (pattern.empty() || pattern.front() != '/') {
    throw std::logic_error("http: route pattern must start with '/': " + std::string(pattern));
  }
  auto route = std::make_unique<Route>();
  route->method = std::string(method);
  route->pattern = std::string(pattern);
  route->handler = std::move(handler);
  route->options = options;
  route->segments = SplitPath(pattern);
  for (size_t i = 0; i + 1 < route->segments.size(); ++i) {
    if (IsRest(route->segments[i])) {
      throw std::logic_error("http: '{name...}' must be the last segment: " + std::string(pattern));
    }
  }
  routes_.push_back(std::move(route));
}

Router::Match Router::Find(std::string_view method, std::string_view path) const {
  std::vector<std::string> raw = SplitPath(path);
  std::string_view want = method == "HEAD" ? std::string_view("GET") : method;
  Match best;
  int best_score = -1;
  for (const auto& route : routes_) {
    std::map<std::string, std::string> params;
    int score = MatchSegments(*route, raw, &params);
    if (score < 0) continue;
    if (route->method != want) {
      if (std::find(best.allowed_methods.begin(), best.allowed_methods.end(), route->method) ==
          best.allowed_methods.end()) {
        best.allowed_methods.push_back(route->method);
      }
      continue;
    }
    if (score > best_score) {
      best_score = score;
      best.route = route.get();
      best.params = std::move(params);
    }
  }
  if (best.route) best.allowed_methods.clear();
  return best;
}

}  // namespace openrl::http
