// CRC-32C (Castagnoli), the checksum of the ledger's log records and snapshots.
#pragma once

#include <cstddef>
#include <cstdint>

namespace autoscale::ledger::internal {

// Extends `crc` (of earlier bytes; 0 to start) with `n` bytes at `data`.
uint32_t Crc32cExtend(uint32_t crc, const void* data, size_t n);

inline uint32_t Crc32c(const void* data, size_t n) { return Crc32cExtend(0, data, n); }

}  // namespace autoscale::ledger::internal
