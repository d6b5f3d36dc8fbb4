// COPY TO STDOUT under column rules: what pgwarden describes for a COPY, and each row masked field
// by field in text, CSV and binary format (escapes, quotes, NULLs, headers, malformed rows).
#include "policy/copy_rows.h"

#include <gtest/gtest.h>

#include "protocol/messages.h"

namespace pgwarden::policy {
namespace {

using Kind = CopyFormat::Kind;

TEST(CopyOut, DescribesTheTableColumnsOrTheQuery) {
  std::string why;
  auto c = copy_out_statement("COPY s.\"T\" (a, \"B\") TO STDOUT", why);
  ASSERT_TRUE(c) << why;
  EXPECT_EQ(c->select_text, "SELECT \"a\", \"B\" FROM ONLY \"s\".\"T\"");
  EXPECT_EQ(c->format.kind, Kind::Text);
  c = copy_out_statement("copy people to stdout with (format csv, header, delimiter ';')", why);
  ASSERT_TRUE(c) << why;
  EXPECT_EQ(c->select_text, "SELECT * FROM ONLY \"people\"");
  EXPECT_EQ(c->format.kind, Kind::Csv);
  EXPECT_TRUE(c->format.header);
  EXPECT_EQ(c->format.delimiter, ';');
  EXPECT_EQ(c->format.null_string, "");
  // HEADER as PostgreSQL reads it; NULL strings refused (a value equal to one passes as is).
  c = copy_out_statement("COPY people TO STDOUT (HEADER 'OFF')", why);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->format.header);
  EXPECT_FALSE(copy_out_statement("COPY people TO STDOUT (HEADER 'maybe')", why));
  EXPECT_FALSE(copy_out_statement("COPY people TO STDOUT (NULL 'x')", why));
  c = copy_out_statement("COPY people TO STDOUT CSV HEADER", why);
  ASSERT_TRUE(c);
  EXPECT_TRUE(c->format.header);
  c = copy_out_statement(
      "COPY (SELECT lower(ssn), ')' AS p /* ) */, $$)$$ FROM people) TO STDOUT BINARY", why);
  ASSERT_TRUE(c) << why;
  EXPECT_EQ(c->select_text, "SELECT lower(ssn), ')' AS p /* ) */, $$)$$ FROM people");
  EXPECT_EQ(c->format.kind, Kind::Binary);
  // Not something pgwarden describes: files, programs, COPY FROM, several statements, ENCODING.
  for (const char* sql : {"COPY people TO '/tmp/x'", "COPY people TO PROGRAM 'cat'",
                          "COPY people FROM STDIN", "COPY people TO STDOUT; SELECT 1",
                          "COPY people TO STDOUT (ENCODING 'LATIN1')", "SELECT 1"}) {
    EXPECT_FALSE(copy_out_statement(sql, why)) << sql;
  }
}

ResultPlan plan_of(std::initializer_list<std::optional<MaskAction>> rules) {
  ResultPlan p;
  p.known = p.active = true;
  for (const auto& r : rules) {
    MaskColumn c;
    c.kind = ValueKind::Text;
    c.rule = r;
    p.columns.push_back(c);
  }
  return p;
}

TEST(CopyOut, TextRowsFieldByField) {
  Masker m("k");
  const ResultPlan plan = plan_of({std::nullopt, MaskAction::Redact, MaskAction::Null});
  CopyFormat f;
  std::string out;
  bool header = false;
  EXPECT_EQ(mask_copy_row(m, plan, f, "1\tsecret\\tvalue\\\\\tx\n", header, out),
            CopyRowResult::Replace);
  EXPECT_EQ(out, "1\tREDACTED\t\\N\n");
  // NULLs stay NULL; escaped delimiters do not split a field.
  EXPECT_EQ(mask_copy_row(m, plan, f, "a\\tb\t\\N\t\\N\n", header, out), CopyRowResult::Keep);
  // A row that does not have the described columns: fail closed.
  EXPECT_EQ(mask_copy_row(m, plan, f, "1\tonly two\n", header, out), CopyRowResult::Mismatch);
  EXPECT_EQ(mask_copy_row(m, plan, f, "1\ta\tb\tc\n", header, out), CopyRowResult::Mismatch);
  EXPECT_EQ(mask_copy_row(m, plan, f, "1\ta\tb\\", header, out), CopyRowResult::Mismatch);
  // The header row of HEADER is the columns' names.
  header = true;
  EXPECT_EQ(mask_copy_row(m, plan, f, "id\tssn\tsecret\n", header, out), CopyRowResult::Keep);
  EXPECT_FALSE(header);
}

TEST(CopyOut, CsvRowsWithQuotesEscapesAndOtherDelimiters) {
  Masker m("k");
  const ResultPlan plan = plan_of({std::nullopt, MaskAction::Redact, MaskAction::Hash});
  CopyFormat f;
  f.kind = Kind::Csv;
  f.delimiter = ',';
  f.null_string.clear();
  std::string out;
  bool header = false;
  EXPECT_EQ(mask_copy_row(m, plan, f, "1,\"a,\"\"b\"\"\nc\",plain\n", header, out),
            CopyRowResult::Replace);
  EXPECT_EQ(out.substr(0, 13), "1,\"REDACTED\",");
  std::string hash_plain;
  m.apply_whole(MaskAction::Hash, "plain", hash_plain);
  EXPECT_EQ(out, "1,\"REDACTED\",\"" + hash_plain + "\"\n");  // the same pseudonym as SELECT's
  // An unquoted empty field is NULL; a quoted empty one is a value.
  EXPECT_EQ(mask_copy_row(m, plan, f, "1,,\"\"\n", header, out), CopyRowResult::Replace);
  EXPECT_EQ(out.substr(0, 3), "1,,");
  f.delimiter = ';';
  f.escape = '\\';
  EXPECT_EQ(mask_copy_row(m, plan, f, "1;\"x\\\";y\";\n", header, out), CopyRowResult::Replace);
  EXPECT_EQ(out, "1;\"REDACTED\";\n");
  EXPECT_EQ(mask_copy_row(m, plan, f, "1;\"unterminated;x\n", header, out),
            CopyRowResult::Mismatch);
}

TEST(CopyOut, BinaryRowsWithHeaderAndTrailer) {
  Masker m("k");
  const ResultPlan plan = plan_of({std::nullopt, MaskAction::Redact});
  CopyFormat f;
  f.kind = Kind::Binary;
  auto i16 = [](int v) {
    return std::string{static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
  };
  auto i32 = [](std::int32_t v) {
    std::string s;
    for (int sh = 24; sh >= 0; sh -= 8)
      s += static_cast<char>((static_cast<std::uint32_t>(v) >> sh) & 0xff);
    return s;
  };
  const std::string head = std::string("PGCOPY\n\xff\r\n\0", 11) + i32(0) + i32(0);
  const std::string row = i16(2) + i32(1) + "7" + i32(6) + "secret";
  bool header = true;
  std::string out;
  ASSERT_EQ(mask_copy_row(m, plan, f, head + row, header, out), CopyRowResult::Replace);
  EXPECT_FALSE(header);
  EXPECT_EQ(out, head + i16(2) + i32(1) + "7" + i32(8) + "REDACTED");
  EXPECT_EQ(mask_copy_row(m, plan, f, i16(2) + i32(1) + "7" + i32(-1), header, out),
            CopyRowResult::Keep);
  EXPECT_EQ(mask_copy_row(m, plan, f, i16(-1), header, out), CopyRowResult::Keep);  // trailer
  EXPECT_EQ(mask_copy_row(m, plan, f, i16(3) + i32(1) + "7", header, out), CopyRowResult::Mismatch);
  EXPECT_EQ(mask_copy_row(m, plan, f, i16(2) + i32(1) + "7" + i32(100) + "x", header, out),
            CopyRowResult::Mismatch);
  bool fresh = true;
  EXPECT_EQ(mask_copy_row(m, plan, f, "NOTPGCOPY.........", fresh, out), CopyRowResult::Mismatch);
}

}  // namespace
}  // namespace pgwarden::policy
