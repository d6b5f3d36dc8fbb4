// Views of whole frontend messages of the ready phase, checked the way PostgreSQL reads them
// (pq_getmsgstring, pq_getmsgint, pq_getmsgend in src/backend/libpq/pqformat.c): every string
// terminated inside the message, every count matching what follows, nothing past the end. A
// message that fails is refused at the gateway (08P01) instead of being forwarded.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/framer.h"

namespace pgwarden::protocol {

// One frontend message, parsed. Views point into the message bytes.
struct FrontendView {
  char type = 0;
  Bytes whole;                 // the whole message, type byte and length included
  std::string_view name;       // Parse: statement; Bind/Execute: portal; Describe/Close: target
  std::string_view statement;  // Bind: the statement bound
  std::string_view text;       // Query and Parse: SQL text; CopyFail: its message
  char target = 0;             // Describe/Close: 'S' (statement) or 'P' (portal)
  std::int32_t max_rows = 0;   // Execute
  std::uint32_t function = 0;  // FunctionCall: the function's OID
  std::uint16_t param_count = 0;
  Bytes param_types;      // Parse: param_count OIDs (4 bytes each)
  Bytes param_formats;    // Bind/FunctionCall: format codes (2 bytes each)
  Bytes params;           // Bind/FunctionCall: param_count (int32 length, bytes) entries
  Bytes result_formats;   // Bind: result format codes; FunctionCall: its one result format
  bool query = false;     // Query or Parse
  bool extended = false;  // Parse, Bind, Describe, Execute, Close, Flush (skipped after errors)
};

// Parses a whole frontend message of the ready phase. False (and `why`, the client-facing text)
// when it is malformed.
bool read_frontend(Bytes whole, FrontendView& out, std::string& why);

// Walks the (length, bytes) entries of a Bind's or FunctionCall's parameters: f(index, value,
// is_null, is_binary). The view must come from read_frontend (counts already checked).
template <class F>
void for_each_param(const FrontendView& v, F&& f) {
  const std::byte* p = v.params.data();
  const std::uint16_t nformats = static_cast<std::uint16_t>(v.param_formats.size() / 2);
  for (std::uint16_t i = 0; i < v.param_count; ++i) {
    const auto len = static_cast<std::int32_t>(read_u32(p));
    p += 4;
    const std::uint16_t fi = nformats == 1 ? 0 : i;
    const bool binary = fi < nformats && read_u16(v.param_formats.data() + 2 * fi) == 1;
    if (len < 0) {
      f(i, std::string_view(), true, binary);
      continue;
    }
    f(i, std::string_view(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len)), false,
      binary);
    p += len;
  }
}

// Encoders for the frontend messages pgwarden sends on its own.
void append_describe(std::basic_string<std::byte>& out, char target, std::string_view name);
void append_close(std::basic_string<std::byte>& out, char target, std::string_view name);
// A Bind of `statement` (no parameters) to `portal`, its results in text.
void append_bind(std::basic_string<std::byte>& out, std::string_view portal,
                 std::string_view statement);
void append_sync(std::basic_string<std::byte>& out);
void append_execute(std::basic_string<std::byte>& out, std::string_view portal,
                    std::int32_t max_rows);
void append_copy_fail(std::basic_string<std::byte>& out, std::string_view message);
// A Parse of `sql` as statement `name` with `param_types` (OIDs, 4 bytes each, as a Parse's).
void append_parse_typed(std::basic_string<std::byte>& out, std::string_view name,
                        std::string_view sql, Bytes param_types);
// `bind` (read by read_frontend) again, naming `statement` instead of the statement it names.
void append_bind_of(std::basic_string<std::byte>& out, const FrontendView& bind,
                    std::string_view statement);

}  // namespace pgwarden::protocol
