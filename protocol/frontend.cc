#include "protocol/frontend.h"

#include <cstring>

#include "protocol/message_types.h"

namespace pgwarden::protocol {
namespace {

// A cursor over a message body, failing the way pq_getmsg* do.
class Reader {
 public:
  explicit Reader(Bytes body) : p_(body.data()), end_(body.data() + body.size()) {}

  bool cstring(std::string_view& s) {
    const void* nul = std::memchr(p_, 0, static_cast<std::size_t>(end_ - p_));
    if (nul == nullptr) return fail("invalid string in message");
    const auto* e = static_cast<const std::byte*>(nul);
    s = {reinterpret_cast<const char*>(p_), static_cast<std::size_t>(e - p_)};
    p_ = e + 1;
    return true;
  }
  bool u8(char& c) {
    if (end_ - p_ < 1) return fail("insufficient data left in message");
    c = static_cast<char>(*p_++);
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (end_ - p_ < 2) return fail("insufficient data left in message");
    v = read_u16(p_);
    p_ += 2;
    return true;
  }
  bool i32(std::int32_t& v) {
    if (end_ - p_ < 4) return fail("insufficient data left in message");
    v = static_cast<std::int32_t>(read_u32(p_));
    p_ += 4;
    return true;
  }
  // n bytes as a view.
  bool take(std::size_t n, Bytes& out) {
    if (static_cast<std::size_t>(end_ - p_) < n) return fail("insufficient data left in message");
    out = {p_, n};
    p_ += n;
    return true;
  }
  // `count` (int32 length, bytes) entries, -1 meaning NULL.
  bool values(std::uint16_t count, Bytes& out, const char* negative) {
    const std::byte* start = p_;
    for (std::uint16_t i = 0; i < count; ++i) {
      std::int32_t len = 0;
      if (!i32(len)) return false;
      if (len == -1) continue;
      if (len < 0) return fail(negative);
      Bytes ignored;
      if (!take(static_cast<std::size_t>(len), ignored)) return false;
    }
    out = {start, static_cast<std::size_t>(p_ - start)};
    return true;
  }
  bool end() { return p_ == end_ || fail("invalid message format"); }
  const char* why() const { return why_; }

 private:
  bool fail(const char* why) {
    why_ = why;
    return false;
  }
  const std::byte* p_;
  const std::byte* end_;
  const char* why_ = "";
};

void put_u32(std::basic_string<std::byte>& out, std::uint32_t v) {
  const std::byte b[4] = {std::byte(v >> 24), std::byte(v >> 16), std::byte(v >> 8), std::byte(v)};
  out.append(b, 4);
}

void put_cstr(std::basic_string<std::byte>& out, std::string_view s) {
  s = s.substr(0, s.find('\0'));
  out.append(reinterpret_cast<const std::byte*>(s.data()), s.size());
  out.push_back(std::byte{0});
}

bool read_body(char type, Reader& r, FrontendView& v, std::string& why) {
  std::uint16_t n = 0;
  switch (type) {
    case fe::kQuery:
      v.query = true;
      return r.cstring(v.text) && r.end();
    case fe::kParse:
      v.query = v.extended = true;
      if (!r.cstring(v.name) || !r.cstring(v.text) || !r.u16(v.param_count)) return false;
      return r.take(4u * v.param_count, v.param_types) && r.end();
    case fe::kBind:
      v.extended = true;
      if (!r.cstring(v.name) || !r.cstring(v.statement) || !r.u16(n) ||
          !r.take(2u * n, v.param_formats) || !r.u16(v.param_count)) {
        return false;
      }
      if (n > 1 && n != v.param_count) {
        why = "bind message has " + std::to_string(n) + " parameter formats but " +
              std::to_string(v.param_count) + " parameters";
        return false;
      }
      if (!r.values(v.param_count, v.params, "insufficient data left in message") || !r.u16(n)) {
        return false;
      }
      return r.take(2u * n, v.result_formats) && r.end();
    case fe::kDescribe:
    case fe::kClose:
      v.extended = true;
      if (!r.u8(v.target) || !r.cstring(v.name) || !r.end()) return false;
      if (v.target != 'S' && v.target != 'P') {
        why = std::string("invalid ") + (type == fe::kDescribe ? "DESCRIBE" : "CLOSE") +
              " message subtype " + std::to_string(static_cast<unsigned char>(v.target));
        return false;
      }
      return true;
    case fe::kExecute:
      v.extended = true;
      return r.cstring(v.name) && r.i32(v.max_rows) && r.end();
    case fe::kFunctionCall: {
      std::int32_t oid = 0;
      if (!r.i32(oid) || !r.u16(n) || !r.take(2u * n, v.param_formats) || !r.u16(v.param_count)) {
        return false;
      }
      v.function = static_cast<std::uint32_t>(oid);
      if (n > 1 && n != v.param_count) {
        why = "function call message has " + std::to_string(n) + " argument formats but " +
              std::to_string(v.param_count) + " arguments";
        return false;
      }
      return r.values(v.param_count, v.params, "invalid argument size") &&
             r.take(2, v.result_formats) && r.end();
    }
    case fe::kFlush:
      v.extended = true;
      return r.end();
    case fe::kSync:
    case fe::kTerminate:
    case fe::kCopyDone:
      return r.end();
    case fe::kCopyFail:
      return r.cstring(v.text) && r.end();
    case fe::kCopyData:
      return true;
    default:
      why = "invalid frontend message type " + std::to_string(static_cast<unsigned char>(type));
      return false;
  }
}

}  // namespace

bool read_frontend(Bytes whole, FrontendView& out, std::string& why) {
  out = FrontendView{};
  why.clear();
  if (whole.size() < 5 || read_u32(whole.data() + 1) != whole.size() - 1) {
    why = "invalid message length";
    return false;
  }
  out.type = static_cast<char>(whole[0]);
  out.whole = whole;
  Reader r(whole.subspan(5));
  if (read_body(out.type, r, out, why)) return true;
  if (why.empty()) why = r.why();
  return false;
}

void append_describe(std::basic_string<std::byte>& out, char target, std::string_view name) {
  name = name.substr(0, name.find('\0'));
  out.push_back(std::byte{fe::kDescribe});
  put_u32(out, static_cast<std::uint32_t>(4 + 1 + name.size() + 1));
  out.push_back(static_cast<std::byte>(target));
  put_cstr(out, name);
}

void append_close(std::basic_string<std::byte>& out, char target, std::string_view name) {
  name = name.substr(0, name.find('\0'));
  out.push_back(std::byte{fe::kClose});
  put_u32(out, static_cast<std::uint32_t>(4 + 1 + name.size() + 1));
  out.push_back(static_cast<std::byte>(target));
  put_cstr(out, name);
}

void append_bind(std::basic_string<std::byte>& out, std::string_view portal,
                 std::string_view statement) {
  portal = portal.substr(0, portal.find('\0'));
  statement = statement.substr(0, statement.find('\0'));
  out.push_back(std::byte{fe::kBind});
  put_u32(out, static_cast<std::uint32_t>(4 + portal.size() + 1 + statement.size() + 1 + 6));
  put_cstr(out, portal);
  put_cstr(out, statement);
  for (int i = 0; i < 6; ++i) out.push_back(std::byte{0});  // no formats, parameters or results
}

void append_sync(std::basic_string<std::byte>& out) {
  out.push_back(std::byte{fe::kSync});
  put_u32(out, 4);
}

void append_execute(std::basic_string<std::byte>& out, std::string_view portal,
                    std::int32_t max_rows) {
  portal = portal.substr(0, portal.find('\0'));
  out.push_back(std::byte{fe::kExecute});
  put_u32(out, static_cast<std::uint32_t>(4 + portal.size() + 1 + 4));
  put_cstr(out, portal);
  put_u32(out, static_cast<std::uint32_t>(max_rows));
}

void append_copy_fail(std::basic_string<std::byte>& out, std::string_view message) {
  message = message.substr(0, message.find('\0'));
  out.push_back(std::byte{fe::kCopyFail});
  put_u32(out, static_cast<std::uint32_t>(4 + message.size() + 1));
  put_cstr(out, message);
}

void append_parse_typed(std::basic_string<std::byte>& out, std::string_view name,
                        std::string_view sql, Bytes param_types) {
  name = name.substr(0, name.find('\0'));
  sql = sql.substr(0, sql.find('\0'));
  out.push_back(std::byte{fe::kParse});
  put_u32(out, static_cast<std::uint32_t>(4 + name.size() + 1 + sql.size() + 1 + 2 +
                                          param_types.size()));
  put_cstr(out, name);
  put_cstr(out, sql);
  const auto n = static_cast<std::uint16_t>(param_types.size() / 4);
  out.push_back(static_cast<std::byte>(n >> 8));
  out.push_back(static_cast<std::byte>(n & 0xff));
  out.append(param_types.data(), param_types.size());
}

void append_bind_of(std::basic_string<std::byte>& out, const FrontendView& bind,
                    std::string_view statement) {
  statement = statement.substr(0, statement.find('\0'));
  // What follows the statement name (formats, values, result formats) is copied as it is.
  const std::size_t rest_at = 5 + bind.name.size() + 1 + bind.statement.size() + 1;
  const Bytes rest = bind.whole.subspan(rest_at);
  out.push_back(std::byte{fe::kBind});
  put_u32(out, static_cast<std::uint32_t>(4 + bind.name.size() + 1 + statement.size() + 1 +
                                          rest.size()));
  put_cstr(out, bind.name);
  put_cstr(out, statement);
  out.append(rest.data(), rest.size());
}

}  // namespace pgwarden::protocol
