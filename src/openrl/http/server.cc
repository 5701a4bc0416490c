#include "openrl/http/server.h"

#include "openrl/core/log.h"

#include <boost/asio/post.hpp>

#include "openrl/http/problem.h"
#include "openrl/http/server_internal.h"

namespace openrl::http {
namespace internal {

ServerImpl::ServerImpl(ServerOptions o) : options(std::move(o)) {
  metrics::Registry& reg = options.metrics ? *options.metrics : metrics::DefaultRegistry();
  requests_total = &reg.Counter("openrl_http_requests_total",
                                "HTTP requests completed, by method, route pattern and status.",
                                {"method", "route", "status"});
  request_seconds = &reg.Histogram("openrl_http_request_duration_seconds",
                                   "Time from the start of a request to its last response byte.",
                                   {"method", "route"}, metrics::DefaultLatencyBuckets());
  in_flight = &reg.Gauge("openrl_http_requests_in_flight", "HTTP requests being handled.").Get();
  open_connections = &reg.Gauge("openrl_http_open_connections", "Open HTTP connections.").Get();
}

void ServerImpl::DoAccept() {
  acceptor->async_accept(net::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec == net::error::operation_aborted || !acceptor->is_open()) return;
      OPENRL_LOG_WARN("http: accept failed: {}", ec.message());
      return DoAccept();
    }
    std::shared_ptr<Connection> conn;
    {
      // Checked under the lock Shutdown takes for its snapshot: a connection is either seen
      // by Shutdown or refused here.
      std::lock_guard lock(conns_mu);
      if (draining) {
        beast::error_code ignored;
        socket.close(ignored);
        return;
      }
      bool reject = connections.size() >= options.max_connections;
      conn = std::make_shared<Connection>(std::move(socket), this, reject);
      connections.emplace(conn.get(), conn);
    }
    open_connections->Inc();
    conn->Start();
    DoAccept();
  });
}

void ServerImpl::Remove(Connection* c) {
  std::shared_ptr<Connection> keep;  // destroyed outside the lock
  {
    std::lock_guard lock(conns_mu);
    auto it = connections.find(c);
    if (it == connections.end()) return;
    keep = std::move(it->second);
    connections.erase(it);
  }
  open_connections->Dec();
  conns_cv.notify_all();
}

void ServerImpl::InstallBuiltinRoutes() {
  router.Get("/healthz", [](const Request&) {
    return Response::JsonBody(200, {{"status", "ok"}});
  });
  router.Get("/readyz", [this](const Request& req) {
    if (draining) {
      return ProblemResponse(503, "not-ready", "the server is shutting down", req.path);
    }
    std::vector<std::pair<std::string, ReadinessCheck>> copy;
    {
      std::lock_guard lock(checks_mu);
      copy = checks;
    }
    Json results = Json::object();
    std::string failed;
    for (const auto& [name, check] : copy) {
      Status s = check();
      results[name] = s.ok() ? "ok" : s.ToString();
      if (!s.ok()) failed += (failed.empty() ? "" : "; ") + name + ": " + s.ToString();
    }
    if (!failed.empty()) {
      return ProblemResponse(503, "not-ready", "readiness check failed: " + failed, req.path,
                             {{"checks", results}});
    }
    return Response::JsonBody(200, {{"status", "ready"}, {"checks", results}});
  });
  router.Get("/metrics", [this](const Request&) {
    metrics::Registry& reg = options.metrics ? *options.metrics : metrics::DefaultRegistry();
    return Response::Text(200, reg.Expose(), metrics::kExpositionContentType);
  });
}

}  // namespace internal

Server::Server(ServerOptions options)
    : impl_(std::make_unique<internal::ServerImpl>(std::move(options))) {}

Server::~Server() {
  if (impl_) Shutdown(std::chrono::milliseconds(0));
}

Router& Server::router() { return impl_->router; }

void Server::AddReadinessCheck(std::string name, ReadinessCheck check) {
  std::lock_guard lock(impl_->checks_mu);
  impl_->checks.emplace_back(std::move(name), std::move(check));
}

uint16_t Server::port() const { return impl_->port; }
bool Server::draining() const { return impl_->draining; }

namespace {

Result<internal::tcp::endpoint> ResolveListen(internal::net::io_context& ioc,
                                              const std::string& host, uint16_t port) {
  using internal::tcp;
  boost::system::error_code ec;
  auto addr = internal::net::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(addr, port);
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return InvalidArgument("http: cannot resolve listen host '" + host + "': " + ec.message());
  }
  return results.begin()->endpoint();
}

}  // namespace

Status Server::Start() {
  auto& d = *impl_;
  if (d.started) return FailedPrecondition("http: server already started");
  if (d.options.io_threads < 1 || d.options.worker_threads < 1) {
    return InvalidArgument("http: io_threads and worker_threads must be at least 1");
  }
  OPENRL_ASSIGN_OR_RETURN(auto endpoint, ResolveListen(d.ioc, d.options.host, d.options.port));
  std::string where = d.options.host + ":" + std::to_string(d.options.port);
  boost::system::error_code ec;
  d.acceptor.emplace(internal::net::make_strand(d.ioc));
  d.acceptor->open(endpoint.protocol(), ec);
  if (!ec) d.acceptor->set_option(internal::net::socket_base::reuse_address(true), ec);
  if (!ec) d.acceptor->bind(endpoint, ec);
  if (!ec) d.acceptor->listen(internal::net::socket_base::max_listen_connections, ec);
  if (ec) {
    d.acceptor.reset();
    return Unavailable("http: cannot listen on " + where + ": " + ec.message());
  }
  d.port = d.acceptor->local_endpoint().port();
  if (d.options.builtin_routes) d.InstallBuiltinRoutes();
  d.started = true;
  d.work.emplace(d.ioc.get_executor());
  d.workers = std::make_unique<internal::net::thread_pool>(d.options.worker_threads);
  d.DoAccept();
  for (int i = 0; i < d.options.io_threads; ++i) {
    d.io_threads.emplace_back([&d] {
      while (true) {
        try {
          d.ioc.run();
          return;
        } catch (const std::exception& e) {  // a bug in a completion handler: log, keep serving
          OPENRL_LOG_ERROR("http: io thread caught: {}", e.what());
        }
      }
    });
  }
  return Status::Ok();
}

void Server::Shutdown(std::chrono::milliseconds deadline) {
  auto& d = *impl_;
  if (!d.started || d.stopped) return;
  d.stopped = true;
  d.draining = true;
  auto until = std::chrono::steady_clock::now() + deadline;
  internal::net::post(d.acceptor->get_executor(), [&d] {
    boost::system::error_code ignored;
    d.acceptor->close(ignored);
  });
  auto snapshot = [&d] {
    std::vector<std::shared_ptr<internal::Connection>> out;
    std::lock_guard lock(d.conns_mu);
    for (auto& [ptr, conn] : d.connections) out.push_back(conn);
    return out;
  };
  for (auto& c : snapshot()) c->OnShutdown();
  {
    std::unique_lock lock(d.conns_mu);
    d.conns_cv.wait_until(lock, until, [&d] { return d.connections.empty(); });
  }
  auto remaining = snapshot();
  if (!remaining.empty()) {
    if (deadline.count() > 0) {
      OPENRL_LOG_WARN("http: shutdown deadline passed; closing {} connection(s)", remaining.size());
    }
    for (auto& c : remaining) c->ForceClose();
    std::unique_lock lock(d.conns_mu);
    d.conns_cv.wait_for(lock, std::chrono::seconds(1), [&d] { return d.connections.empty(); });
  }
  d.work.reset();
  d.ioc.stop();
  for (auto& t : d.io_threads) t.join();
  d.io_threads.clear();
  // Wake producers still blocked on a stream so the worker pool can finish.
  for (auto& c : snapshot()) c->AbortStreamNow();
  d.workers->join();
  std::lock_guard lock(d.conns_mu);
  d.connections.clear();
}

}  // namespace openrl::http
