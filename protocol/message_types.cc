#include "protocol/message_types.h"

#include <array>

namespace pgwarden::protocol {
namespace {

using Table = std::array<TypeInfo, 256>;

// Fixed-size messages carry exactly their length; everything else at least the 4 length bytes.
constexpr Table make_frontend() {
  Table t{};
  auto set = [&t](char c, std::string_view name, std::uint32_t min, std::uint32_t max) {
    t[static_cast<unsigned char>(c)] = TypeInfo{name, min, max};
  };
  set(fe::kBind, "Bind", 4 + 2 + 2 + 2 + 2, 0);
  set(fe::kClose, "Close", 4 + 1 + 1, 0);
  set(fe::kCopyData, "CopyData", 4, 0);
  set(fe::kCopyDone, "CopyDone", 4, 4);
  set(fe::kCopyFail, "CopyFail", 4 + 1, 0);
  set(fe::kDescribe, "Describe", 4 + 1 + 1, 0);
  set(fe::kExecute, "Execute", 4 + 1 + 4, 0);
  set(fe::kFlush, "Flush", 4, 4);
  set(fe::kFunctionCall, "FunctionCall", 4 + 4 + 2 + 2 + 2, 0);
  set(fe::kParse, "Parse", 4 + 1 + 1 + 2, 0);
  set(fe::kPassword, "PasswordMessage", 4, 0);
  set(fe::kQuery, "Query", 4 + 1, 0);
  set(fe::kSync, "Sync", 4, 4);
  set(fe::kTerminate, "Terminate", 4, 4);
  return t;
}

constexpr Table make_backend() {
  Table t{};
  auto set = [&t](char c, std::string_view name, std::uint32_t min, std::uint32_t max) {
    t[static_cast<unsigned char>(c)] = TypeInfo{name, min, max};
  };
  set(be::kAuthentication, "Authentication", 4 + 4, 0);
  set(be::kBackendKeyData, "BackendKeyData", 12, 12);
  set(be::kBindComplete, "BindComplete", 4, 4);
  set(be::kCloseComplete, "CloseComplete", 4, 4);
  set(be::kCommandComplete, "CommandComplete", 4 + 1, 0);
  set(be::kCopyData, "CopyData", 4, 0);
  set(be::kCopyDone, "CopyDone", 4, 4);
  set(be::kCopyInResponse, "CopyInResponse", 4 + 1 + 2, 0);
  set(be::kCopyOutResponse, "CopyOutResponse", 4 + 1 + 2, 0);
  set(be::kCopyBothResponse, "CopyBothResponse", 4 + 1 + 2, 0);
  set(be::kDataRow, "DataRow", 4 + 2, 0);
  set(be::kEmptyQueryResponse, "EmptyQueryResponse", 4, 4);
  set(be::kErrorResponse, "ErrorResponse", 4 + 1, 0);
  set(be::kFunctionCallResponse, "FunctionCallResponse", 4 + 4, 0);
  set(be::kNegotiateProtocolVersion, "NegotiateProtocolVersion", 4 + 4 + 4, 0);
  set(be::kNoData, "NoData", 4, 4);
  set(be::kNoticeResponse, "NoticeResponse", 4 + 1, 0);
  set(be::kNotificationResponse, "NotificationResponse", 4 + 4 + 1 + 1, 0);
  set(be::kParameterDescription, "ParameterDescription", 4 + 2, 0);
  set(be::kParameterStatus, "ParameterStatus", 4 + 1 + 1, 0);
  set(be::kParseComplete, "ParseComplete", 4, 4);
  set(be::kPortalSuspended, "PortalSuspended", 4, 4);
  set(be::kReadyForQuery, "ReadyForQuery", 5, 5);
  set(be::kRowDescription, "RowDescription", 4 + 2, 0);
  return t;
}

constexpr Table kFrontend = make_frontend();
constexpr Table kBackend = make_backend();

}  // namespace

const TypeInfo& type_info(Side side, std::uint8_t type) noexcept {
  return side == Side::Frontend ? kFrontend[type] : kBackend[type];
}

}  // namespace pgwarden::protocol
