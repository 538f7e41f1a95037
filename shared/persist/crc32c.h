// shared/persist/crc32c.h: CRC-32C (Castagnoli), the checksum of every persistence
// record. Debian 12 packages no C/C++ CRC32C library (google/crc32c and
// absl::crc32c are not in bookworm), so this uses the SSE4.2 crc32
// instruction when the CPU has it and a table otherwise; both give the
// standard CRC-32C (crc32c("123456789") == 0xE3069283).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace pf {

// Extends `crc` (0 to start) over [data, data+n).
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);
inline uint32_t Crc32c(std::string_view s) { return Crc32c(0, s.data(), s.size()); }

}  // namespace pf
