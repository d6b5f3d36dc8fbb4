// Keeps a gateway-authenticated caller in the role pgwarden mapped it to (unless its mapping
// allows role changes): a statement that could change the session's role ends the session with
// FATAL 42501, after the replies already due. Lives on the session's core.
#pragma once

#include "core/stages/stage.h"

namespace pgwarden::core {

class RoleGuardStage final : public Stage {
 public:
  explicit RoleGuardStage(StageHost& host) : host_(host) {}
  void set_enabled(bool on) noexcept { enabled_ = on; }
  bool enabled() const noexcept { return enabled_; }
  void on_frontend(FrontendMessage& m) override;

 private:
  StageHost& host_;
  bool enabled_ = false;
};

}  // namespace pgwarden::core
