// Replays a recorded conversation (the client's bytes and the server's bytes, startup included)
// through the pipeline model in the order a gateway would see them: frontend messages are
// committed until the model asks input to wait (a possible COPY FROM STDIN) or the client's
// stream ends, then backend messages are fed until the wait is over. Shared by the model's tests
// and its fuzz targets.
#pragma once

#include <string>
#include <vector>

#include "protocol/frontend.h"
#include "protocol/pipeline.h"

namespace pgwarden::protocol::testing {

struct Message {
  char type;
  std::basic_string<std::byte> whole;
};

// Splits a stream into messages; `untyped` leading packets (startup phase) are skipped for the
// frontend. Stops at the first incomplete or impossible message.
inline std::vector<Message> split_messages(Bytes in, bool frontend) {
  std::vector<Message> out;
  std::size_t pos = 0;
  // The server's one-byte answer to an SSLRequest precedes its messages.
  if (!frontend && in.size() > 1 && (in[0] == std::byte{'N'} || in[0] == std::byte{'S'}) &&
      in[1] == std::byte{'R'}) {
    pos = 1;
  }
  if (frontend) {  // SSLRequest/GSSENCRequest then the StartupMessage: untyped
    while (pos + 8 <= in.size()) {
      const std::uint32_t len = read_u32(in.data() + pos);
      const std::uint32_t code = read_u32(in.data() + pos + 4);
      if (len < 8 || pos + len > in.size()) return out;
      pos += len;
      if (code == 196608) break;
    }
  }
  while (pos + 5 <= in.size()) {
    const std::uint32_t len = read_u32(in.data() + pos + 1);
    if (len < 4 || len > (1u << 24) || pos + 1 + len > in.size()) break;
    out.push_back({static_cast<char>(in[pos]), {in.data() + pos, len + 1}});
    pos += 1 + len;
  }
  return out;
}

struct ReplayResult {
  std::vector<std::string> divergences;
  std::size_t requests = 0;
  std::size_t malformed = 0;
  std::size_t replies = 0;
  std::size_t skipped = 0;
};

inline ReplayResult replay(const std::vector<Message>& fe_msgs,
                           const std::vector<Message>& be_msgs) {
  ReplayResult res;
  PipelineModel model;
  std::size_t f = 0;
  std::size_t b = 0;
  // Backend: skip the authentication phase, up to the first ReadyForQuery.
  while (b < be_msgs.size() && be_msgs[b].type != 'Z') ++b;
  if (b < be_msgs.size()) ++b;
  // Frontend: password messages belong to authentication.
  while (f < fe_msgs.size() && fe_msgs[f].type == 'p') ++f;
  auto retire = [&] {
    model.retire([&](const Request& r) { res.skipped += r.state == RequestState::Skipped; },
                 [](Request&) {});
  };
  while (f < fe_msgs.size() || b < be_msgs.size()) {
    bool progressed = false;
    while (f < fe_msgs.size() && !model.input_barrier() && !model.terminated()) {
      FrontendView v;
      std::string why;
      progressed = true;
      if (!read_frontend(fe_msgs[f].whole, v, why)) {
        ++res.malformed;
        ++f;
        continue;
      }
      if (model.fate(v) == PipelineModel::Fate::Violation) {
        res.divergences.push_back("client broke COPY");
        return res;
      }
      if (model.commit(v) != nullptr) ++res.requests;
      ++f;
    }
    // Backend until the barrier lifts (or everything is read).
    while (b < be_msgs.size()) {
      const Message& m = be_msgs[b++];
      progressed = true;
      ++res.replies;
      const auto ev = model.on_backend(m.type, m.whole);
      if (ev.divergence != nullptr) {
        res.divergences.push_back(std::string(1, m.type) + ": " + ev.divergence);
        return res;
      }
      retire();
      if (!model.input_barrier() && f < fe_msgs.size() && model.settled()) break;
      if (!model.input_barrier() && f < fe_msgs.size() && model.copy_in()) break;
    }
    if (!progressed) break;
  }
  return res;
}

}  // namespace pgwarden::protocol::testing
