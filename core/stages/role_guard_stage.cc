#include "core/stages/role_guard_stage.h"

#include "core/log.h"
#include "policy/role_guard.h"
#include "policy/rules.h"
#include "protocol/sqlstate.h"

namespace pgwarden::core {

namespace pr = pgwarden::protocol;

void RoleGuardStage::on_frontend(FrontendMessage& m) {
  if (!enabled_ || m.verdict != Verdict::Forward) return;
  std::string why;
  if (m.view.query) {
    const policy::Policy* pol = host_.core().policy;
    // Gateway authentication always has a policy (its role mappings); without one, fail closed.
    why = pol == nullptr
              ? "the statement cannot be checked"
              : policy::role_change_reason(host_.core().engine->classes_of(*pol, m.view.text));
  } else if (m.view.type == pr::fe::kFunctionCall &&
             policy::fast_path_function(m.view.function) == nullptr) {
    why = "a fast-path call of function " + std::to_string(m.view.function) +
          ", which is not one of the large-object functions";
  }
  if (why.empty()) return;
  PGW_WARN("session %016llx: %s tried to leave the mapped role: %s",
           static_cast<unsigned long long>(host_.session_id()), host_.caller().identity.c_str(),
           why.c_str());
  m.verdict = Verdict::Fail;
  m.sqlstate = pr::sqlstate::kInsufficientPrivilege;
  m.message = "pgwarden: changing the session role is not allowed (" + why + ")";
}

}  // namespace pgwarden::core
