#include <catch2/catch.hpp>

#include "coexist/address.hpp"

using namespace coexist;

TEST_CASE("parse_address strips brackets and lowercases the domain only") {
    auto a = parse_address("<Ann.Lee@CONTOSO.Com>");
    REQUIRE(a);
    CHECK(a->local == "Ann.Lee");
    CHECK(a->domain == "contoso.com");
    a = parse_address("bob@contoso.com.");
    REQUIRE(a);
    CHECK(a->domain == "contoso.com");
}

// A key Postfix asks for is taken as it is: " ann@x" is the internal form of "\" ann\""@x, not ann.
// What an admin typed is trimmed by its reader, with trim_blanks().
TEST_CASE("parse_address trims no blank; trim_blanks is for an admin's input") {
    CHECK_FALSE(parse_address(" ann@contoso.com"));
    CHECK_FALSE(parse_address("ann@contoso.com\t"));
    CHECK_FALSE(parse_address(" <ann@contoso.com> "));
    CHECK(trim_blanks(" \tann@contoso.com \t") == "ann@contoso.com");
    CHECK(trim_blanks("\"ann \"@contoso.com") == "\"ann \"@contoso.com");
    CHECK(trim_blanks(" \t ").empty());
    const auto a = parse_address(trim_blanks("  bob@contoso.com.  "));
    REQUIRE(a);
    CHECK(a->local == "bob");
}

TEST_CASE("parse_address gives Postfix's internal (unquoted) form and splits at the last @ outside quotes") {
    auto a = parse_address(R"(<"john@home doe"@contoso.com>)");
    REQUIRE(a);
    CHECK(a->local == "john@home doe");
    CHECK(a->domain == "contoso.com");
    a = parse_address(R"(<"bob"@fabrikam.com>)");
    REQUIRE(a);
    CHECK(a->local == "bob");
    a = parse_address(R"("a\"b".c@contoso.com)");
    REQUIRE(a);
    CHECK(a->local == R"(a"b.c)");
    a = parse_address("<@relay.example,@b.example:Ann@contoso.com>");
    REQUIRE(a);
    CHECK(a->local == "Ann");
    CHECK(a->domain == "contoso.com");
}

TEST_CASE("a source route is stripped once: from RCPT as written, not from what Postfix has read") {
    // RCPT TO:<"@a:@b:ann"@contoso.com>: Postfix unquotes, strips "@a:" (rewrite.c), and looks
    // up and delivers the user "@b:ann". The milter reads the argument (one route to strip);
    // the socketmap key and {rcpt_addr} are Postfix's reading (none left to strip).
    const auto written = parse_address(R"(<"@a.example:@b.example:ann"@contoso.com>)");
    REQUIRE(written);
    CHECK(written->local == "@b.example:ann");
    CHECK(parse_address(R"(<"@x.example:ann"@contoso.com>)")->local == "ann");
    CHECK(parse_address("<@x.example:ann@contoso.com>")->local == "ann");
    for (const char* key : {"@b.example:ann@contoso.com", R"("@b.example:ann"@contoso.com)"}) {
        CAPTURE(key);
        const auto read = parse_rewritten_address(key);
        REQUIRE(read);
        CHECK(read->local == "@b.example:ann");
        CHECK(read->domain == "contoso.com");
    }
    CHECK(parse_rewritten_address("Ann@Contoso.COM")->local == "Ann");
    CHECK(parse_rewritten_address(R"("john doe"@contoso.com)")->local == "john doe");
    CHECK_FALSE(parse_rewritten_address("no-at-sign"));
}

TEST_CASE("parse_address refuses what is not an address") {
    const char* bad = GENERATE("", "<>", "contoso.com", "@contoso.com", "ann@", "<ann@contoso.com",
                               "ann@contoso.com>", "ann@cont oso.com", "an n@contoso.com",
                               "ann@contoso..com", "ann@.contoso.com", "ann@b\xc3\xa9 .com", "*",
                               "\"unterminated@contoso.com", "a<b@contoso.com",
                               "@relay.example:", "@relay.example@contoso.com", "@:ann@contoso.com",
                               "@re lay:ann@contoso.com", "john doe@contoso.com", "\"\"@contoso.com",
                               "a\\b@contoso.com");
    CAPTURE(bad);
    CHECK_FALSE(parse_address(bad));
}

TEST_CASE("parse_address rejects control bytes, accepts 8-bit local parts") {
    CHECK_FALSE(parse_address(std::string("ann\0x@contoso.com", 17)));
    CHECK_FALSE(parse_address("ann\r\n@contoso.com"));
    auto a = parse_address("j\xc3\xb6rg@contoso.com");
    REQUIRE(a);
    CHECK(a->local == "j\xc3\xb6rg");
    // Every single byte value in the local part: never a crash, control bytes refused.
    for (int b = 0; b < 256; ++b) {
        std::string s = "a";
        s.push_back(static_cast<char>(b));
        s += "@contoso.com";
        auto r = parse_address(s);
        if (b < 0x20 || b == 0x7f) CHECK_FALSE(r);
    }
}

TEST_CASE("a UTF-8 domain is the ASCII domain Postfix's case folding makes of it, a U-label its A-label") {
    // U+017F (long s) folds to 's', U+212A (Kelvin sign) to 'k': Postfix (smtputf8_enable =
    // yes) matches contoſo.com against relay_domains as contoso.com and relays it there.
    for (const char* written : {"ann@conto\xc5\xbfo.com", "ANN@CONTO\xc5\xbfO.COM", "<ann@\xe2\x84\xaaontoso.com>"}) {
        CAPTURE(written);
        const auto a = parse_address(written);
        REQUIRE(a);
        CHECK(a->domain == (std::string_view(written).find("\xe2\x84\xaa") != std::string_view::npos ? "kontoso.com"
                                                                                                   : "contoso.com"));
    }
    CHECK_FALSE(parse_address("ann@conto\xc5\xbf o.com"));        // folded, still not a domain
    // A U-label is matched against relay_domains (match_hostname()) and looked up in DNS by
    // Postfix as its A-label (midna_domain_to_ascii(): UTS #46, nontransitional).
    const std::pair<const char*, const char*> idn[] = {
        {"ann@b\xc3\xbc" "cher.example", "xn--bcher-kva.example"},    // bücher.example
        {"<Ann@M\xc3\x9c" "LLER.de>", "xn--mller-kva.de"},           // MÜLLER.de: mapped to lower case
        // straße.de: Postfix's case folding (ICU, as every lookup key of its tables and so the
        // socketmap's) makes strasse.de of it first, and so does the milter's reading: the
        // daemons agree, for a domain whose A-label (xn--strae-oqa.de) none of them can match.
        {"ann@stra\xc3\x9f" "e.de", "strasse.de"},
        {"ann@m\xc3\xbc" "ller.de.", "xn--mller-kva.de"},            // the trailing dot, as for ASCII
    };
    for (const auto& [written, domain] : idn) {
        CAPTURE(written);
        const auto a = parse_address(written);
        REQUIRE(a);
        CHECK(a->domain == domain);
        CHECK(a->local == (std::string_view(written).find("Ann") != std::string_view::npos ? "Ann" : "ann"));
    }
    // What UTS #46 refuses stays no address: a label starting with '-', a disallowed character,
    // malformed UTF-8, an A-label that is not a host name.
    CHECK_FALSE(parse_address("ann@-b\xc3\xbc" "cher.example"));
    CHECK_FALSE(parse_address("ann@b\xc3\xbc" "cher\xe2\x80\xa8.example"));  // a line separator in it
    CHECK_FALSE(parse_address("ann@b\xc3" "cher.example"));                       // a truncated sequence
    CHECK_FALSE(parse_address("ann@b\xc3\xbc" "ch_er.example"));
}

TEST_CASE("parse_address bounds the length") {
    std::string local(kMaxAddressLength - 12, 'a');
    CHECK(parse_address(local + "@contoso.com"));
    CHECK_FALSE(parse_address(local + "x@contoso.com"));
    CHECK_FALSE(parse_address(std::string(1 << 20, 'a') + "@contoso.com"));
}

TEST_CASE("split_extension splits at the first delimiter character") {
    auto p = split_extension("ann+news+x", "+");
    CHECK(p.base == "ann");
    CHECK(p.extension == "+news+x");
    p = split_extension("ann-list", "+-");
    CHECK(p.base == "ann");
    CHECK(p.extension == "-list");
    p = split_extension("ann", "+");
    CHECK(p.base == "ann");
    CHECK(p.extension.empty());
    p = split_extension("+ann", "+");  // no base: not split
    CHECK(p.base == "+ann");
    p = split_extension("ann+x", "");
    CHECK(p.base == "ann+x");
}

// ---- the canonical form (design 13.2): what a client writes -> the key Postfix looks up ------

#include "coexist/canonical_address.hpp"

TEST_CASE("canonical_address: every form a client may write becomes Postfix's lookup key") {
    const auto [input, key] = GENERATE(table<std::string, std::string>({
        {"ann@contoso.com", "ann@contoso.com"},
        {"<Ann.Lee@CONTOSO.Com>", "ann.lee@contoso.com"},
        {R"("gapps1"@Contoso.COM)", "gapps1@contoso.com"},
        {R"(<"bob"@fabrikam.com>)", "bob@fabrikam.com"},
        {R"("Ann"."Lee"@contoso.com)", "ann.lee@contoso.com"},
        {"<@relay.example:ann@contoso.com>", "ann@contoso.com"},
        {"<@a.example,@b.example:ANN@contoso.com>", "ann@contoso.com"},
        // Needs its quotes: keeps them, as quote_822_local() writes it (external form).
        {R"("john doe"@contoso.com)", R"("john doe"@contoso.com)"},
        {R"("John Doe"@Contoso.com)", R"("john doe"@contoso.com)"},
        {R"("a..b"@contoso.com)", R"("a..b"@contoso.com)"},
        {R"(".ann"@contoso.com)", R"(".ann"@contoso.com)"},
        {R"("ann@home"@contoso.com)", R"("ann@home"@contoso.com)"},
        // Unquoted, as Postfix's smtpd takes it: the last '@' splits (admin walk-through).
        {"a@b@Contoso.com", R"("a@b"@contoso.com)"},
        {R"("a\"b"@contoso.com)", R"("a\"b"@contoso.com)"},
        {R"("a\\b"@contoso.com)", R"("a\\b"@contoso.com)"},
        {R"("a\b"@contoso.com)", "ab@contoso.com"},  // a quoted-pair of an ordinary character
        // UTF-8 local parts (RFC 6531): ICU full case folding, as casefold.c with SMTPUTF8.
        {"Straße@contoso.com", "strasse@contoso.com"},
        {"STRASSE@contoso.com", "strasse@contoso.com"},
        {"ÅSA@contoso.com", "åsa@contoso.com"},
        {"Åsa@contoso.com", "åsa@contoso.com"},
        {"ΣΟΦΊΑ@contoso.com", "σοφία@contoso.com"},
        {"Σοφίας@contoso.com", "σοφίασ@contoso.com"},  // final sigma folds to σ
        {"Дмитрий@contoso.com", "дмитрий@contoso.com"},
        {"ДМИТРИЙ.Ögren@contoso.com", "дмитрий.ögren@contoso.com"},
        {"José.ΜΑΡΊΑ@contoso.com", "josé.μαρία@contoso.com"},
        {R"("Jörg Müller"@contoso.com)", R"("jörg müller"@contoso.com)"},
        {"İnci@contoso.com", "i̇nci@contoso.com"},  // default (not Turkic) folding: i + U+0307
    }));
    CAPTURE(input);
    const auto got = canonical_address(input);
    REQUIRE(got);
    CHECK(*got == key);
    // Canonical keys are fixed points: the map's keys read back as themselves.
    CHECK(canonical_address(*got) == got);
}

TEST_CASE("canonical_address refuses what parse_address refuses") {
    const char* bad = GENERATE("john doe@contoso.com", "\"open@contoso.com", "@relay:", "<ann@contoso.com");
    CAPTURE(bad);
    CHECK_FALSE(canonical_address(bad));
}

TEST_CASE("fold_case is ICU's default folding, bytes that are not UTF-8 kept") {
    CHECK(fold_case("ANN") == "ann");
    CHECK(fold_case("ß") == "ss");
    CHECK(fold_case("ŉ") == "ʼn");  // grows from 2 to 3 bytes
    CHECK(fold_case(std::string(200, '\xc3') + "A").size() >= 201);  // never a crash
}

TEST_CASE("external_form quotes an internal-form address where Postfix would") {
    CHECK(external_form("bob@fabrikam.com") == "bob@fabrikam.com");
    CHECK(external_form("john doe@contoso.com") == R"("john doe"@contoso.com)");
    CHECK(external_form("ann@home@contoso.com") == R"("ann@home"@contoso.com)");
}

TEST_CASE("strip_extension cuts at the first character of the delimiter set, never to nothing") {
    const auto [local, delims, base, ext] = GENERATE(table<std::string, std::string, std::string, std::string>({
        {"ann+news", "+", "ann", "+news"},
        {"ann+news+x", "+", "ann", "+news+x"},
        {"mary-ann", "+-", "mary", "-ann"},
        {"mary-ann+x", "+-", "mary", "-ann+x"},
        {"ann+x-y", "-+", "ann", "+x-y"},
    }));
    CAPTURE(local, delims);
    const auto s = strip_extension(local, delims);
    REQUIRE(s);
    CHECK(s->base == base);
    CHECK(s->extension == ext);
    CHECK_FALSE(strip_extension("ann", "+-"));
    CHECK_FALSE(strip_extension("+ann", "+"));
    CHECK_FALSE(strip_extension("ann+x", ""));
}
