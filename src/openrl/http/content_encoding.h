// Request body Content-Encoding: "identity" and "zstd" (decoded with libzstd, size-limited so a
// small compressed body cannot expand without bound). Also used by the client to send zstd.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "openrl/core/status.h"

namespace openrl::http {

// Decodes `body` per the Content-Encoding header value (comma-separated list, applied in order).
// Unknown encoding -> UNIMPLEMENTED (the server answers 415); corrupt data -> INVALID_ARGUMENT;
// decoded size above `max_bytes` -> PAYLOAD_TOO_LARGE.
Result<std::string> DecodeContent(std::string_view encoding, std::string body, size_t max_bytes);

Result<std::string> ZstdDecompress(std::string_view data, size_t max_bytes);
Result<std::string> ZstdCompress(std::string_view data, int level = 3);

}  // namespace openrl::http
