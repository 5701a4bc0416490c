#include "openrl/cli/command.h"

#include <iostream>
#include <map>
#include <string>

namespace openrl::cli {
namespace {

std::map<std::string, CommandInstaller>& Registry() {
  static std::map<std::string, CommandInstaller> registry;
  return registry;
}
int g_exit_code = 0;

}  // namespace

bool RegisterCommand(const char* name, CommandInstaller installer) {
  Registry().emplace(name, std::move(installer));
  return true;
}

void InstallAll(CLI::App& app) {
  for (auto& [name, installer] : Registry()) installer(app);
}

void SetExitCode(int code) { g_exit_code = code; }
int ExitCode() { return g_exit_code; }

int PrintError(const Status& status) {
  std::cerr << "openrl: " << status.ToString() << "\n";
  return status.code() == ErrorCode::kInvalidArgument ? 2 : 1;
}

int RunLines(const std::function<Result<Json>(const std::string& line, const std::string& where)>& fn) {
  std::ios::sync_with_stdio(false);
  std::string line;
  int64_t line_no = 0;
  int rc = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = "stdin line " + std::to_string(line_no);
    Result<Json> out = fn(line, where);
    if (out.ok()) {
      std::cout << out->dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
    } else {
      rc = 1;
      Json err = {{"error", {{"code", std::string(ErrorCodeName(out.status().code()))},
                             {"message", out.status().message()}}}};
      std::cout << err.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
    }
    std::cout.flush();
  }
  return rc;
}

int RunJsonLines(const std::function<Result<Json>(const Json& request)>& fn) {
  return RunLines([&](const std::string& line, const std::string& where) -> Result<Json> {
    OPENRL_ASSIGN_OR_RETURN(Json req, ParseJson(line, where));
    if (!req.is_object()) return InvalidArgument(where + ": expected a JSON object");
    Result<Json> r = fn(req);
    if (!r.ok()) return r.status().WithContext(where);
    return r;
  });
}

}  // namespace openrl::cli
