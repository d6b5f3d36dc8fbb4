// Masking on protocol bytes: profiles parsed from policy JSON (and rejected when wrong), DataRows
// masked by column rules and content detectors in text and binary formats, type awareness (a
// masked value still parses as its type or is NULL), errors, which RowDescription describes a
// pipeline's rows, and hostile or malformed messages.
#include "policy/masking.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <fstream>

#include "policy/rules.h"

namespace pgwarden::policy {
namespace {

using Msg = std::basic_string<std::byte>;

void put16(Msg& m, std::uint16_t v) {
  m.push_back(static_cast<std::byte>(v >> 8));
  m.push_back(static_cast<std::byte>(v & 0xff));
}
void put32(Msg& m, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) m.push_back(static_cast<std::byte>((v >> s) & 0xff));
}
void put_str(Msg& m, std::string_view s) {
  m.append(reinterpret_cast<const std::byte*>(s.data()), s.size());
}
Msg finish(char type, const Msg& body) {
  Msg m;
  m.push_back(static_cast<std::byte>(type));
  put32(m, static_cast<std::uint32_t>(body.size() + 4));
  return m + body;
}

struct Col {
  std::string name;
  std::uint32_t type;
  std::uint16_t format = 0;
  std::uint32_t table = 0;
  std::int16_t attnum = 0;
};

Msg row_description(const std::vector<Col>& cols) {
  Msg b;
  put16(b, static_cast<std::uint16_t>(cols.size()));
  for (const Col& c : cols) {
    put_str(b, c.name);
    b.push_back(std::byte{0});
    put32(b, c.table);
    put16(b, static_cast<std::uint16_t>(c.attnum));
    put32(b, c.type);
    put16(b, 0xffff);
    put32(b, 0xffffffff);
    put16(b, c.format);
  }
  return finish('T', b);
}

Msg data_row(const std::vector<std::optional<std::string>>& values) {
  Msg b;
  put16(b, static_cast<std::uint16_t>(values.size()));
  for (const auto& v : values) {
    if (!v) {
      put32(b, 0xffffffff);
      continue;
    }
    put32(b, static_cast<std::uint32_t>(v->size()));
    put_str(b, *v);
  }
  return finish('D', b);
}

// The values of a DataRow (nullopt for NULL); checks the framing is exact.
std::vector<std::optional<std::string>> values_of(const Msg& m) {
  EXPECT_EQ(static_cast<char>(m[0]), 'D');
  auto u32 = [&](std::size_t at) {
    return (std::to_integer<std::uint32_t>(m[at]) << 24) |
           (std::to_integer<std::uint32_t>(m[at + 1]) << 16) |
           (std::to_integer<std::uint32_t>(m[at + 2]) << 8) |
           std::to_integer<std::uint32_t>(m[at + 3]);
  };
  EXPECT_EQ(u32(1), m.size() - 1);
  const std::size_t n =
      (std::to_integer<std::size_t>(m[5]) << 8) | std::to_integer<std::size_t>(m[6]);
  std::vector<std::optional<std::string>> out;
  std::size_t i = 7;
  for (std::size_t c = 0; c < n; ++c) {
    const std::uint32_t len = u32(i);
    i += 4;
    if (len == 0xffffffff) {
      out.emplace_back(std::nullopt);
      continue;
    }
    out.emplace_back(std::string(reinterpret_cast<const char*>(m.data()) + i, len));
    i += len;
  }
  EXPECT_EQ(i, m.size());
  return out;
}

std::shared_ptr<const Policy> policy_of(const std::string& json) {
  auto p = Policy::parse(json, "test.json");
  EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message);
  return p.ok() ? *p : nullptr;
}

const std::string kPolicy = R"({
  "masking": [
    {"name": "compliance", "groups": ["compliance"], "exempt": true},
    {"name": "everyone",
     "columns": [{"column": "ssn", "table": "public.customers", "action": "partial"},
                 {"column": "*secret*", "action": "null"},
                 {"column": "api_key", "action": "hash"},
                 {"column": "salary", "action": "redact"}],
     "detectors": {"card_number": "partial", "ssn": "redact", "email": "hash",
                   "phone": "partial", "iban": "partial"},
     "custom": [{"name": "employee", "pattern": "EMP-\\d{6}", "action": "redact"}]}
  ]
})";

class MaskingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    policy_ = policy_of(kPolicy);
    ASSERT_NE(policy_, nullptr);
    profile_ = policy_->mask_profile("someone", {});
    ASSERT_NE(profile_, nullptr);
  }
  // Masks one row described by `cols`; returns the values the client gets.
  std::vector<std::optional<std::string>> mask(const std::vector<Col>& cols,
                                               const std::vector<std::optional<std::string>>& row,
                                               bool* changed = nullptr,
                                               const MaskedAttrs* attrs = nullptr) {
    ResultPlan plan;
    const Msg t = row_description(cols);
    EXPECT_TRUE(build_plan(*profile_, attrs, t, "", plan));
    const Msg d = data_row(row);
    Msg out;
    const bool c = masker_.mask_row(*profile_, plan, d, out);
    if (changed != nullptr) *changed = c;
    return c ? values_of(out) : values_of(d);
  }
  std::shared_ptr<const Policy> policy_;
  const MaskProfile* profile_ = nullptr;
  Masker masker_{std::string(32, 'k')};
};

TEST_F(MaskingTest, ProfilesMatchByGroupAndExemptionIsKept) {
  const MaskProfile* c = policy_->mask_profile("alice", {"dev", "compliance"});
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->exempt);
  EXPECT_EQ(profile_->name, "everyone");
  EXPECT_FALSE(profile_->exempt);
  EXPECT_TRUE(profile_->scans());
  EXPECT_EQ(policy_of(R"({"rules": []})")->mask_profile("x", {}), nullptr);
}

TEST_F(MaskingTest, ContentDetectorsReplaceOnlyTheFindingInTextValues) {
  const auto by = [&](PiiKind k) { return masker_.replaced_by(static_cast<std::size_t>(k)); };
  const std::uint64_t cards = by(PiiKind::CardNumber), ssns = by(PiiKind::Ssn),
                      custom = by(PiiKind::Custom), phones = by(PiiKind::Phone);
  bool changed = false;
  const auto v = mask({{"note", 25}, {"id", 23}},
                      {"card 4111 1111 1111 1111, ssn 123-45-6789 by EMP-004211", "7"}, &changed);
  EXPECT_TRUE(changed);
  EXPECT_EQ(*v[0], "card **** **** **** 1111, ssn REDACTED by REDACTED");
  EXPECT_EQ(*v[1], "7");
  const auto p =
      mask({{"phone", 1043}, {"iban", 25}}, {"call (415) 555-2671", "DE89 3704 0044 0532 0130 00"});
  EXPECT_EQ(*p[0], "call (***) ***-2671");
  EXPECT_EQ(*p[1], "DE** **** **** **** **30 00");
  // Counted for /metrics by the detector that found each value.
  EXPECT_EQ(by(PiiKind::CardNumber), cards + 1);
  EXPECT_EQ(by(PiiKind::Ssn), ssns + 1);
  EXPECT_EQ(by(PiiKind::Custom), custom + 1);
  EXPECT_EQ(by(PiiKind::Phone), phones + 1);
  EXPECT_STREQ(Masker::detector_name(static_cast<std::size_t>(PiiKind::CardNumber)), "card_number");
  EXPECT_STREQ(Masker::detector_name(Masker::kByColumnRule), "column");
}

// A value too long in candidates to scan (a run of digits: candidates at nearly every end) is
// not forwarded: it becomes NULL, and the row after it is masked as before.
TEST_F(MaskingTest, AValueOfTooManyCandidatesIsHiddenWhole) {
  const std::string digits(4 * PiiScanner::kMaxCandidates, '7');
  bool changed = false;
  const auto v = mask({{"note", 25}, {"id", 23}}, {digits, "7"}, &changed);
  EXPECT_TRUE(changed);
  EXPECT_FALSE(v[0].has_value());
  EXPECT_EQ(*v[1], "7");
  const auto after = mask({{"note", 25}}, {"ssn 123-45-6789"});
  EXPECT_EQ(*after[0], "ssn REDACTED");
}

TEST_F(MaskingTest, CleanRowsAreNotCopied) {
  bool changed = true;
  const auto v = mask({{"note", 25}, {"n", 1700}, {"at", 1184}},
                      {"order 1234 shipped, uuid 550e8400-e29b-41d4-a716-446655440000", "12.50",
                       "2026-11-21 14:50:10.123456+00"},
                      &changed);
  EXPECT_FALSE(changed);
}

TEST_F(MaskingTest, HashIsDeterministicAcrossSpellingsAndKeyed) {
  const auto a = mask({{"x", 25}}, {"4111 1111 1111 1111 and BOB@example.com"});
  const auto b = mask({{"x", 25}}, {"4111-1111-1111-1111 and bob@example.com"});
  // Cards are partial here; e-mails are hashed: the same address gives the same pseudonym.
  const std::string ha = a[0]->substr(a[0]->find("email_"));
  EXPECT_EQ(ha, b[0]->substr(b[0]->find("email_")));
  EXPECT_EQ(ha.size(), 6u + 16u);
  Masker other{std::string(32, 'z')};
  ResultPlan plan;
  ASSERT_TRUE(build_plan(*profile_, nullptr, row_description({{"x", 25}}), "", plan));
  Msg out;
  ASSERT_TRUE(other.mask_row(*profile_, plan, data_row({"bob@example.com"}), out));
  EXPECT_NE(*values_of(out)[0], ha);
}

TEST_F(MaskingTest, TypeAwareNonTextValuesBecomeNull) {
  // A card in an int8 or numeric column cannot be starred: NULL. uuid and timestamps are not
  // scanned; a JSON number is not inside a string: the whole value goes NULL.
  const auto v =
      mask({{"c", 20}, {"n", 1700}, {"u", 2950}, {"j", 114}, {"j2", 3802}},
           {"4111111111111111", "4111111111111111", "41111111-1111-1111-1111-111111111111",
            R"({"n": 4111111111111111})", R"({"card": "4111-1111-1111-1111", "x": 1})"});
  EXPECT_FALSE(v[0]);
  EXPECT_FALSE(v[1]);
  EXPECT_EQ(*v[2], "41111111-1111-1111-1111-111111111111");
  EXPECT_FALSE(v[3]);
  ASSERT_TRUE(v[4]);
  EXPECT_EQ(*v[4], R"({"card": "****-****-****-1111", "x": 1})");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  EXPECT_EQ(parser.parse(*v[4]).get(doc), simdjson::SUCCESS);  // still valid JSON
  // Arrays keep their shape.
  const auto arr = mask({{"tags", 1009}}, {R"({a,"bob@example.com",c})"});
  EXPECT_EQ(arr[0]->front(), '{');
  EXPECT_EQ(arr[0]->find("bob@example.com"), std::string::npos);
}

TEST_F(MaskingTest, BinaryIntegersAndNumericsAreDecodedBeforeScanning) {
  // 4111111111111111 as binary int8, and as binary numeric (base-10000 digits 4111 1111 1111 1111).
  std::string int8(8, '\0');
  std::uint64_t card = 4111111111111111ull;
  for (int i = 7; i >= 0; --i, card >>= 8) int8[i] = static_cast<char>(card & 0xff);
  std::string numeric = {0, 4, 0, 3, 0, 0, 0, 0};
  for (const std::uint16_t d : {4111, 1111, 1111, 1111}) {
    numeric += static_cast<char>(d >> 8);
    numeric += static_cast<char>(d & 0xff);
  }
  std::string small(8, '\0');
  small[7] = 42;
  const auto v = mask({{"a", 20, 1}, {"b", 1700, 1}, {"c", 20, 1}, {"d", 20, 1}},
                      {int8, numeric, small, std::string("bad")});
  EXPECT_FALSE(v[0]);
  EXPECT_FALSE(v[1]);
  EXPECT_EQ(*v[2], small);
  EXPECT_FALSE(v[3]);  // not an int8's length: fail closed
  // Binary text is the raw bytes: masked in place like text.
  const auto t = mask({{"t", 25, 1}}, {"mail bob@example.com"});
  EXPECT_EQ(t[0]->find("bob@example.com"), std::string::npos);
}

TEST_F(MaskingTest, ColumnRulesByNameAndThroughTheCatalog) {
  const std::uint64_t by_rule = masker_.replaced_by(Masker::kByColumnRule);
  MaskedAttrs attrs;
  attrs.action_of[MaskedAttrs::key(16384, 4)] = MaskAction::Partial;  // public.customers.ssn
  // Aliased ("s") but the table OID and column number say it is customers.ssn.
  const auto v =
      mask({{"s", 25, 0, 16384, 4},
            {"my_secret_thing", 25},
            {"salary", 23},
            {"api_key", 25},
            {"ssn", 25, 0, 99999, 2}},
           {"123-45-6789", "hunter2", "100000", "k-123", "no ssn here"}, nullptr, &attrs);
  EXPECT_EQ(*v[0], "***-**-6789");
  EXPECT_FALSE(v[1]);  // null
  EXPECT_FALSE(v[2]);  // redact on an int4: NULL, never "REDACTED" in an integer column
  EXPECT_EQ(v[3]->rfind("pii_", 0), 0u);
  EXPECT_EQ(*v[4], "no ssn here");  // another table's ssn: the qualified rule does not apply
  EXPECT_EQ(masker_.replaced_by(Masker::kByColumnRule), by_rule + 2);  // the ssn and the api_key
  // Without the catalog, the qualified rule cannot match by name alone.
  const auto w = mask({{"ssn", 25, 0, 16384, 4}}, {"plain"});
  EXPECT_EQ(*w[0], "plain");
}

TEST_F(MaskingTest, PartialHidesWholeWhatDoesNotLookLikeItsKind) {
  MaskedAttrs attrs;
  attrs.action_of[MaskedAttrs::key(16384, 4)] = MaskAction::Partial;
  const std::vector<Col> cols(9, Col{"s", 25, 0, 16384, 4});
  const auto v = mask(cols,
                      {"123-45-6789", " 4111 1111 1111 1111 ", "N/A", "TBD", "1234", "12-34", "",
                       "unknown 123-45-6789", "bob@example.com"},
                      nullptr, &attrs);
  EXPECT_EQ(*v[0], "***-**-6789");
  EXPECT_EQ(*v[1], " **** **** **** 1111 ");
  // Placeholders and malformed values: nothing of them is shown.
  for (std::size_t i = 2; i <= 7; ++i) EXPECT_EQ(*v[i], "REDACTED") << i;
  EXPECT_EQ(*v[8], "b***@example.com");
}

TEST(PiiPhones, NationalNumbersAreValidatedForTheProfilesRegions) {
  auto gb = PiiDetectors::build({}, {"GB"});
  auto fr = PiiDetectors::build({}, {"FR"});
  ASSERT_TRUE(gb.ok() && fr.ok());
  PiiScanner scanner;
  std::vector<PiiFinding> found;
  ASSERT_TRUE(scanner.scan("tel 020 7946 0958", **gb, found));
  EXPECT_EQ(found.size(), 1u);
  ASSERT_TRUE(scanner.scan("tel 020 7946 0958", **fr, found));
  EXPECT_TRUE(found.empty());  // not a French number
  ASSERT_TRUE(scanner.scan("tel 01 23 45 67 89", **fr, found));
  EXPECT_EQ(found.size(), 1u);
  // International numbers say their country: found whatever the regions.
  ASSERT_TRUE(scanner.scan("tel +33 1 23 45 67 89", **gb, found));
  EXPECT_EQ(found.size(), 1u);
}

TEST_F(MaskingTest, LookalikeFindingsAreHiddenWholeEvenUnderPartial) {
  // A card written with no-break spaces, and one in fullwidth digits: partial keeps nothing.
  const std::string nbsp = "paid 4111\u00a01111\u00a01111\u00a01111 ok";
  const std::string wide =
      "\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11"
      "\uff11\uff11\uff11\uff11";
  std::string out;
  ASSERT_TRUE(masker_.mask_text(*profile_, nbsp, out));
  EXPECT_EQ(out, "paid REDACTED ok");
  ASSERT_TRUE(masker_.mask_text(*profile_, wide, out));
  EXPECT_EQ(out, "REDACTED");
}

TEST_F(MaskingTest, NullsAndNullActionsAndUnknownPlans) {
  const auto v = mask({{"a", 25}, {"b", 25}}, {std::nullopt, "x"});
  EXPECT_FALSE(v[0]);
  // No RowDescription known (a client that never described): with column rules every value is
  // NULL, since no column can be told apart.
  ResultPlan blind;
  blind.active = true;
  Msg out;
  ASSERT_TRUE(masker_.mask_row(*profile_, blind, data_row({"x", "123-45-6789"}), out));
  const auto b = values_of(out);
  EXPECT_FALSE(b[0]);
  EXPECT_FALSE(b[1]);
}

TEST_F(MaskingTest, ErrorFieldsAreMasked) {
  Msg body;
  for (const auto& [code, text] : std::vector<std::pair<char, std::string>>{
           {'S', "ERROR"},
           {'C', "23505"},
           {'M', "duplicate key value violates unique constraint \"customers_email_key\""},
           {'D', "Key (email)=(bob@example.com) already exists."}}) {
    body.push_back(static_cast<std::byte>(code));
    put_str(body, text);
    body.push_back(std::byte{0});
  }
  body.push_back(std::byte{0});
  const Msg e = finish('E', body);
  Msg out;
  ASSERT_TRUE(masker_.mask_error(*profile_, e, out));
  const std::string s(reinterpret_cast<const char*>(out.data()), out.size());
  EXPECT_EQ(s.find("bob@example.com"), std::string::npos);
  EXPECT_NE(s.find("Key (email)=(email_"), std::string::npos);
  EXPECT_NE(s.find("23505"), std::string::npos);
  const std::uint32_t len = (std::to_integer<std::uint32_t>(out[1]) << 24) |
                            (std::to_integer<std::uint32_t>(out[2]) << 16) |
                            (std::to_integer<std::uint32_t>(out[3]) << 8) |
                            std::to_integer<std::uint32_t>(out[4]);
  EXPECT_EQ(len, out.size() - 1);
  EXPECT_EQ(out.back(), std::byte{0});
}

std::string be32s(std::uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>((v >> 16) & 0xff),
          static_cast<char>((v >> 8) & 0xff), static_cast<char>(v & 0xff)};
}
std::string int8_binary(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[i] = static_cast<char>(v & 0xff);
  return out;
}
// A one-dimensional binary array (array_send) of `elem` typed elements.
std::string binary_array(std::uint32_t elem, const std::vector<std::string>& items) {
  std::string out = be32s(1) + be32s(0) + be32s(elem) +
                    be32s(static_cast<std::uint32_t>(items.size())) + be32s(1);
  for (const std::string& i : items) out += be32s(static_cast<std::uint32_t>(i.size())) + i;
  return out;
}
// A binary record (record_send).
std::string binary_record(const std::vector<std::pair<std::uint32_t, std::string>>& fields) {
  std::string out = be32s(static_cast<std::uint32_t>(fields.size()));
  for (const auto& [type, v] : fields)
    out += be32s(type) + be32s(static_cast<std::uint32_t>(v.size())) + v;
  return out;
}

// Guarantee 4: binary values nested in arrays and composites are looked into down to their
// scalars: an SSN kept as an int8 inside an int8[] inside a record is found.
TEST_F(MaskingTest, BinaryArraysAndRecordsAreLookedIntoDownToTheirScalars) {
  const std::string card_int = int8_binary(4111111111111111ull);
  const std::string ints = binary_array(20, {int8_binary(7), card_int});
  const std::string texts = binary_array(25, {"plain", "mail bob@example.com"});
  const std::string nested = binary_record({{23, std::string(4, '\0')}, {1016, ints}});
  const std::string clean = binary_array(20, {int8_binary(7), int8_binary(8)});
  // Type OIDs: int8[] 1016, text[] 1009, a composite (made-up OID), int8[] clean.
  const auto v = mask({{"a", 1016, 1}, {"b", 1009, 1}, {"c", 91234, 1}, {"d", 1016, 1}},
                      {ints, texts, nested, clean});
  EXPECT_FALSE(v[0]);
  EXPECT_FALSE(v[1]);
  EXPECT_FALSE(v[2]);
  EXPECT_EQ(*v[3], clean);
  // Rows of unknown shape (nothing describes them) get the same look, every way a value could
  // be read: here a binary int8 with a card number, under a detector-only profile.
  auto detectors_only =
      policy_of(R"({"masking": [{"name": "d", "detectors": {"card_number": "redact"}}]})");
  const MaskProfile& d = detectors_only->masking()[0];
  ResultPlan blind;
  blind.active = true;
  Msg out;
  ASSERT_TRUE(masker_.mask_row(d, blind, data_row({card_int, std::string("x")}), out));
  const auto b = values_of(out);
  EXPECT_FALSE(b[0]);
  EXPECT_EQ(*b[1], "x");
}

// Binary COPY: fields carry no types; a field with a finding becomes NULL, the header and the
// trailer pass, and the tuple stays well-formed.
TEST_F(MaskingTest, BinaryCopyFieldsWithFindingsBecomeNull) {
  const std::string header = std::string("PGCOPY\n\377\r\n\0", 11) + be32s(0) + be32s(0);
  const std::string row = std::string("\0\x03", 2) + be32s(4) + std::string("\0\0\0\x07", 4) +
                          be32s(8) + int8_binary(4111111111111111ull) + be32s(15) +
                          "bob@example.com";
  bool first = true;
  std::string out;
  ASSERT_TRUE(masker_.mask_binary_copy(*profile_, header + row, first, out));
  EXPECT_FALSE(first);
  EXPECT_EQ(out.substr(0, header.size()), header);
  const std::string masked = out.substr(header.size());
  EXPECT_EQ(masked, std::string("\0\x03", 2) + be32s(4) + std::string("\0\0\0\x07", 4) +
                        be32s(0xffffffffu) + be32s(0xffffffffu));
  EXPECT_FALSE(masker_.mask_binary_copy(*profile_, std::string("\xff\xff", 2), first, out));
  const std::string clean = std::string("\0\x01", 2) + be32s(2) + "ok";
  EXPECT_FALSE(masker_.mask_binary_copy(*profile_, clean, first, out));
}

TEST_F(MaskingTest, CopyTextKeepsDelimitersAndBinaryKeepsLength) {
  std::string out;
  ASSERT_TRUE(masker_.mask_text(*profile_, "1\tbob@example.com\t123-45-6789\n", out));
  EXPECT_EQ(out.find("bob@example.com"), std::string::npos);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\t'), 2);
  const std::string bin = std::string("\0\x02\0\0\0\x0f", 6) + "bob@example.com";
  ASSERT_TRUE(masker_.mask_text(*profile_, bin, out, true));
  EXPECT_EQ(out.size(), bin.size());
  EXPECT_EQ(out.substr(6), std::string(15, '*'));
}

TEST_F(MaskingTest, EveryCorpusFindingIsGoneAndLookalikesPass) {
  std::ifstream in(std::string(PGW_TEST_DATA) + "/pii_corpus.txt");
  std::string line;
  int masked = 0, passed = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto t1 = line.find('\t'), t2 = line.find('\t', t1 + 1);
    const std::string expect = line.substr(0, t1), value = line.substr(t2 + 1);
    if (expect == "mask") {
      EXPECT_TRUE(may_hold_builtin_pii(value)) << value;  // the gate never skips a finding
    }
    bool changed = false;
    const auto v = mask({{"v", 25}}, {value}, &changed);
    if (expect == "mask") {
      EXPECT_TRUE(changed) << value;
      ++masked;
    } else {
      EXPECT_FALSE(changed) << value << " -> " << v[0].value_or("NULL");
      ++passed;
    }
  }
  EXPECT_GE(masked + passed, 100);
}

TEST_F(MaskingTest, HostileMessagesDoNotCrashAndAreNotRewritten) {
  ResultPlan plan;
  // Truncated or lying RowDescriptions are refused (the plan stays blind).
  Msg t = row_description({{"a", 25}, {"b", 25}});
  EXPECT_FALSE(build_plan(*profile_, nullptr, Msg(t.data(), t.size() - 3), "", plan));
  Msg lying = t;
  lying[6] = std::byte{0xff};
  EXPECT_FALSE(build_plan(*profile_, nullptr, lying, "", plan));
  ASSERT_TRUE(build_plan(*profile_, nullptr, t, "", plan));
  // DataRows whose lengths run past the end: the client gets what the server sent.
  Msg d = data_row({"bob@example.com", "x"});
  Msg out;
  for (std::size_t cut = 5; cut < d.size(); ++cut) {
    EXPECT_FALSE(masker_.mask_row(*profile_, plan, Msg(d.data(), cut), out)) << cut;
  }
  Msg huge = d;
  huge[7] = std::byte{0x7f};  // first value claims ~2 GB
  EXPECT_FALSE(masker_.mask_row(*profile_, plan, huge, out));
  // More values than described: the extra ones are handled blind (scanned, NULL on a finding).
  const auto v = values_of([&] {
    Msg o;
    EXPECT_TRUE(masker_.mask_row(*profile_, plan, data_row({"a", "b", "bob@example.com"}), o));
    return o;
  }());
  EXPECT_FALSE(v[2]);
  // Unterminated error fields are left alone.
  Msg e = finish('E', Msg(reinterpret_cast<const std::byte*>("Mbob@example.com"), 16));
  EXPECT_FALSE(masker_.mask_error(*profile_, e, out));
  // Long digit runs and binary junk.
  std::string junk(1 << 16, '4');
  junk += std::string("\0\xff@@.", 5);
  const auto j = mask({{"x", 25}}, {junk});
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0], junk);  // one digit run with no word boundary inside: no card in it
}

TEST(MaskingPolicy, InvalidProfilesAreRejectedWithTheirPath) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"masking": {}})", "$.masking: must be an array"},
      {R"({"masking": [{"columns": []}]})", "$.masking[0].name"},
      {R"({"masking": [{"name": ""}]})", "$.masking[0].name: must be a non-empty string"},
      {R"({"masking": [{"name": 7}]})", "$.masking[0].name: must be a non-empty string"},
      {R"({"masking": [{"name": "a", "colour": 1}]})", "$.masking[0].colour: unknown key"},
      {R"({"masking": [{"name": "a", "phone_regions": ["GB", "XX"]}]})",
       "$.masking[0].phone_regions[1]: not a region libphonenumber knows"},
      {R"({"masking": [{"name": "a", "phone_regions": "GB"}]})",
       "$.masking[0].phone_regions: must be an array"},
      {R"({"masking": [{"name": "a", "columns": [{"column": "x", "action": "scramble"}]}]})",
       "$.masking[0].columns[0].action: must be redact, partial, hash or null"},
      {R"({"masking": [{"name": "a", "columns": [{"action": "null"}]}]})",
       "$.masking[0].columns[0].column"},
      {R"({"masking": [{"name": "a", "columns": [{"column": "x"}]}]})",
       "$.masking[0].columns[0].action: missing"},
      {R"({"masking": [{"name": "a", "columns": [{"column": "x", "table": "a.b.c", "action": "null"}]}]})",
       "$.masking[0].columns[0].table"},
      {R"({"masking": [{"name": "a", "detectors": {"dna": "redact"}}]})",
       "$.masking[0].detectors.dna: unknown detector"},
      {R"({"masking": [{"name": "a", "custom": [{"name": "x", "pattern": "(", "action": "redact"}]}]})",
       "$.masking[0].custom"},
      {R"({"masking": [{"name": "a", "exempt": true, "detectors": {"ssn": "null"}}]})",
       "exempt profile"},
      {R"({"masking": [{"name": "a", "conditions": "deny"}]})",
       "$.masking[0].conditions: must be \"allow\" (the default) or \"refuse\""},
  };
  for (const auto& [json, want] : cases) {
    auto p = Policy::parse(json, "bad.json");
    ASSERT_FALSE(p.ok()) << json;
    EXPECT_NE(p.error().message.find(want), std::string::npos) << p.error().message;
    EXPECT_EQ(p.error().message.rfind("bad.json: ", 0), 0u);
  }
}

TEST(MaskingPolicy, CatalogQueryQuotesNamesAndEscapesPatterns) {
  auto p = Policy::parse(
      R"({"masking": [{"name": "a", "columns": [
           {"column": "o'brien_*", "table": "Sales.T%", "action": "null"}]}]})",
      "q.json");
  ASSERT_TRUE(p.ok()) << p.error().message;
  const std::string q = (*p)->masking()[0].catalog_query();
  // Both sides through PostgreSQL's lower(): quoted and non-ASCII names match whatever their case.
  EXPECT_NE(q.find("pg_catalog.lower(pg_catalog.like_escape('o''brien!_%'::pg_catalog.text, "
                   "'!'::pg_catalog.text))"),
            std::string::npos)
      << q;
  EXPECT_NE(q.find("lower(c.relname::pg_catalog.text) OPERATOR(pg_catalog.=) "
                   "pg_catalog.lower('t%'::pg_catalog.text)"),
            std::string::npos)
      << q;
  EXPECT_NE(q.find("lower(n.nspname::pg_catalog.text) OPERATOR(pg_catalog.=) "
                   "pg_catalog.lower('sales'::pg_catalog.text)"),
            std::string::npos)
      << q;
  // It runs under the caller's search_path: nothing in it may resolve outside pg_catalog.
  for (const char* bare : {" lower(", " LIKE ", " = ", " > ", "::int8"}) {
    EXPECT_EQ(q.find(bare), std::string::npos) << bare << " in " << q;
  }
}

}  // namespace
}  // namespace pgwarden::policy
