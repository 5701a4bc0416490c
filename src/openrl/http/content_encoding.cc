#include "openrl/http/content_encoding.h"

#include <zstd.h>

#include <memory>

#include "openrl/http/message.h"

namespace openrl::http {

Result<std::string> ZstdDecompress(std::string_view data, size_t max_bytes) {
  if (data.empty()) return std::string();
  std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) return Internal("zstd: cannot allocate a decompression context");
  std::string out;
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  std::string chunk(ZSTD_DStreamOutSize(), '\0');
  size_t last = 1;
  while (in.pos < in.size || last != 0) {
    ZSTD_outBuffer ob{chunk.data(), chunk.size(), 0};
    last = ZSTD_decompressStream(ctx.get(), &ob, &in);
    if (ZSTD_isError(last)) {
      return InvalidArgument(std::string("request body: invalid zstd data: ") +
                             ZSTD_getErrorName(last));
    }
    if (out.size() + ob.pos > max_bytes) {
      return Status(ErrorCode::kPayloadTooLarge,
                    "request body: decompressed size exceeds the limit of " +
                        std::to_string(max_bytes) + " bytes");
    }
    out.append(chunk.data(), ob.pos);
    if (in.pos == in.size && ob.pos < ob.size && last != 0) {
      return InvalidArgument("request body: truncated zstd frame");
    }
  }
  return out;
}

Result<std::string> ZstdCompress(std::string_view data, int level) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), level);
  if (ZSTD_isError(n)) return Internal(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

Result<std::string> DecodeContent(std::string_view encoding, std::string body, size_t max_bytes) {
  size_t start = 0;
  while (start <= encoding.size()) {
    size_t comma = encoding.find(',', start);
    std::string_view token = encoding.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (EqualsIgnoreCase(token, "zstd")) {
      OPENRL_ASSIGN_OR_RETURN(body, ZstdDecompress(body, max_bytes));
    } else if (!token.empty() && !EqualsIgnoreCase(token, "identity")) {
      return Unimplemented("Content-Encoding '" + std::string(token) +
                           "' is not supported (use zstd or identity)");
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return body;
}

}  // namespace openrl::http
