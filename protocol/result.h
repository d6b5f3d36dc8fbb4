// A small std::expected-like result type for the sans-I/O modules: a value or an Error.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace pgwarden::protocol {

// Why a protocol operation failed. The session maps these to SQLSTATEs.
enum class Errc : unsigned char {
  Malformed,    // broken framing or contents -> 08P01
  Unsupported,  // a valid but unsupported request (protocol version) -> 0A000
  Rejected,     // well-formed but refused (e.g. no user name) -> 28000
};

struct Error {
  Errc code;
  std::string message;  // client-facing text, no internal detail
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  const T& value() const& { return std::get<0>(v_); }
  T& value() & { return std::get<0>(v_); }
  const T& operator*() const& { return value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace pgwarden::protocol
