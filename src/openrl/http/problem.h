// RFC 9457 problem details: every HTTP error of OpenRL is an application/problem+json body
//   {"type": "https://openrl.dev/problems/<slug>", "title", "status", "detail", "instance"?}
// with a stable `type` per kind of problem. ProblemFromStatus maps an openrl::Status onto one.
#pragma once

#include <string>
#include <string_view>

#include "openrl/core/json.h"
#include "openrl/core/status.h"
#include "openrl/http/message.h"

namespace openrl::http {

inline constexpr std::string_view kProblemTypeBase = "https://openrl.dev/problems/";
inline constexpr std::string_view kProblemContentType = "application/problem+json";

// `slug` names the problem type ("not-found", "payload-too-large"); the title is derived from
// it ("Not found"). `extensions` (an object or null) adds members such as {"checks": {...}}.
Response ProblemResponse(int status, std::string_view slug, std::string_view detail,
                         std::string_view instance = {}, const Json& extensions = nullptr);

// The Status's code chooses the HTTP status (HttpStatusFor) and slug ("invalid-argument"), its
// message becomes the detail.
Response ProblemFromStatus(const Status& status, std::string_view instance = {});

// "INVALID_ARGUMENT" -> "invalid-argument".
std::string ProblemSlugFor(ErrorCode code);
// "payload-too-large" -> "Payload too large".
std::string ProblemTitleFor(std::string_view slug);

}  // namespace openrl::http
