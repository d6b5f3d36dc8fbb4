// libFuzzer target for the pipeline model: byte streams both ways, interleaved as the input says.
// The input is a sequence of records: one control byte (bit 0: from the server, else from the
// client; bit 1: a client message is pgwarden's own; bit 2: a refused Query answered locally),
// then one message as framed on the wire (type, int32 length, body; the length is clamped to what
// is left). Client messages are read as the session reads them (read_frontend), committed unless
// malformed, a COPY violation, or behind a barrier (the session would wait); server messages are
// fed to the model. A divergence starts a new model, as a session would end. Nothing may crash,
// leak or misbehave under the sanitizers, and the model's invariants must hold after each step.
// Built by scripts/libfuzzer.sh with clang's libFuzzer; in every build, tests/fuzz/fuzz_main.cc
// runs it over the seed corpus (tests/fuzz/corpus/pipeline) and mutations of it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "protocol/frontend.h"
#include "protocol/message_types.h"
#include "protocol/pipeline.h"

namespace pr = pgwarden::protocol;

namespace {

void check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "pipeline_fuzz: invariant broken: %s\n", what);
  std::abort();
}

void check_invariants(const pr::PipelineModel& m) {
  const pr::Request* f = m.front();
  // After retirement only an unanswered request can be at the front.
  check(f == nullptr || f->state == pr::RequestState::Queued, "a retired request at the front");
  check(m.settled() == (m.in_flight() == 0 && !m.copy_in()), "settled() disagrees with state");
  check(!m.copy_in() || !m.input_barrier(), "a barrier while COPY data flows");
  const pr::ResultShape s = m.current_result();
  check(s.shape == nullptr || s.row_description.size() >= 7, "a known shape without a description");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto model = std::make_unique<pr::PipelineModel>(pr::PipelineModel::Limits{64, 16});
  std::size_t pos = 0;
  std::string why;
  std::uint64_t local_answers = 0;
  auto retire = [&] {
    model->retire(
        [](const pr::Request& r) { check(r.state != pr::RequestState::Queued, "retired early"); },
        [&](pr::Request&) { ++local_answers; });
  };
  while (pos + 6 <= size) {
    const std::uint8_t control = data[pos++];
    const auto* msg = reinterpret_cast<const std::byte*>(data + pos);
    std::uint32_t len = pr::read_u32(msg + 1);
    if (len < 4 || len > size - pos - 1) len = static_cast<std::uint32_t>(size - pos - 1);
    std::basic_string<std::byte> whole(msg, len + 1);
    // The length field as it will be read: what was clamped is rewritten.
    whole[1] = std::byte(len >> 24);
    whole[2] = std::byte(len >> 16);
    whole[3] = std::byte(len >> 8);
    whole[4] = std::byte(len);
    pos += len + 1;
    // What the session's framer lets through: known types, lengths within their bounds.
    const pr::Side side = (control & 1) != 0 ? pr::Side::Backend : pr::Side::Frontend;
    const pr::TypeInfo& info = pr::type_info(side, static_cast<std::uint8_t>(whole[0]));
    if (info.name.empty() || len < info.min_len || (info.max_len != 0 && len > info.max_len)) {
      continue;
    }
    if ((control & 1) != 0) {
      const auto ev = model->on_backend(static_cast<char>(whole[0]), whole);
      if (ev.divergence != nullptr || ev.fatal) {
        model = std::make_unique<pr::PipelineModel>(pr::PipelineModel::Limits{64, 16});
        continue;
      }
      retire();
    } else {
      if (model->terminated()) continue;
      pr::FrontendView v;
      if (!pr::read_frontend(whole, v, why)) continue;
      const auto fate = model->fate(v);
      if (fate == pr::PipelineModel::Fate::Violation) continue;
      if (fate == pr::PipelineModel::Fate::Request && model->input_barrier()) continue;
      if (fate == pr::PipelineModel::Fate::Request && (control & 4) != 0 &&
          (v.type == 'Q' || v.type == 'F')) {
        model->commit_local(v.type == 'Q' ? pr::RequestKind::Query : pr::RequestKind::FunctionCall);
      } else {
        (void)model->execute_described(v);
        model->commit(v, (control & 2) != 0 ? pr::Origin::Gateway : pr::Origin::Client);
      }
      retire();
    }
    check_invariants(*model);
  }
  return 0;
}
