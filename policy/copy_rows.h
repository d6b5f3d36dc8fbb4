// COPY ... TO STDOUT under column rules (issue 14): what the COPY's rows are (a SELECT that
// describes them: the table's columns, or the COPY's query) and the format they come in, from
// the parse tree; and the column rules applied to each row, field by field, in text, CSV and
// binary format. Sans-I/O.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "policy/masking.h"

namespace pgwarden::policy {

struct CopyFormat {
  enum class Kind : std::uint8_t { Text, Csv, Binary };
  Kind kind = Kind::Text;
  char delimiter = '\t';
  char quote = '"';
  char escape = '"';
  std::string null_string = "\\N";
  bool header = false;  // the first row names the columns
};

struct CopyOutStatement {
  std::string select_text;  // a query whose RowDescription is the COPY's columns, in order
  CopyFormat format;
};

// `sql` is exactly one COPY ... TO STDOUT statement whose rows pgwarden can describe and read
// (no ENCODING option); otherwise nullopt (or `why` says what stops it).
std::optional<CopyOutStatement> copy_out_statement(std::string_view sql, std::string& why);

enum class CopyRowResult : std::uint8_t { Keep, Replace, Mismatch };

// Applies the column rules of `plan` to one row of a COPY (one CopyData payload). A field under
// a rule becomes what the same column of a SELECT would: its rule's text for text columns, else
// NULL. `header` is true while the header (the binary file header, or the column names' row of
// HEADER) is still to come; it is cleared once read. Mismatch: the row does not have the
// plan's columns (fail closed).
CopyRowResult mask_copy_row(Masker& masker, const ResultPlan& plan, const CopyFormat& format,
                            std::string_view row, bool& header, std::string& out);

}  // namespace pgwarden::policy
