// Blocking HTTP/1.1 client (Beast) for tests and server-to-server calls: one keep-alive
// connection reused across requests (reopened when the server closed it), a timeout per request,
// and streamed reading of chunked bodies, with a Server-Sent Events parser on top.
// Not thread-safe: use one Client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/http/message.h"

namespace openrl::http {

struct ClientOptions {
  std::chrono::milliseconds timeout{30000};  // per request: connect, send and receive
  size_t max_body_bytes = 256 * 1024 * 1024;
};

struct ClientResponse {
  int status = 0;
  Headers headers;
  std::string body;
  Result<Json> JsonBody() const { return ParseJson(body, "response body"); }
};

struct SseEvent {
  std::string event;  // "" when the event had no "event:" line
  std::string data;   // "data:" lines joined with '\n'
  std::string id;
};

// Incremental SSE parser (the WHATWG event-stream rules: fields, comments, CRLF, LF or CR).
class SseParser {
 public:
  // Feeds bytes; calls `on_event` per complete event. Stops early (returns false) when the
  // callback returns false.
  bool Feed(std::string_view bytes, const std::function<bool(const SseEvent&)>& on_event);

 private:
  bool Line(std::string_view line, const std::function<bool(const SseEvent&)>& on_event);
  std::string line_;
  bool skip_lf_ = false;
  SseEvent current_;
  bool has_data_ = false;
};

class Client {
 public:
  Client(std::string host, uint16_t port, ClientOptions options = {});
  ~Client();
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // Sends a request; `headers` may set Content-Type, Authorization, Content-Encoding, ...
  // Transport failures are UNAVAILABLE (connect, reset) or DEADLINE_EXCEEDED (timeout).
  Result<ClientResponse> Request(std::string_view method, std::string_view target,
                                 std::string_view body = {}, const Headers& headers = {});
  Result<ClientResponse> Get(std::string_view target, const Headers& headers = {});
  // Content-Type defaults to application/json unless `headers` sets one.
  Result<ClientResponse> Post(std::string_view target, std::string_view body,
                              const Headers& headers = {});

  // Streams the response body: `on_data` gets each piece as it arrives (return false to stop
  // and drop the connection). The returned response has status and headers, and an empty body.
  Result<ClientResponse> Stream(std::string_view method, std::string_view target,
                                std::string_view body, const Headers& headers,
                                const std::function<bool(std::string_view)>& on_data);
  // Stream() with the body parsed as Server-Sent Events.
  Result<ClientResponse> StreamEvents(std::string_view method, std::string_view target,
                                      std::string_view body, const Headers& headers,
                                      const std::function<bool(const SseEvent&)>& on_event);

  // Number of TCP connections this client has opened (keep-alive reuse keeps it at 1).
  int connections_opened() const;
  void Disconnect();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace openrl::http
