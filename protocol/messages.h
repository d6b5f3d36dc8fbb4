// Views over the backend messages the session reads, and encoders for the messages pgwarden
// writes itself (PostgreSQL docs, "Message Formats").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protocol/framer.h"
#include "protocol/startup.h"

namespace pgwarden::protocol {

// Appends an ErrorResponse ('E') or NoticeResponse ('N') with severity, SQLSTATE and message.
void append_error(std::basic_string<std::byte>& out, std::string_view severity,
                  std::string_view sqlstate, std::string_view message, char type = 'E');

// Appends ReadyForQuery ('Z') with transaction status 'I', 'T' or 'E'.
void append_ready_for_query(std::basic_string<std::byte>& out, char status);

// Appends CommandComplete ('C') with `tag` (e.g. "SET").
void append_command_complete(std::basic_string<std::byte>& out, std::string_view tag);

// Appends a simple Query ('Q').
void append_query(std::basic_string<std::byte>& out, std::string_view sql);

// Appends a Parse ('P') of `sql` as statement `name`, with no parameter types.
void append_parse(std::basic_string<std::byte>& out, std::string_view name, std::string_view sql);

// Appends BackendKeyData ('K').
void append_backend_key(std::basic_string<std::byte>& out, BackendKey key);

// Appends a CancelRequest packet for `key`.
void append_cancel_request(std::basic_string<std::byte>& out, BackendKey key);

// Writes `key` into a whole BackendKeyData message in place.
void write_backend_key(std::span<std::byte> message, BackendKey key) noexcept;

// Reads a whole BackendKeyData message; nullopt if it is not one.
std::optional<BackendKey> read_backend_key(Bytes message) noexcept;

// Transaction status from a whole ReadyForQuery message: 'I', 'T' or 'E'; 0 if malformed.
char read_ready_status(Bytes message) noexcept;

// One field of an ErrorResponse/NoticeResponse.
struct ErrorFields {
  std::string severity;  // V (or S)
  std::string sqlstate;  // C
  std::string message;   // M
};
// Parses the fields of a whole ErrorResponse/NoticeResponse; nullopt if malformed.
std::optional<ErrorFields> read_error(Bytes message);

}  // namespace pgwarden::protocol
