// libFuzzer target: SafetensorsFile::ParseHeader on arbitrary bytes taken as a whole file. Bad
// input must come back as a Status; an accepted header must describe tensors that lie inside
// the file and tile its data buffer exactly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "openrl/formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using openrl::formats::SafetensorsFile;
  auto header = SafetensorsFile::ParseHeader({data, size}, size, "fuzz.safetensors");
  if (!header.ok()) return 0;
  if (header->data_start + header->data_bytes != size) std::abort();
  uint64_t covered = 0;
  for (const auto& t : header->tensors) {
    if (t.begin != covered || t.end < t.begin || t.end > header->data_bytes) std::abort();
    if (header->Find(t.name) == nullptr) std::abort();
    covered = t.end;
  }
  if (covered != header->data_bytes) std::abort();
  return 0;
}
