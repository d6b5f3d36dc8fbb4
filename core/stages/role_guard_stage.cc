#include "core/stages/role_guard_stage.h"

#include "core/log.h"
#include "policy/role_guard.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

void RoleGuardStage::on_frontend(FrontendMessage& m) {
  if (!enabled_ || m.verdict != Verdict::Forward || !m.view.query) return;
  const std::string why = policy::role_change_reason(m.view.text);
  if (why.empty()) return;
  PGW_WARN("session %016llx: %s tried to leave the mapped role: %s",
           static_cast<unsigned long long>(host_.session_id()), host_.caller().identity.c_str(),
           why.c_str());
  m.verdict = Verdict::Fail;
  m.sqlstate = pr::sqlstate::kInsufficientPrivilege;
  m.message = "pgwarden: changing the session role is not allowed (" + why + ")";
}

}  // namespace pgwarden::core
