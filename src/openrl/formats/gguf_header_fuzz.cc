// libFuzzer target: GgufFile::Parse on arbitrary bytes taken as a whole file. Bad input must come
// back as a Status; an accepted header must describe known-type tensors whose aligned data lies
// inside the file without overlapping, findable by name, and metadata whose lookups agree.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "openrl/formats/gguf.h"
#include "openrl/formats/gguf_quant.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace openrl::formats::gguf;
  auto header = GgufFile::Parse({data, size}, size, "fuzz.gguf");
  if (!header.ok()) return 0;
  const Header& h = *header;
  if (h.version != 2 && h.version != 3) std::abort();
  if (h.alignment == 0 || (h.alignment & (h.alignment - 1)) != 0) std::abort();
  if (h.data_start % h.alignment != 0) std::abort();
  std::vector<std::pair<uint64_t, uint64_t>> extents;
  for (const TensorInfo& t : h.tensors) {
    const auto traits = Traits(static_cast<uint32_t>(t.type));
    if (!traits || t.dims.size() > 4) std::abort();
    if (t.offset % h.alignment != 0) std::abort();
    if (t.offset > size || t.nbytes > size || h.data_start + t.offset + t.nbytes > size) std::abort();
    if (static_cast<uint64_t>(t.numel()) / traits->block_size * traits->type_size != t.nbytes) std::abort();
    if (h.Find(t.name) != &t) std::abort();
    if (t.nbytes > 0) extents.emplace_back(t.offset, t.offset + t.nbytes);
    // Decoding a (small) accepted tensor must not read outside its bytes.
    if (CanDequantize(t.type) && t.numel() <= 4096) {
      std::vector<float> out(static_cast<size_t>(t.numel()));
      if (!Dequantize(t.type, {data + h.data_start + t.offset, t.nbytes}, out).ok()) std::abort();
    }
  }
  std::sort(extents.begin(), extents.end());
  for (size_t i = 1; i < extents.size(); ++i) {
    if (extents[i].first < extents[i - 1].second) std::abort();
  }
  for (const auto& [key, value] : h.metadata.entries()) {
    if (h.metadata.Find(key) != &value) std::abort();
  }
  return 0;
}
