// `openrl serve`: the HTTP server with the built-in routes (/healthz, /readyz, /metrics) and the
// Tinker training API (/api/v1) over the data directory's metadata store, futures and engine
// scheduler. SIGINT/SIGTERM drain in-flight requests, then exit 0.
//
// Extension point: a further API surface (OpenAI /v1, control plane /control/v1) installs its
// routes next to the Tinker API's in Serve().
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
#include "openrl/cli/data_dir.h"
#include "openrl/cli/training_api.h"
#include "openrl/http/server.h"

namespace openrl::cli {
namespace {

struct ServeFlags {
  std::string host = "127.0.0.1";
  int port = 8080;
  int threads = 0;  // 0: hardware concurrency
  int max_body_mb = 64;
  int shutdown_seconds = 30;
  TrainingApiOptions api;
};

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

  OPENRL_ASSIGN_OR_RETURN(std::unique_ptr<TrainingApi> training, StartTrainingApi(flags.api));
  http::Server server(options);
  training->tinker->Install(server.router());  // /api/v1/...
  OPENRL_RETURN_IF_ERROR(server.Start());
  bool ipv6 = flags.host.find(':') != std::string::npos;
  std::cout << "listening on http://" << (ipv6 ? "[" + flags.host + "]" : flags.host) << ":"
            << server.port() << std::endl;

  int received = 0;
  sigwait(&signals, &received);
  std::cerr << "openrl: " << (received == SIGINT ? "SIGINT" : "SIGTERM")
            << " received, draining connections\n";
  server.Shutdown(std::chrono::seconds(flags.shutdown_seconds));
  training->scheduler->Stop();
  return Status::Ok();
}

}  // namespace

OPENRL_CLI_COMMAND("serve", [](CLI::App& app) {
  auto flags = std::make_shared<ServeFlags>();
  auto* sub = app.add_subcommand("serve", "Run the OpenRL HTTP server");
  sub->add_option("--host", flags->host, "Address to listen on")->capture_default_str();
  sub->add_option("--port", flags->port, "Port (0: pick a free one)")->capture_default_str();
  sub->add_option("--threads", flags->threads, "HTTP worker threads (0: one per core)");
  sub->add_option(
         "--engine-threads", flags->api.engine_threads,
         "Threads of the engine's tensor work (0: $OMP_NUM_THREADS up to one per core, else one per core)")
      ->capture_default_str();
  sub->add_option("--max-body-mb", flags->max_body_mb, "Largest request body in MiB")
      ->capture_default_str();
  sub->add_option("--shutdown-seconds", flags->shutdown_seconds,
                  "How long in-flight requests may run after SIGINT/SIGTERM")
      ->capture_default_str();
  AddDataDirOption(sub, flags->api.data_dir);
  sub->add_option("--base-model", flags->api.base_models,
                  "NAME=PATH: serve a model directory or GGUF file under NAME (repeatable; also `openrl models add`)");
  sub->add_option("--dtype", flags->api.dtype, "Base model weights: float32 | bfloat16 (adapters are float32)")
      ->capture_default_str();
  sub->add_option("--api-key", flags->api.api_key, "Also accept this tml-… key (registered in the store if new)")
      ->envname("OPENRL_API_KEY");
  sub->add_option("--max-tokens-per-pass", flags->api.max_tokens_per_pass,
                  "Packed forward/backward passes hold at most this many (padded) tokens")
      ->capture_default_str();
  sub->add_option("--device", flags->api.device, "Engine device: cpu | cuda | cuda:N")->capture_default_str();
  sub->add_option("--max-resident-runs", flags->api.max_resident_runs,
                  "Training runs whose adapter and optimizer stay in memory; beyond, the least recently used "
                  "are offloaded to <data-dir>/offload")
      ->capture_default_str();
  sub->add_option(
         "--max-kv-cache-mb", flags->api.max_kv_cache_mb,
         "KV cache (keys and values) the running generations of one base model hold at most; a sample "
         "request that would go past it waits for rows to finish, one that needs more alone is refused")
      ->capture_default_str();
  sub->add_option("--session-timeout", flags->api.session_timeout_seconds,
                  "Seconds without a heartbeat after which a client session expires")
      ->capture_default_str();
  sub->add_option("--public-url", flags->api.public_url,
                  "Origin of signed download URLs (e.g. https://openrl.example.com behind a proxy); "
                  "default: the request's Host")
      ->envname("OPENRL_PUBLIC_URL");
  sub->add_option("--download-url-ttl", flags->api.download_url_ttl_seconds,
                  "Seconds a signed download URL (exports, checkpoint archives) stays valid")
      ->capture_default_str();
  sub->callback([flags] {
    Status s = Serve(*flags);
    SetExitCode(s.ok() ? 0 : PrintError(s));
  });
});

}  // namespace openrl::cli
