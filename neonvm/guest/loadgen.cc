// A load generator for the test guest and the demo: keeps rewriting a memory buffer with a
// pattern that changes every pass (so live migration always has dirty pages to chase) and burns
// CPU on as many threads as asked. On SIGTERM or SIGINT it stops at the end of a pass, checks that
// every word of the buffer holds the last pass's pattern, prints one line and exits 0, or 1 if
// the memory was not what it wrote.
//
//   loadgen --memory-mib=64 --cpu-threads=1 &   ...   kill -TERM $!; wait $!
//   loadgen: 12 passes over 64 MiB, verified, checksum 5f3a...
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

std::atomic<bool> stop{false};

void OnSignal(int) { stop.store(true); }

uint64_t Pattern(uint64_t pass, uint64_t index) {
  // splitmix64 of (pass, index): every word differs from pass to pass.
  uint64_t z = (pass << 40) ^ index ^ 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

bool Flag(const char* arg, const char* name, long* value) {
  size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0 || arg[n] != '=') return false;
  char* end;
  *value = std::strtol(arg + n + 1, &end, 10);
  if (*end != '\0' || *value < 0) {
    std::fprintf(stderr, "loadgen: bad value in %s\n", arg);
    std::exit(2);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  long memory_mib = 0, cpu_threads = 0;
  for (int i = 1; i < argc; ++i) {
    if (!Flag(argv[i], "--memory-mib", &memory_mib) &&
        !Flag(argv[i], "--cpu-threads", &cpu_threads)) {
      std::fprintf(stderr, "usage: loadgen [--memory-mib=N] [--cpu-threads=N]\n");
      return 2;
    }
  }
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  std::vector<std::thread> burners;
  for (long t = 0; t < cpu_threads; ++t) {
    burners.emplace_back([] {
      volatile uint64_t x = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 100000; ++i) x = x * 6364136223846793005ULL + 1;
      }
    });
  }

  size_t words = static_cast<size_t>(memory_mib) * (1 << 20) / sizeof(uint64_t);
  std::vector<uint64_t> buffer(words);
  uint64_t passes = 0;
  while (!stop.load()) {
    if (words == 0) {
      pause();
      continue;
    }
    for (size_t i = 0; i < words; ++i) buffer[i] = Pattern(passes, i);
    ++passes;
  }
  for (std::thread& t : burners) t.join();

  if (words == 0) {
    std::printf("loadgen: stopped\n");
    return 0;
  }
  uint64_t checksum = 0;
  size_t bad = 0, first_bad = 0;
  for (size_t i = 0; i < words; ++i) {
    if (passes > 0 && buffer[i] != Pattern(passes - 1, i) && bad++ == 0) first_bad = i;
    checksum = checksum * 31 + buffer[i];
  }
  if (bad > 0) {
    std::printf("loadgen: %" PRIu64
                " passes over %ld MiB, CORRUPT: %zu words differ, first at byte %zu\n",
                passes, memory_mib, bad, first_bad * sizeof(uint64_t));
    return 1;
  }
  std::printf("loadgen: %" PRIu64 " passes over %ld MiB, verified, checksum %016" PRIx64 "\n",
              passes, memory_mib, checksum);
  return 0;
}
