#include <catch2/catch.hpp>

#include "coexist/csv.hpp"
#include "coexist/record.hpp"

using namespace coexist;

TEST_CASE("user records round-trip through the v1 encoding") {
    UserRecord r{State::dual, "jsmith@contoso.onmicrosoft.com", "wave 2", 1763850000, Owner::admin, {}, {}, {}, {}, 0};
    const std::string bytes = encode(r);
    CHECK(static_cast<unsigned char>(bytes[0]) == kRecordVersion);
    CHECK(decode_user(bytes) == r);
    CHECK(decode_user(encode(UserRecord{})) == UserRecord{});
}

TEST_CASE("decode_user refuses anything it does not fully understand") {
    const std::string good = encode(UserRecord{State::migrated, "t@x.org", "b", 5, Owner::admin, {}, {}, {}, {}, 0});
    CHECK_FALSE(decode_user(""));
    std::string unknown_version = good;
    unknown_version[0] = '\x04';
    CHECK_FALSE(decode_user(unknown_version));
    std::string bad_state = good;
    bad_state[1] = 7;
    CHECK_FALSE(decode_user(bad_state));
    for (std::size_t n = 0; n < good.size(); ++n) CHECK_FALSE(decode_user(good.substr(0, n)));  // truncated
    CHECK_FALSE(decode_user(good + "x"));  // trailing bytes
}

TEST_CASE("directory-owned records use the v2 encoding; admin-owned ones stay v1") {
    UserRecord owned{State::source, "", "wave 3", 1763850000, Owner::directory, State::migrated,
                     "uid=ann,ou=people,dc=contoso,dc=com", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", {}, 0};
    const std::string bytes = encode(owned);
    CHECK(static_cast<unsigned char>(bytes[0]) == kRecordVersionOwned);
    REQUIRE(decode_user(bytes) == owned);
    CHECK(decode_user(bytes)->effective_state() == State::migrated);
    owned.override_state.reset();
    CHECK(decode_user(encode(owned)) == owned);
    CHECK(decode_user(encode(owned))->effective_state() == State::source);
    std::string bad_flags = encode(owned);
    bad_flags[10] = 4;  // an unknown flag: a newer writer's record
    CHECK_FALSE(decode_user(bad_flags));
    const std::string good = encode(UserRecord{State::dual, "t@x.org", "b", 5, Owner::directory, State::source, "cn=x", "u", {}, 0});
    for (std::size_t n = 0; n < good.size(); ++n) CHECK_FALSE(decode_user(good.substr(0, n)));
    CHECK_FALSE(decode_user(good + "x"));
    std::string bad_override = good;
    bad_override[11] = 9;
    CHECK_FALSE(decode_user(bad_override));
}

TEST_CASE("records with a scheduled change use the v3 encoding; the change applies at its second") {
    UserRecord r{State::source, "", "wave 1", 1763850000, Owner::admin, {}, {}, {}, State::migrated, 1800000000};
    const std::string bytes = encode(r);
    CHECK(static_cast<unsigned char>(bytes[0]) == kRecordVersionScheduled);
    REQUIRE(decode_user(bytes) == r);
    for (std::size_t n = 0; n < bytes.size(); ++n) CHECK_FALSE(decode_user(bytes.substr(0, n)));
    CHECK_FALSE(decode_user(bytes + "x"));
    std::string bad_pending = bytes;
    bad_pending[11] = 9;  // the pending state byte
    CHECK_FALSE(decode_user(bad_pending));

    CHECK(r.state_at(1799999999) == State::source);
    CHECK(r.state_at(1800000000) == State::migrated);
    UserRecord copy = r;
    CHECK_FALSE(copy.apply_due(1799999999));
    CHECK(copy == r);
    REQUIRE(copy.apply_due(1800000000));
    CHECK(copy.state == State::migrated);
    CHECK_FALSE(copy.pending_state);
    CHECK(static_cast<unsigned char>(encode(copy)[0]) == kRecordVersion);  // back to v1 once applied

    // Directory-owned: a due change becomes an override, or drops it when the directory agrees.
    UserRecord owned{State::migrated, "", "", 5, Owner::directory, {}, "cn=x", "u", State::source, 100};
    REQUIRE(owned.apply_due(100));
    CHECK(owned.state == State::migrated);
    CHECK(owned.override_state == State::source);
    owned.pending_state = State::migrated;
    owned.pending_at = 200;
    REQUIRE(owned.apply_due(300));
    CHECK_FALSE(owned.override_state);
    CHECK(owned.effective_state() == State::migrated);
}

TEST_CASE("CSV reader handles quoting, CRLF and blank lines") {
    CsvReader r("address,state\r\n\"a,b\"\"c@x\",migrated\n\n\"multi\nline\",dual\nlast,source");
    CsvRecord rec;
    REQUIRE(r.next(rec));
    CHECK(rec.line == 1);
    CHECK(rec.fields == std::vector<std::string>{"address", "state"});
    REQUIRE(r.next(rec));
    CHECK(rec.line == 2);
    CHECK(rec.fields == std::vector<std::string>{"a,b\"c@x", "migrated"});
    REQUIRE(r.next(rec));
    CHECK(rec.line == 4);
    CHECK(rec.fields == std::vector<std::string>{"multi\nline", "dual"});
    REQUIRE(r.next(rec));
    CHECK(rec.line == 6);
    CHECK(rec.fields == std::vector<std::string>{"last", "source"});
    CHECK_FALSE(r.next(rec));
    CHECK_FALSE(r.error());
}

TEST_CASE("CSV reader errors carry the line") {
    // The first error, of a record (the reading goes on) or of the reader (it ends).
    auto error_of = [](std::string_view text) {
        CsvReader r(text);
        CsvRecord rec;
        while (r.next(rec))
            if (rec.error) return std::pair{rec.line, *rec.error};
        REQUIRE(r.error());
        return std::pair{r.error_line(), *r.error()};
    };
    CHECK(error_of("a\nb\n\"open") == std::pair<std::size_t, std::string>{3, "quoted field not closed"});
    CHECK(error_of("a\nb\"c\n").first == 2);
    CHECK(error_of("a\n\"b\"c\n").first == 2);
    CHECK(error_of("a\n" + std::string(70000, 'x')).second == "record longer than 64 KiB");
    // The first byte in error decides: a quote within the limit, the length past it.
    CHECK(error_of("a\nb,c\"d\n").second == "quote inside an unquoted field");
    CHECK(error_of("a\n" + std::string(1000, 'x') + "\"" + std::string(70000, 'x')).second ==
          "quote inside an unquoted field, on a line longer than 64 KiB");
    CHECK(error_of("a\n" + std::string(70000, 'x') + "\"").second == "record longer than 64 KiB");
    CHECK(error_of("a\n" + std::string(70000, 'x') + ",b").second == "record longer than 64 KiB");
    CHECK(error_of(std::string(kMaxCsvFields, ',')).second == "more than 1024 fields");
    // 64 KiB exactly is a record (its line break not counted); one byte more is not, whether
    // the last byte is in an unquoted field, a quoted one, or a field after a comma.
    auto reads_whole = [](const std::string& record) {
        const std::string text = "a\n" + record + "\n";
        CsvReader r(text);
        CsvRecord rec;
        bool read = r.next(rec) && r.next(rec);
        return read && !r.error();
    };
    const std::string quoted = "\"" + std::string(kMaxCsvRecordBytes - 2, 'q') + "\"";
    const std::string two_fields = std::string(kMaxCsvRecordBytes - 2, 'x') + ",y";
    CHECK(reads_whole(std::string(kMaxCsvRecordBytes, 'x')));
    CHECK(reads_whole(quoted));
    CHECK(reads_whole(two_fields));
    CHECK(error_of("a\n" + std::string(kMaxCsvRecordBytes + 1, 'x') + "\n").second == "record longer than 64 KiB");
    CHECK(error_of("a\n" + quoted + "z\n").second == "record longer than 64 KiB");
    CHECK(error_of("a\n\"q\"z\n").second == "text after a closing quote");
    CHECK(error_of("a\n\"" + std::string(kMaxCsvRecordBytes - 1, 'q') + "\"\n").second == "record longer than 64 KiB");
    CHECK(error_of("a\n" + two_fields + "y\n").second == "record longer than 64 KiB");
    // A quote as the limit's last byte is the quote's error; one byte later, the length's.
    CHECK(error_of("a\n" + std::string(kMaxCsvRecordBytes - 1, 'x') + "\"x\n").second ==
          "quote inside an unquoted field, on a line longer than 64 KiB");
    CHECK(error_of("a\n" + std::string(kMaxCsvRecordBytes, 'x') + "\"\n").second == "record longer than 64 KiB");
    {
        const std::string text = std::string(kMaxCsvFields - 1, ',') + "\n";  // GAM's allfields: hundreds of columns
        CsvReader wide(text);
        CsvRecord rec;
        CHECK(wide.next(rec));
        CHECK(rec.fields.size() == kMaxCsvFields);
    }
}

TEST_CASE("CSV errors that end at their line break are each reported, and the reading goes on") {
    // Each bad line is skipped to its line break; the record of line 4 has a quoted field over
    // two lines before its error, so the next record starts on line 6; a bad last line needs
    // no line break.
    const std::string text = "a,b\nb\"c,d\nok,1\n\"multi\nline\",\"e\"f,g\nh\ri\n" + std::string(kMaxCsvFields, ',') +
                             "\nlast,2\nx\"";
    CsvReader r(text);  // a view: the text outlives it
    CsvRecord rec;
    std::vector<std::pair<std::size_t, std::string>> seen;
    while (r.next(rec)) {
        CHECK((rec.error.has_value() == rec.fields.empty()));
        seen.emplace_back(rec.line, rec.error ? "error: " + *rec.error : rec.fields.front());
    }
    CHECK_FALSE(r.error());
    CHECK(seen == std::vector<std::pair<std::size_t, std::string>>{
                      {1, "a"},
                      {2, "error: quote inside an unquoted field"},
                      {3, "ok"},
                      {4, "error: text after a closing quote"},
                      {6, "error: bare carriage return (lines end with LF or CRLF)"},
                      {7, "error: more than 1024 fields"},
                      {8, "last"},
                      {9, "error: quote inside an unquoted field"}});
    // A CR as the text's last byte ends the last record (as a missing LF does), not an error.
    CsvReader final_cr("a,b\nlast,2\r");
    REQUIRE(final_cr.next(rec));
    REQUIRE(final_cr.next(rec));
    CHECK(rec.fields == std::vector<std::string>{"last", "2"});
    CHECK_FALSE(rec.error);
    CHECK_FALSE(final_cr.next(rec));
    CHECK_FALSE(final_cr.error());
    // A bad line longer than a record ends the reading, with its first error and the length.
    const std::string long_text = "a\nb\"" + std::string(kMaxCsvRecordBytes, 'x') + "\nnext\n";
    CsvReader long_line(long_text);
    REQUIRE(long_line.next(rec));
    CHECK_FALSE(long_line.next(rec));
    REQUIRE(long_line.error());
    CHECK(*long_line.error() == "quote inside an unquoted field, on a line longer than 64 KiB");
    CHECK(long_line.error_line() == 2);
}

TEST_CASE("csv_field quotes only when it must, and the reader reads it back") {
    for (std::string v : {"plain", "", "a,b", "say \"hi\"", "two\nlines", " padded "}) {
        const std::string text = csv_field(v) + ",x\n";
        CsvReader r(text);
        CsvRecord rec;
        REQUIRE(r.next(rec));
        CHECK(rec.fields == std::vector<std::string>{v, "x"});
    }
    CHECK(csv_field("plain") == "plain");
}
