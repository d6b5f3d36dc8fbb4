// SQLSTATE codes pgwarden itself emits (PostgreSQL docs, Appendix A "Error Codes").
#pragma once

#include <string_view>

namespace pgwarden::protocol::sqlstate {

inline constexpr std::string_view kProtocolViolation = "08P01";
inline constexpr std::string_view kConnectionFailure = "08006";
inline constexpr std::string_view kFeatureNotSupported = "0A000";
inline constexpr std::string_view kInvalidAuthorization = "28000";
inline constexpr std::string_view kInvalidPassword = "28P01";
inline constexpr std::string_view kAdminShutdown = "57P01";
inline constexpr std::string_view kIdleSessionTimeout = "57P05";
inline constexpr std::string_view kQueryCanceled = "57014";
inline constexpr std::string_view kInsufficientPrivilege = "42501";
inline constexpr std::string_view kDuplicatePreparedStatement = "42P05";
inline constexpr std::string_view kInvalidSqlStatementName = "26000";
inline constexpr std::string_view kInvalidCursorName = "34000";
inline constexpr std::string_view kTooManyConnections = "53300";
inline constexpr std::string_view kProgramLimitExceeded = "54000";
inline constexpr std::string_view kIoError = "58030";
inline constexpr std::string_view kInternalError = "XX000";

}  // namespace pgwarden::protocol::sqlstate
