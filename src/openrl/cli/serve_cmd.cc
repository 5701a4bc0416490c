// `openrl serve`: the HTTP server with the built-in routes (/healthz, /readyz, /metrics) plus the
// route groups below. SIGINT/SIGTERM drain in-flight requests, then exit 0.
//
// Extension point: an API surface (Tinker /api/v1, OpenAI /v1, control plane /control/v1) adds
// one entry to RouteGroups() that installs its routes and readiness checks.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "openrl/cli/command.h"
#include "openrl/http/server.h"

namespace openrl::cli {
namespace {

struct ServeFlags {
  std::string host = "127.0.0.1";
  int port = 8080;
  int threads = 0;  // 0: hardware concurrency
  int max_body_mb = 64;
  int shutdown_seconds = 30;
};

struct RouteGroup {
  const char* name;
  std::function<Status(http::Server& server, const ServeFlags& flags)> install;
};

// The route groups `openrl serve` installs, in order.
std::vector<RouteGroup> RouteGroups() {
  return {
      // {"tinker", InstallTinkerRoutes},  // /api/v1/...
  };
}

Status Serve(const ServeFlags& flags) {
  if (flags.port < 0 || flags.port > 65535) {
    return InvalidArgument("--port must be in 0..65535, got " + std::to_string(flags.port));
  }
  if (flags.max_body_mb < 1) return InvalidArgument("--max-body-mb must be at least 1");
  unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  int threads = flags.threads > 0 ? flags.threads : static_cast<int>(hw);
  http::ServerOptions options;
  options.host = flags.host;
  options.port = static_cast<uint16_t>(flags.port);
  options.io_threads = std::max(1, std::min(threads, 4));
  options.worker_threads = std::max(4, threads);
  options.max_body_bytes = static_cast<size_t>(flags.max_body_mb) * 1024 * 1024;

  // Block the signals before any thread starts so only sigwait below receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  http::Server server(options);
  for (const RouteGroup& group : RouteGroups()) {
    Status s = group.install(server, flags);
    if (!s.ok()) return s.WithContext(std::string("installing ") + group.name + " routes");
  }
  OPENRL_RETURN_IF_ERROR(server.Start());
  bool ipv6 = flags.host.find(':') != std::string::npos;
  std::cout << "listening on http://" << (ipv6 ? "[" + flags.host + "]" : flags.host) << ":"
            << server.port() << std::endl;

  int received = 0;
  sigwait(&signals, &received);
  std::cerr << "openrl: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
            << " received, draining connections\n";
  server.Shutdown(std::chrono::seconds(flags.shutdown_seconds));
  return Status::Ok();
}

}  // namespace

OPENRL_CLI_COMMAND("serve", [](CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  auto* sub = app.add_subcommand("serve", "Run the OpenRL HTTP server");
  sub->add_option("--host", flags->host, "Address to listen on")->capture_default_str();
  sub->add_option("--port", flags->port, "Port (0: pick a free one)")->capture_default_str();
  sub->add_option("--threads", flags->threads, "Worker threads (0: one per core)");
  sub->add_option("--max-body-mb", flags->max_body_mb, "Largest request body in MiB")
      ->capture_default_str();
  sub->add_option("--shutdown-seconds", flags->shutdown_seconds,
                  "How long in-flight requests may run after SIGINT/SIGTERM")
      ->capture_default_str();
  sub->callback([flags] {
    Status s = Serve(*flags);
    SetExitCode(s.ok() ? 0 : PrintError(s));
  });
});

}  // namespace openrl::cli
