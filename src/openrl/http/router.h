// Router: method + path pattern -> handler. Patterns are literal segments and parameters:
// "/api/v1/futures/{id}" (one non-empty segment) or a trailing "{rest...}" (the remainder of the
// path, possibly empty). Literal segments win over parameters. HEAD is served by GET routes.
//
// A Handler runs on the server's worker pool (never an io thread) and returns a Response; an
// AsyncHandler gets a Responder it may call later from any thread (exactly once), so long waits
// need not hold a worker. A handler that throws becomes a 500 problem; the server keeps serving.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "openrl/http/message.h"

namespace openrl::http {

using Handler = std::function<Response(const Request&)>;
using Responder = std::function<void(Response)>;
using AsyncHandler = std::function<void(const Request&, Responder)>;

struct RouteOptions {
  std::optional<size_t> max_body_bytes;  // overrides ServerOptions::max_body_bytes
};

struct Route {
  std::string method;
  std::string pattern;
  AsyncHandler handler;
  RouteOptions options;
  std::vector<std::string> segments;  // pattern split on '/'
};

class Router {
 public:
  void Add(std::string_view method, std::string_view pattern, Handler handler,
           RouteOptions options = {});
  void AddAsync(std::string_view method, std::string_view pattern, AsyncHandler handler,
                RouteOptions options = {});
  void Get(std::string_view pattern, Handler h, RouteOptions o = {}) { Add("GET", pattern, std::move(h), o); }
  void Post(std::string_view pattern, Handler h, RouteOptions o = {}) { Add("POST", pattern, std::move(h), o); }
  void Put(std::string_view pattern, Handler h, RouteOptions o = {}) { Add("PUT", pattern, std::move(h), o); }
  void Delete(std::string_view pattern, Handler h, RouteOptions o = {}) { Add("DELETE", pattern, std::move(h), o); }

  struct Match {
    const Route* route = nullptr;               // null: no route for this method and path
    std::map<std::string, std::string> params;  // decoded path parameters
    std::vector<std::string> allowed_methods;   // when the path matched other methods only (405)
  };
  // `path` is the raw (still percent-encoded) path; each segment is decoded after splitting.
  Match Find(std::string_view method, std::string_view path) const;

 private:
  std::vector<std::unique_ptr<Route>> routes_;
};

}  // namespace openrl::http
