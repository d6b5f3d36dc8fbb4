// A driver for libFuzzer targets in builds without libFuzzer (every CMake build): runs the target
// over each file of its seed corpus, then over deterministic mutations of them for a fixed number
// of rounds (argv[2], default 20000), so ctest exercises it in the Release and sanitizer builds.
// Usage: <target> CORPUS_DIR [ROUNDS]. Coverage-guided runs: scripts/libfuzzer.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

std::string mutate(std::string s, std::mt19937_64& rng, const std::vector<std::string>& seeds) {
  const int edits = 1 + static_cast<int>(rng() % 6);
  for (int i = 0; i < edits; ++i) {
    if (s.empty()) s = seeds[rng() % seeds.size()];
    const std::size_t at = rng() % s.size();
    switch (rng() % 7) {
      case 0:
        s[at] = static_cast<char>(rng());
        break;
      case 1:
        s.erase(at, 1 + rng() % 16);
        break;
      case 2:
        s.insert(at, 1 + rng() % 8, static_cast<char>(rng()));
        break;
      case 3: {  // splice part of another seed in
        const std::string& o = seeds[rng() % seeds.size()];
        if (!o.empty()) s.insert(at, o.substr(rng() % o.size(), 1 + rng() % 256));
        break;
      }
      case 4:
        s[at] = static_cast<char>(s[at] ^ 1);  // flip the direction bit of a control byte
        break;
      case 5:
        s.insert(at, s.substr(rng() % s.size(), 1 + rng() % 64));
        break;
      default:
        s.resize(at);
        break;
    }
  }
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR [ROUNDS]\n", argv[0]);
    return 2;
  }
  const long rounds = argc > 2 ? std::atol(argv[2]) : 20000;
  std::vector<std::string> seeds;
  for (const auto& f : std::filesystem::directory_iterator(argv[1])) {
    std::ifstream in(f.path(), std::ios::binary);
    seeds.emplace_back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  if (seeds.empty()) {
    std::fprintf(stderr, "%s: no seeds in %s\n", argv[0], argv[1]);
    return 1;
  }
  for (const std::string& s : seeds) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  std::mt19937_64 rng(20261201);
  for (long r = 0; r < rounds; ++r) {
    const std::string s = mutate(seeds[rng() % seeds.size()], rng, seeds);
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  }
  std::printf("%s: %zu seeds and %ld mutations ran\n", argv[0], seeds.size(), rounds);
  return 0;
}
