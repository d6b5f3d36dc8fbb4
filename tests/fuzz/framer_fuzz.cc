// Mutation fuzzer for the frontend/backend framers, startup parsing and error parsing. Seeds are
// the recorded conversations; each round mutates one, feeds it in random chunks and checks that
// what the framer reports is exactly the bytes it was given, in order, until it stops or rejects.
// Runs deterministically for a fixed number of rounds (argv[1], default 20000) so CI stays short;
// run it under the sanitizer build to catch memory errors. Any failing input becomes a unit test.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "protocol/framer.h"
#include "protocol/messages.h"
#include "protocol/startup.h"
#include "tests/protocol/test_util.h"

namespace pr = pgwarden::protocol;
using pgwarden::protocol::testing::ByteString;
using pgwarden::protocol::testing::read_file;

namespace {

void fail(const char* what, std::uint64_t round) {
  std::fprintf(stderr, "framer_fuzz: round %llu: %s\n", static_cast<unsigned long long>(round),
               what);
  std::exit(1);
}

ByteString mutate(ByteString s, std::mt19937_64& rng) {
  const int edits = 1 + static_cast<int>(rng() % 8);
  for (int i = 0; i < edits && !s.empty(); ++i) {
    const std::size_t at = rng() % s.size();
    switch (rng() % 6) {
      case 0:
        s[at] = std::byte(rng());
        break;  // flip a byte
      case 1:
        s.erase(at, 1 + rng() % 16);
        break;  // delete a run
      case 2:
        s.insert(at, 1 + rng() % 16, std::byte(rng()));
        break;  // insert a run
      case 3:
        s[at] = std::byte(0xff);
        break;  // large length bytes
      case 4:
        s.insert(at, s.substr(rng() % s.size(), 1 + rng() % 64));
        break;  // duplicate
      default:
        s.resize(at);
        break;  // truncate
    }
  }
  return s;
}

// Feeds `input` in random chunks; returns how many bytes the framer accepted before stopping.
void run(pr::Side side, const ByteString& input, std::mt19937_64& rng, std::uint64_t round) {
  pr::Framer framer(side, 1 << 16, side == pr::Side::Backend);
  pr::Assembler assembler;
  ByteString seen;
  std::size_t pos = 0;
  bool malformed = false;
  while (pos < input.size() && !malformed) {
    const std::size_t n = std::min<std::size_t>(input.size() - pos, 1 + rng() % 300);
    const pr::Bytes chunk{input.data() + pos, n};
    const auto status = framer.feed(chunk, [&](const pr::Fragment& f) {
      if (f.first) seen.append(framer.held_prefix().data(), framer.held_prefix().size());
      seen.append(f.bytes.data(), f.bytes.size());
      const pr::Bytes whole = assembler.add(f, framer.held_prefix());
      if (f.last) {
        if (whole.size() != f.size) fail("assembled size differs from the header", round);
        if (f.type == 0) {
          auto parsed = pr::parse_startup(whole);
          if (parsed.ok() && parsed->kind == pr::StartupKind::Startup) {
            (void)pr::startup_param(parsed->params, "user");
            framer.set_typed(true);
          }
        } else if (f.type == 'E' || f.type == 'N') {
          (void)pr::read_error(whole);
        } else if (f.type == 'K') {
          if (!pr::read_backend_key(whole)) fail("valid-length BackendKeyData unreadable", round);
        }
      }
      return pr::Next::Continue;
    });
    malformed = status == pr::FeedStatus::Malformed;
    pos += n;
  }
  // Everything reported is a prefix of the input: nothing invented, nothing reordered.
  if (seen.size() > input.size() || input.compare(0, seen.size(), seen) != 0) {
    fail("reported bytes are not a prefix of the input", round);
  }
  if (!malformed && framer.at_boundary() && seen.size() != input.size()) {
    fail("consumed input without reporting it", round);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t rounds = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 20000;
  const std::vector<std::pair<ByteString, pr::Side>> seeds = {
      {read_file("psql.fe"), pr::Side::Frontend},
      {read_file("psql.be"), pr::Side::Backend},
      {read_file("pgbench.fe"), pr::Side::Frontend},
      {read_file("pgbench.be"), pr::Side::Backend},
  };
  for (const auto& [s, side] : seeds) {
    if (s.empty()) fail("missing seed file", 0);
  }
  std::mt19937_64 rng(0x9e3779b97f4a7c15ull);
  for (std::uint64_t round = 0; round < rounds; ++round) {
    const auto& [seed, side] = seeds[round % seeds.size()];
    ByteString input = mutate(seed, rng);
    // Backend captures start with the bare 'N' answer to SSLRequest; skip it like the session.
    if (side == pr::Side::Backend && !input.empty() && input[0] == std::byte{'N'})
      input.erase(0, 1);
    run(side, input, rng, round);
  }
  std::printf("framer_fuzz: %llu rounds, no failures\n", static_cast<unsigned long long>(rounds));
  return 0;
}
