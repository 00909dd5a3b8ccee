// coexist-map import takes the files admins have (issue 15, design §13.4 "decode" and "CSV rows"):
// UTF-8 with or without BOM, Excel's "Unicode Text" (UTF-16LE with BOM, tab-separated, CRLF),
// UTF-16BE; cells trimmed alike; wholly empty rows and empty trailing header cells ignored;
// states in any case. A file that is not text in a known encoding is refused with the line, the
// byte and the encoding it was read as, and the map is left unchanged.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>

#include "coexist/csv.hpp"
#include "coexist/map_store.hpp"
#include "coexist/text_decode.hpp"
#include "commands.hpp"
#include "fixture.hpp"

using namespace coexist;

namespace {

struct ImportMap {
    test::TempDir dir;
    Config config;
    ImportMap() : config(test::standard_config(dir.file("map"))) {
        std::ostringstream out;
        tool::init(config, out);
    }
    // Imports `bytes` as file "users.csv"; returns the error text, or "" on success.
    std::string import_bytes(const std::string& bytes) {
        const std::string file = dir.write("users.csv", bytes);
        std::ostringstream out;
        try {
            tool::import_csv(config, file, std::nullopt, false, out);
        } catch (const tool::DataError& e) {
            return e.what();
        }
        return "";
    }
    std::string export_text() {
        std::ostringstream out;
        tool::export_csv(config, out);
        return out.str();
    }
};

std::string utf16(const std::u16string& text, bool little_endian, bool bom = true) {
    std::string out;
    auto put = [&](char16_t u) {
        const char lo = static_cast<char>(u & 0xff), hi = static_cast<char>(u >> 8);
        out.push_back(little_endian ? lo : hi);
        out.push_back(little_endian ? hi : lo);
    };
    if (bom) put(0xFEFF);
    for (char16_t u : text) put(u);
    return out;
}

const std::string kExpected =
    "address,state,target,batch,aliases\n"
    "ann@contoso.com,migrated,,wave1,anna@contoso.com\n"
    "bob@contoso.com,source,,wave1,\n";

}  // namespace

TEST_CASE("Excel's \"Unicode Text\" (UTF-16LE with BOM, tab-separated, CRLF) imports like the CSV") {
    ImportMap m;
    const std::u16string text = u"address\tstate\tbatch\taliases\r\n"
                                u"ann@contoso.com\tmigrated\twave1\tanna@contoso.com\r\n"
                                u"bob@contoso.com\tsource\twave1\t\r\n";
    REQUIRE(m.import_bytes(utf16(text, true)) == "");
    CHECK(m.export_text() == kExpected);
}

TEST_CASE("a semicolon-separated CSV (Excel where the decimal mark is a comma) imports like the CSV") {
    ImportMap m;
    REQUIRE(m.import_bytes("\xEF\xBB\xBF" "address;state;batch;aliases\r\n"
                           "ann@contoso.com;migrated;wave1;\"anna@contoso.com\"\r\n"
                           "bob@contoso.com;source;wave1;\r\n") == "");
    CHECK(m.export_text() == kExpected);
}

TEST_CASE("UTF-16BE with BOM and UTF-8 with BOM import too") {
    const std::string csv = "address,state,batch,aliases\nann@contoso.com,migrated,wave1,anna@contoso.com\n"
                            "bob@contoso.com,source,wave1,\n";
    SECTION("UTF-16BE") {
        ImportMap m;
        std::u16string wide(csv.begin(), csv.end());
        REQUIRE(m.import_bytes(utf16(wide, false)) == "");
        CHECK(m.export_text() == kExpected);
    }
    SECTION("UTF-8 with BOM") {
        ImportMap m;
        REQUIRE(m.import_bytes("\xEF\xBB\xBF" + csv) == "");
        CHECK(m.export_text() == kExpected);
    }
}

TEST_CASE("cells are trimmed alike, states are case-insensitive, spreadsheet padding is ignored") {
    ImportMap m;
    const std::string csv =
        "Address , State,Batch,Aliases,,,\r\n"
        "  ann@contoso.com ,migrated , wave1 ,\" anna@contoso.com \",,,\r\n"
        ",,,,,,\r\n"
        "bob@contoso.com,SOURCE,wave1,,,,\r\n"
        ",,,,,,\r\n";
    REQUIRE(m.import_bytes(csv) == "");
    CHECK(m.export_text() == kExpected);
}

TEST_CASE("a file in no encoding we read is refused with line, byte and the encoding found; the map is unchanged") {
    ImportMap m;
    REQUIRE(m.import_bytes("address,state\nkeep@contoso.com,migrated\n") == "");
    const std::string before = m.export_text();
    struct Case {
        std::string bytes;
        std::string error;
    };
    const Case c = GENERATE(values<Case>({
        // Latin-1 "é" (0xE9) where UTF-8 was expected.
        {"address,state\nnew@contoso.com,migrated\nren\xE9@contoso.com,migrated\n",
         "users.csv:3: invalid UTF-8 (byte 0xE9; read as UTF-8"},
        {"\xEF\xBB\xBF" "address\nx\xC0\xAF@contoso.com\n", "users.csv:2: invalid UTF-8 (byte 0xC0; read as UTF-8 with BOM"},
        {"address\n\xED\xA0\x80@contoso.com\n", "users.csv:2: invalid UTF-8 (byte 0xED"},  // a surrogate
        {"address\nann@contoso.com\xF0\x9F\n", "users.csv:2: invalid UTF-8"},              // truncated
        {utf16(u"address\r\nann@contoso.com\r\n", true, false), "users.csv:1: NUL character (read as UTF-8; "
                                                                "a file with NUL bytes is usually UTF-16 without"},
        {utf16(u"address\r\nann@contoso.com\r\n", true) + "x", "users.csv:3: odd number of bytes"},
        {utf16(std::u16string(u"address\r\nann") + char16_t(0xD800) + u"@contoso.com\r\n", true),
         "users.csv:2: unpaired UTF-16 surrogate (read as UTF-16LE with BOM)"},
        {std::string("\xFF\xFE\x00\x00", 4) + "a", "users.csv: UTF-32"},
    }));
    CAPTURE(c.error);
    CHECK_THAT(m.import_bytes(c.bytes), Catch::Contains(c.error));
    CHECK(m.export_text() == before);
}

TEST_CASE("a value under a header cell with no name is an error, not silently dropped") {
    ImportMap m;
    CHECK_THAT(m.import_bytes("address,state,\nann@contoso.com,migrated,oops\n"),
               Catch::Contains("users.csv:2: 3 fields, the header has 2: 'oops' in a column with no name"));
    CHECK_THAT(m.import_bytes("address,,state\nann@contoso.com,,migrated\n"),
               Catch::Contains("users.csv:1: column 2 has no name"));
    // A control character in a column's name: refused, not ignored (it slipped past the check
    // for a misspelt state column: every row then took migrated), and quoted with '?'.
    CHECK_THAT(m.import_bytes("address,sta\x1b[31m\ate\nann@contoso.com,source\n"),
               Catch::Contains("users.csv:1: the name of column 2, 'sta?[31m?te', holds a control character"));
}

TEST_CASE("decode_text: UTF-16 surrogate pairs become 4-byte UTF-8; offsets point at the bad byte") {
    const std::u16string text = std::u16string(u"a") + char16_t(0xD83D) + char16_t(0xDE00) + u"b";  // U+1F600
    const auto d = decode_text(utf16(text, true));
    REQUIRE(std::holds_alternative<DecodedText>(d));
    CHECK(std::get<DecodedText>(d).utf8 == "a\xF0\x9F\x98\x80" "b");
    CHECK(std::get<DecodedText>(d).encoding == "UTF-16LE with BOM");
    const auto bad = decode_text("ok\nab\xFF");
    REQUIRE(std::holds_alternative<DecodeError>(bad));
    CHECK(std::get<DecodeError>(bad).line == 2);
    CHECK(std::get<DecodeError>(bad).offset == 5);
    CHECK(std::get<DecodedText>(decode_text("")).utf8.empty());
}

// What import reads a piece at a time must come out as from the whole file, wherever the
// pieces split it: inside a UTF-8 sequence, a UTF-16 surrogate pair, a quoted field, a CRLF.
TEST_CASE("TextDecoder and CsvReader in pieces of 4096, 128, 16 and 1 byte give what the whole text gives") {
    const std::string utf8 = "address,aliases\r\n\"ann@contoso.com\",\"anna@contoso.com;\"\"q\"\"@contoso.com\"\r\n"
                             "b\xC3\xA9" "b@contoso.com,\"multi\nline\"\r\n\xF0\x9F\x98\x80@contoso.com,\n";
    const std::u16string wide = std::u16string(u"a,b\r\n") + char16_t(0xD83D) + char16_t(0xDE00) + u",\"x\ny\"\r\n";
    const std::size_t piece_size = GENERATE(4096, 128, 16, 1);
    for (const std::string& bytes : {utf8, "\xEF\xBB\xBF" + utf8, utf16(wide, true), utf16(wide, false)}) {
        const auto whole = decode_text(bytes);
        REQUIRE(std::holds_alternative<DecodedText>(whole));
        TextDecoder decoder;
        std::size_t pos = 0;
        auto more = [&](std::string& out) {
            const std::string_view piece = std::string_view(bytes).substr(pos, piece_size);
            pos += piece.size();
            REQUIRE_FALSE(decoder.feed(piece, pos >= bytes.size(), out));
            return pos < bytes.size();
        };
        std::string text;
        while (more(text)) {
        }
        CHECK(text == std::get<DecodedText>(whole).utf8);
        CHECK(decoder.encoding() == std::get<DecodedText>(whole).encoding);

        CsvReader all(std::get<DecodedText>(whole).utf8);
        pos = 0;
        decoder = TextDecoder{};
        CsvReader pieces(std::string(), more, ',');
        CsvRecord a, b;
        while (all.next(a)) {
            REQUIRE(pieces.next(b));
            CHECK(a.fields == b.fields);
            CHECK(a.line == b.line);
            CHECK(a.error == b.error);
        }
        CHECK_FALSE(pieces.next(b));
        CHECK(pieces.error() == all.error());
    }
    // An error's line and offset count from the start of the file, not of the piece.
    TextDecoder decoder;
    std::string out;
    CHECK_FALSE(decoder.feed("ok\na", false, out));
    const auto e = decoder.feed("b\xFF", true, out);
    REQUIRE(e);
    CHECK(e->line == 2);
    CHECK(e->offset == 5);
}
