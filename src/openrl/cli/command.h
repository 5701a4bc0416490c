// Subcommand registry of the `openrl` CLI. Each cli/*_cmd.cc registers its subcommands with
// OPENRL_CLI_COMMAND; main.cpp builds the CLI11 app from the registry.
//
// A subcommand's callback returns the process exit code (0 on success). Errors are printed
// with PrintError so every command reports them the same way.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

#include "openrl/core/json.h"
#include "openrl/core/status.h"

namespace openrl::cli {

// Adds one or more subcommands to `app`. Store the exit code with SetExitCode.
using CommandInstaller = std::function<void(CLI::App& app)>;

bool RegisterCommand(const char* name, CommandInstaller installer);
void InstallAll(CLI::App& app);
void SetExitCode(int code);
int ExitCode();

// "openrl: <message>" on stderr; returns 1 (or 2 for INVALID_ARGUMENT) for use as an exit code.
int PrintError(const Status& status);

// Drives a JSON-lines filter: each stdin line is parsed as a JSON object and handed to `fn`; its
// result (or {"error": {...}}) is written as one line to stdout and flushed. Bad lines never stop
// the stream; the exit code is 1 if any line failed.
int RunJsonLines(const std::function<Result<Json>(const Json& request)>& fn);
// The same loop for commands that parse each line their own way (e.g. keeping key order):
// `fn` gets the raw line and "stdin line N" for error messages.
int RunLines(const std::function<Result<Json>(const std::string& line, const std::string& where)>& fn);

}  // namespace openrl::cli

#define OPENRL_CLI_COMMAND(name, installer) \
  static const bool OPENRL_CONCAT_(openrl_cli_registered_, __LINE__) = \
      ::openrl::cli::RegisterCommand(name, installer)
