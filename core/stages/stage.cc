// The stage interface's shared helpers.

#include "core/stages/stage.h"

#include "protocol/frontend.h"
#include "protocol/messages.h"

namespace pgwarden::core {

namespace pr = protocol;

OwnBatch StageHost::send_own_statements(std::uint8_t owner,
                                        std::initializer_list<std::string_view> sqls) {
  OwnBatch batch;
  std::basic_string<std::byte> msg;
  const auto send = [&] {
    const pr::Request* r = send_own(msg, owner);
    msg.clear();
    if (r == nullptr) return;
    if (batch.first == 0) batch.first = r->id;
    batch.last = r->id;
  };
  for (const std::string_view sql : sqls) {
    pr::append_parse(msg, kOwnStatementName, sql);
    send();
    pr::append_bind(msg, kOwnStatementName, kOwnStatementName);
    send();
    pr::append_execute(msg, kOwnStatementName, 0);
    send();
    pr::append_close(msg, 'P', kOwnStatementName);
    send();
    pr::append_close(msg, 'S', kOwnStatementName);
    send();
  }
  pr::append_sync(msg);
  send();
  return batch;
}

}  // namespace pgwarden::core
