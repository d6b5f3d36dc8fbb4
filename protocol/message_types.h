// The PostgreSQL v3 message type bytes, per direction, and what we know about each
// (PostgreSQL docs, "Message Formats").
#pragma once

#include <cstdint>
#include <string_view>

namespace pgwarden::protocol {

// Who sent a stream of bytes: the client (frontend) or the server (backend).
enum class Side : std::uint8_t { Frontend, Backend };

namespace fe {  // frontend (client -> server) message types
inline constexpr char kBind = 'B';
inline constexpr char kClose = 'C';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyFail = 'f';
inline constexpr char kDescribe = 'D';
inline constexpr char kExecute = 'E';
inline constexpr char kFlush = 'H';
inline constexpr char kFunctionCall = 'F';
inline constexpr char kParse = 'P';
inline constexpr char kPassword = 'p';  // also SASLInitialResponse, SASLResponse, GSSResponse
inline constexpr char kQuery = 'Q';
inline constexpr char kSync = 'S';
inline constexpr char kTerminate = 'X';
}  // namespace fe

namespace be {  // backend (server -> client) message types
inline constexpr char kAuthentication = 'R';
inline constexpr char kBackendKeyData = 'K';
inline constexpr char kBindComplete = '2';
inline constexpr char kCloseComplete = '3';
inline constexpr char kCommandComplete = 'C';
inline constexpr char kCopyData = 'd';
inline constexpr char kCopyDone = 'c';
inline constexpr char kCopyInResponse = 'G';
inline constexpr char kCopyOutResponse = 'H';
inline constexpr char kCopyBothResponse = 'W';
inline constexpr char kDataRow = 'D';
inline constexpr char kEmptyQueryResponse = 'I';
inline constexpr char kErrorResponse = 'E';
inline constexpr char kFunctionCallResponse = 'V';
inline constexpr char kNegotiateProtocolVersion = 'v';
inline constexpr char kNoData = 'n';
inline constexpr char kNoticeResponse = 'N';
inline constexpr char kNotificationResponse = 'A';
inline constexpr char kParameterDescription = 't';
inline constexpr char kParameterStatus = 'S';
inline constexpr char kParseComplete = '1';
inline constexpr char kPortalSuspended = 's';
inline constexpr char kReadyForQuery = 'Z';
inline constexpr char kRowDescription = 'T';
}  // namespace be

// Length-field constraints of one message type. min_len/max_len bound the int32 length field
// (which counts itself but not the type byte); max_len == 0 means "up to the session limit".
struct TypeInfo {
  std::string_view name;  // empty = not a valid type for this side
  std::uint32_t min_len;
  std::uint32_t max_len;
};

// Facts about `type` sent by `side`; name is empty when the type is unknown for that side.
const TypeInfo& type_info(Side side, std::uint8_t type) noexcept;

inline bool is_known_type(Side side, std::uint8_t type) noexcept {
  return !type_info(side, type).name.empty();
}

}  // namespace pgwarden::protocol
