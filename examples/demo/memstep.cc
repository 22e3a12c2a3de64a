// memstep: runs in the test guest to measure how fast the autoscaler reacts to memory pressure.
// It fills memory to just below the monitor's threshold (by default the monitor's formula on the
// guest's MemTotal: 0.85 x (MemTotal - 100 MiB)), then crosses it with one 2 MiB (transparent
// huge) page and polls /proc/meminfo until MemTotal grows: the time from the crossing to more
// memory online in the guest, by the guest's own clock. It then keeps its memory until SIGTERM
// or SIGINT. Run it alone in the monitored cgroup.
//
//   memstep [--prefill-kib=N] [--timeout-ms=10000]
//   memstep: online after 142.7 ms (MemTotal 218000 -> 480144 kB)
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "autoscale/base/version.h"

namespace {

volatile sig_atomic_t stop = 0;
void OnSignal(int) { stop = 1; }

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

long MemTotalKib() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "MemTotal: %ld kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib;
}

void Touch(char* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 4096) p[off] = 1;
}

long Flag(int argc, char** argv, const char* name, long fallback) {
  size_t n = std::strlen(name);
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], name, n) == 0 && argv[i][n] == '=') return std::atol(argv[i] + n + 1);
  }
  return fallback;
}

}  // namespace

int main(int argc, char** argv) {
  // No flags library: this runs in the test guest, where every shared library must be copied in.
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0) {
      std::printf(
          "memstep [--prefill-kib=N] [--timeout-ms=10000]: fills memory to just below the "
          "monitor's threshold, crosses it, and reports when more memory came online\n\n"
          "  --prefill-kib (memory to fill before the crossing, KiB); default: 0.85 x (MemTotal "
          "- 100 MiB) - 1.5 MiB;\n"
          "  --timeout-ms (how long to wait for more memory, ms); default: 10000;\n");
      return 0;
    }
    if (std::strcmp(argv[i], "--version") == 0) {
      std::printf("memstep %s\n", autoscale::Version());
      return 0;
    }
  }
  const long timeout_ms = Flag(argc, argv, "--timeout-ms", 10000);
  // 1.5 MiB below the threshold: the 2 MiB page crosses it.
  const long threshold_kib = static_cast<long>((MemTotalKib() - 100 * 1024) * 0.85);
  const long prefill_kib = Flag(argc, argv, "--prefill-kib", threshold_kib - 1536);
  if (prefill_kib < 0) {
    std::fprintf(stderr, "memstep: nothing to prefill (MemTotal %ld kB)\n", MemTotalKib());
    return 2;
  }
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  const size_t prefill = static_cast<size_t>(prefill_kib) << 10;
  char* fill = static_cast<char*>(
      mmap(nullptr, prefill + 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (fill == MAP_FAILED) return 3;
  Touch(fill, prefill);
  usleep(300 * 1000);  // let the monitor take a sample below the threshold

  char* raw = static_cast<char*>(
      mmap(nullptr, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (raw == MAP_FAILED) return 3;
  char* huge = reinterpret_cast<char*>((reinterpret_cast<uintptr_t>(raw) + (2 << 20) - 1) &
                                       ~uintptr_t{(2 << 20) - 1});
  madvise(huge, 2 << 20, MADV_HUGEPAGE);
  const long before = MemTotalKib();
  const int64_t t0 = NowNs();
  Touch(huge, 2 << 20);
  long now = before;
  while (now <= before && !stop && NowNs() - t0 < timeout_ms * 1000000LL) {
    usleep(1000);
    now = MemTotalKib();
  }
  const double ms = (NowNs() - t0) / 1e6;
  if (now > before) {
    std::printf("memstep: online after %.1f ms (MemTotal %ld -> %ld kB)\n", ms, before, now);
  } else {
    std::printf("memstep: no new memory after %.0f ms (MemTotal %ld kB)\n", ms, before);
  }
  std::fflush(stdout);
  while (!stop) pause();
  return now > before ? 0 : 1;
}
