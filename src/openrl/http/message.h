// HTTP messages as handlers see them: Headers (case-insensitive), Request (method, path, query and
// path parameters, body, remote address) and Response (status, headers, body, or a stream).
// No Boost types here, so route code compiles without Beast.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"

namespace openrl::http {

bool EqualsIgnoreCase(std::string_view a, std::string_view b);

// Ordered header fields; names compare case-insensitively.
class Headers {
 public:
  // First value of `name`, if present.
  std::optional<std::string_view> Get(std::string_view name) const;
  std::string GetOr(std::string_view name, std::string_view fallback) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }
  // Replaces every field named `name`.
  void Set(std::string_view name, std::string_view value);
  void Add(std::string_view name, std::string_view value);
  void Remove(std::string_view name);
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

struct Request {
  std::string method;       // "GET", "POST", ...
  std::string target;       // as sent: "/api/v1/futures/7?wait=1"
  std::string path;         // percent-decoded path without the query: "/api/v1/futures/7"
  std::multimap<std::string, std::string> query;        // percent-decoded, '+' is a space
  std::map<std::string, std::string> path_params;       // {"id": "7"} for "/api/v1/futures/{id}"
  std::string route;        // the matched pattern, "/api/v1/futures/{id}"
  Headers headers;
  std::string body;         // after Content-Encoding was undone
  std::string remote_address;  // "127.0.0.1:54321"

  std::optional<std::string> Query(std::string_view name) const;
  std::string PathParam(std::string_view name) const;
  // Parses the body as a JSON object; errors are INVALID_ARGUMENT naming "request body" and the
  // offset, or the type it has instead.
  Result<Json> JsonBody() const;
};

// A response streamed as chunks (Server-Sent Events or any chunked body). Thread-safe: a producer
// may keep the shared_ptr and write from any thread. Writes block while too much is queued (the
// client reads slowly) and return false once the client has gone or the server is shutting down;
// the producer should then stop. The stream ends on Close() or when the last reference drops.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  // One SSE event: optional "event:" and "id:" lines, one "data:" line per line of `data`.
  bool SendEvent(std::string_view data, std::string_view event = {}, std::string_view id = {});
  // An SSE comment line (": text"), e.g. a heartbeat.
  bool SendComment(std::string_view text);
  // Raw bytes as one chunk, flushed immediately.
  virtual bool Write(std::string_view bytes) = 0;
  virtual void Close() = 0;
  virtual bool IsOpen() const = 0;
};

// Called (on a worker thread) once the response header is sent; may return at once and keep
// the writer, or write until done.
using StreamProducer = std::function<void(std::shared_ptr<StreamWriter>)>;

// Formats one SSE event ("event: e\nid: i\ndata: l1\ndata: l2\n\n").
std::string FormatSseEvent(std::string_view data, std::string_view event = {},
                           std::string_view id = {});

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
  StreamProducer stream;  // when set, `body` is ignored and the response is chunked

  static Response Text(int status, std::string body,
                       std::string_view content_type = "text/plain; charset=utf-8");
  static Response JsonBody(int status, const Json& value);
  // 200 text/event-stream, Cache-Control: no-cache; `producer` writes the events.
  static Response EventStream(StreamProducer producer);
};

// Percent-decoding; `plus_as_space` for query strings. Invalid escapes are kept verbatim.
std::string PercentDecode(std::string_view s, bool plus_as_space);
// Splits "a=1&b=x%20y" into decoded pairs.
std::multimap<std::string, std::string> ParseQuery(std::string_view query);

}  // namespace openrl::http
