// A deterministic stand-in for libFuzzer's driver, so every fuzz target also runs as a plain test
// (see third_party/fuzz.bzl): each corpus file is fed to LLVMFuzzerTestOneInput, then
// --iterations seeded random mutations of them (byte flips, inserts, deletes, truncation,
// splices and interesting tokens). A crash, hang or sanitizer report fails the test.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

const char* const kTokens[] = {"{",
                               "}",
                               "[",
                               "]",
                               "\"",
                               ":",
                               ",",
                               "null",
                               "true",
                               "false",
                               "-1",
                               "0",
                               "1e309",
                               "-9223372036854775809",
                               "18446744073709551616",
                               "NaN",
                               "\\u0000",
                               "\n",
                               "\xff",
                               "1.5"};

std::string Mutate(std::string s, std::mt19937_64& rng) {
  int rounds = 1 + rng() % 4;
  for (int r = 0; r < rounds; ++r) {
    size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 6) {
      case 0:  // flip a byte
        if (!s.empty()) s[pos % s.size()] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 1:  // insert a random byte
        s.insert(pos, 1, static_cast<char>(rng() % 256));
        break;
      case 2:  // delete a range
        if (!s.empty()) s.erase(pos % s.size(), 1 + rng() % 8);
        break;
      case 3:  // truncate
        s.resize(pos);
        break;
      case 4: {  // duplicate a slice elsewhere
        if (s.empty()) break;
        size_t from = rng() % s.size();
        size_t len = 1 + rng() % std::min<size_t>(32, s.size() - from);
        s.insert(pos, s.substr(from, len));
        break;
      }
      default:  // insert a token
        s.insert(pos, kTokens[rng() % (sizeof(kTokens) / sizeof(kTokens[0]))]);
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  long iterations = 10000;
  std::vector<std::string> corpus;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--iterations=", 13) == 0) {
      iterations = std::atol(argv[i] + 13);
      continue;
    }
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "fuzz: cannot read corpus file %s\n", argv[i]);
      return 1;
    }
    std::ostringstream s;
    s << in.rdbuf();
    corpus.push_back(s.str());
  }
  if (const char* env = std::getenv("FUZZ_ITERATIONS")) iterations = std::atol(env);
  if (corpus.empty()) corpus.push_back("");
  for (const std::string& c : corpus) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(c.data()), c.size());
  }
  std::mt19937_64 rng(0x5eed);
  for (long i = 0; i < iterations; ++i) {
    std::string input = Mutate(corpus[rng() % corpus.size()], rng);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(input.data()), input.size());
  }
  std::printf("fuzz: %zu corpus inputs and %ld mutations ran without a crash\n", corpus.size(),
              iterations);
  return 0;
}
