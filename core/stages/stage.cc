// The stage interface's shared helpers.

#include "core/stages/stage.h"

#include <openssl/rand.h>
#include <sys/random.h>

#include <cstdio>
#include <cstdlib>

#include "protocol/frontend.h"
#include "protocol/messages.h"

namespace pgwarden::core {

namespace pr = protocol;

const std::string& StageHost::own_name() {
  if (!own_name_.empty()) return own_name_;
  unsigned long long r[2] = {0, 0};
  if (::getrandom(r, sizeof r, 0) != static_cast<ssize_t>(sizeof r) &&
      RAND_bytes(reinterpret_cast<unsigned char*>(r), sizeof r) != 1) {
    std::abort();  // a guessable name would let one client break another's session
  }
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", r[0], r[1]);
  own_name_.assign(kOwnStatementPrefix).append(hex);
  return own_name_;
}

OwnBatch StageHost::send_own_statements(std::uint8_t owner,
                                        std::initializer_list<std::string_view> sqls) {
  const std::string& name = own_name();
  OwnBatch batch;
  std::basic_string<std::byte> msg;
  const auto send = [&] {
    const pr::Request* r = send_own(msg, owner);
    msg.clear();
    if (r == nullptr) return;
    if (batch.first == 0) batch.first = r->id;
    batch.last = r->id;
  };
  const auto close = [&] {
    pr::append_close(msg, 'P', name);
    send();
    pr::append_close(msg, 'S', name);
    send();
  };
  close();
  for (const std::string_view sql : sqls) {
    pr::append_parse(msg, name, sql);
    send();
    pr::append_bind(msg, name, name);
    send();
    pr::append_execute(msg, name, 0);
    send();
    close();
  }
  pr::append_sync(msg);
  send();
  return batch;
}

}  // namespace pgwarden::core
