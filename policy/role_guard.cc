#include "policy/role_guard.h"

#include <array>

namespace pgwarden::policy {
namespace {

using C = StatementClass;

constexpr std::array<FastPathFunction, 13> kFastPath = {{
    {952, "lo_open", false},
    {953, "lo_close", false},
    {954, "loread", false},
    {955, "lowrite", true},
    {956, "lo_lseek", false},
    {3170, "lo_lseek64", false},
    {957, "lo_creat", true},
    {715, "lo_create", true},
    {958, "lo_tell", false},
    {3171, "lo_tell64", false},
    {964, "lo_unlink", true},
    {1004, "lo_truncate", true},
    {3172, "lo_truncate64", true},
}};

}  // namespace

std::string role_change_reason(ClassSet classes) {
  if ((classes & bit(C::RoleChange)) != 0) {
    return "it sets the role or session authorization, or calls set_config";
  }
  if ((classes & bit(C::DoBlock)) != 0) return "a DO block could change it unseen";
  if ((classes & bit(C::DynamicSql)) != 0) return "dynamic SQL could change it unseen";
  return {};
}

const FastPathFunction* fast_path_function(std::uint32_t oid) {
  for (const FastPathFunction& f : kFastPath) {
    if (f.oid == oid) return &f;
  }
  return nullptr;
}

const FastPathFunction* fast_path_functions(std::size_t& count) {
  count = kFastPath.size();
  return kFastPath.data();
}

}  // namespace pgwarden::policy
