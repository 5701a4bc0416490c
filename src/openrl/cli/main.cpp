// Entry point of the `openrl` binary: builds the CLI from the subcommand registry.
#include <CLI/CLI.hpp>

#include "openrl/cli/command.h"

int main(int argc, char** argv) {
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
