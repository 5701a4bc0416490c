// Entry point of the `openrl` binary: builds the CLI from the subcommand registry.
#include <malloc.h>

#include <CLI/CLI.hpp>

#include "openrl/cli/command.h"

// Tensor buffers of a training step are freed and reallocated every step; by default glibc
// returns them to the OS and page-faults them back in (~10% of a step in bench/). Keep them.
void TuneAllocator() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's maximum on 64-bit
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  mallopt(M_TOP_PAD, 64 << 20);
}

int main(int argc, char** argv) {
  TuneAllocator();
  CLI::App app{"OpenRL: a self-hosted, governed post-training API for large language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("openrl ") + OPENRL_VERSION);
  openrl::cli::InstallAll(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return openrl::cli::ExitCode();
}
