// HTTP/1.1 server on Boost.Beast/Asio: io threads for sockets, a worker pool for handlers,
// keep-alive with sequential (pipelining-safe) handling per connection, limits on header size,
// body size (per route), read/idle/write timeouts and concurrent connections, chunked streaming
// (SSE), zstd request bodies, RFC 9457 problems, and graceful shutdown.
//
// Built-in routes: GET /healthz, GET /readyz (runs the readiness checks), GET /metrics.
// The server records openrl_http_requests_total{method,route,status},
// openrl_http_request_duration_seconds{method,route} and openrl_http_requests_in_flight.
//
//   http::Server server(options);
//   server.router().Get("/hello/{name}", [](const http::Request& r) { ... });
//   OPENRL_RETURN_IF_ERROR(server.Start());   // binds; server.port() is the real port
//   ...
//   server.Shutdown(std::chrono::seconds(10));
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "openrl/core/metrics.h"
#include "openrl/core/status.h"
#include "openrl/http/router.h"

namespace openrl::http {
namespace internal {
struct ServerImpl;
}

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: an ephemeral port, see Server::port()
  int io_threads = 2;
  int worker_threads = 8;
  size_t max_header_bytes = 16 * 1024;          // beyond: 431
  size_t max_body_bytes = 16 * 1024 * 1024;     // beyond: 413 (RouteOptions may override)
  std::chrono::milliseconds read_timeout{30000};   // to receive a request once it has begun: 408
  std::chrono::milliseconds idle_timeout{60000};   // keep-alive wait for the next request: close
  std::chrono::milliseconds write_timeout{30000};  // to send one response or stream chunk
  size_t max_connections = 1024;                   // beyond: 503 and close
  bool builtin_routes = true;                      // /healthz, /readyz, /metrics
  metrics::Registry* metrics = nullptr;            // nullptr: metrics::DefaultRegistry()
};

// A readiness check returns OK when the dependency it guards can serve.
using ReadinessCheck = std::function<Status()>;

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();  // shuts down with a zero deadline if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Add routes before Start(); the router is read without locks once serving.
  Router& router();
  void AddReadinessCheck(std::string name, ReadinessCheck check);

  // Binds, listens and starts the io and worker threads. Errors name the address.
  Status Start();
  uint16_t port() const;

  // Stops accepting, closes idle connections, lets in-flight requests finish (their responses
  // carry Connection: close) and tells streams to stop; after `deadline` closes what remains.
  // Blocks until the threads have stopped. Safe to call more than once.
  void Shutdown(std::chrono::milliseconds deadline);
  bool draining() const;

 private:
  std::unique_ptr<internal::ServerImpl> impl_;
};

}  // namespace openrl::http
