// JSON strings as pgwarden writes them: escapes, UTF-8 kept, invalid bytes escaped one by one.
#include "protocol/json.h"

#include <gtest/gtest.h>

namespace pgwarden::protocol {
namespace {

TEST(JsonString, EscapesControlQuotesAndInvalidUtf8) {
  std::string out;
  append_json_string(out, std::string("a\"b\\c\n\t\x01 \xc3\xa9 \xff\x95\\\0z", 17));
  EXPECT_EQ(out, "\"a\\\"b\\\\c\\n\\t\\u0001 \xc3\xa9 \\u00ff\\u0095\\\\\\u0000z\"");
}

}  // namespace
}  // namespace pgwarden::protocol
