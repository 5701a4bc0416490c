#include "openrl/http/problem.h"

#include <cctype>

namespace openrl::http {

Response ProblemResponse(int status, std::string_view slug, std::string_view detail,
                         std::string_view instance, const Json& extensions) {
  Json body = Json::object();
  if (extensions.is_object()) body = extensions;
  body["type"] = std::string(kProblemTypeBase) + std::string(slug);
  body["title"] = ProblemTitleFor(slug);
  body["status"] = status;
  body["detail"] = std::string(detail);
  if (!instance.empty()) body["instance"] = std::string(instance);
  return Response::Text(status, body.dump(-1, ' ', false, Json::error_handler_t::replace),
                        kProblemContentType);
}

Response ProblemFromStatus(const Status& status, std::string_view instance) {
  return ProblemResponse(HttpStatusFor(status.code()), ProblemSlugFor(status.code()),
                         status.message(), instance);
}

std::string ProblemSlugFor(ErrorCode code) {
  std::string slug(ErrorCodeName(code));
  for (char& c : slug) c = c == '_' ? '-' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return slug;
}

std::string ProblemTitleFor(std::string_view slug) {
  std::string title(slug);
  for (char& c : title) {
    if (c == '-') c = ' ';
  }
  if (!title.empty()) title[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(title[0])));
  return title;
}

}  // namespace openrl::http
