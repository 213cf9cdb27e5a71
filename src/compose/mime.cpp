// compose/mime: build_mime: the header fields and the multipart/alternative assembly.
#include "compose/mime.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "compose/encoded_word.hpp"
#include "compose/mime_internal.hpp"
#include "compose/transfer_encoding.hpp"

namespace mma::compose::detail {
namespace {

// RFC 5322 §2.1.1 SHOULD 78; RFC 2047 §2 says 76 for encoded words.
constexpr std::size_t kFoldWidth = 76;
constexpr std::size_t kMaxFieldName = 900;  // leaves a first line room for an encoded word
constexpr std::size_t kMaxBoundary = 70;    // RFC 2046 §5.1.1

// RFC 5322 §3.6.8: printable ASCII except ":".
constexpr CharTable kFtext = make_table([](int c) { return c >= 33 && c <= 126 && c != ':'; });
// RFC 2046 §5.1.1 bchars (space is allowed, but not last).
constexpr CharTable kBchars =
    make_table([](int c) { return alnum(c) || one_of(c, "'()+_,-./:=? "); });

// ---------------------------------------------------------------------------------------------
// Header fields.

// Writes one field, folding (RFC 5322 §2.2.3) before a token when the line would pass
// kFoldWidth. A token is white space followed by a word, so that unfolding, which only
// removes the CRLF, gives back the value, and no folded line is white space only. The first
// token stays on the field name's line.
class FieldWriter {
 public:
  FieldWriter(std::string& out, std::string_view name) : out_(out), col_(name.size() + 1) {
    out_ += name;
    out_ += ':';
  }
  void operator()(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
    const std::size_t n = a.size() + b.size() + c.size();
    if (first_) {
      out_ += ' ';
      ++col_;
      first_ = false;
    } else if (col_ + n > kFoldWidth) {
      out_ += "\r\n";
      col_ = 0;
    }
    out_ += a;
    out_ += b;
    out_ += c;
    col_ += n;
  }
  void end() { out_ += "\r\n"; }

 private:
  std::string& out_;
  std::size_t col_;
  bool first_ = true;
};

// A plain token may fill a whole line: "Name: token" or " token" (tokens carry their space).
std::size_t max_token_after(std::string_view name) {
  return kMaxLine - name.size() - 2;
}

// The first encoded word shares its line with "Name: "; keep that line at 76 (RFC 2047 §2)
// unless the name is so long that the word would be useless.
std::size_t first_word_limit(std::string_view name) {
  const std::size_t used = name.size() + 2;
  return used + 40 <= kFoldWidth ? std::min(kMaxEncodedWord, kFoldWidth - used) : kMaxEncodedWord;
}

void reject_line_breaks(std::string_view what, std::string_view v) {
  if (v.find_first_of("\r\n") != std::string_view::npos)
    throw std::invalid_argument(std::string(what) + " contains CR or LF");
}

// Addresses and Message-IDs go out as one token; anything that could break out of it is
// refused rather than escaped, since the caller has a bug.
void check_token(std::string_view what, std::string_view v, std::size_t max) {
  for (const char c : v) {
    const unsigned char u = octet(c);
    if (u <= 0x20 || u == 0x7F || c == '<' || c == '>')
      throw std::invalid_argument(std::string(what) +
                                  " contains a control, space or angle bracket");
  }
  if (v.size() > max) throw std::invalid_argument(std::string(what) + " is too long for a line");
}

void write_address_field(std::string& out, std::string_view name, std::string_view display,
                         std::string_view address) {
  reject_line_breaks(name, display);
  if (address.empty()) throw std::invalid_argument(std::string(name) + " address is empty");
  check_token(name, address, max_token_after(name) - 3);
  FieldWriter w(out, name);
  if (display.empty()) {
    w(address);
  } else {
    emit_text(display, true, first_word_limit(name), max_token_after(name), w);
    w(" <", address, ">");
  }
  w.end();
}

void write_text_field(std::string& out, std::string_view name, std::string_view value) {
  reject_line_breaks(name, value);
  FieldWriter w(out, name);
  emit_text(value, false, first_word_limit(name), max_token_after(name), w);
  w.end();
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void check_field_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxFieldName)
    throw std::invalid_argument("header field name is empty or too long");
  for (const char c : name)
    if (!kFtext[octet(c)])
      throw std::invalid_argument("header field name '" + std::string(name) + "' is not ftext");
  // These are written here, and a second one makes the message invalid (RFC 5322 §3.6, RFC
  // 2045 §3) or, for the Content- fields, changes how the body is read.
  for (const std::string_view own : {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
                                     "Content-Type", "Content-Transfer-Encoding"})
    if (iequals(name, own))
      throw std::invalid_argument("header field '" + std::string(name) + "' is built-in");
}

void append_2digits(int v, std::string& out) {
  out += static_cast<char>('0' + v / 10);
  out += static_cast<char>('0' + v % 10);
}

// RFC 5322 §3.3, "Sat, 28 Nov 2026 14:15:37 +0000". Written by hand: strftime's names follow
// the locale.
void append_date(std::time_t t, std::string& out) {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
    throw std::invalid_argument("date is outside years 0-9999");
  const int year = tm.tm_year + 1900;
  out += kDays[tm.tm_wday];
  out += ", ";
  append_2digits(tm.tm_mday, out);
  out += ' ';
  out += kMonths[tm.tm_mon];
  out += ' ';
  append_2digits(year / 100, out);
  append_2digits(year % 100, out);
  out += ' ';
  append_2digits(tm.tm_hour, out);
  out += ':';
  append_2digits(tm.tm_min, out);
  out += ':';
  append_2digits(tm.tm_sec, out);
  out += " +0000";
}

// "=_" cannot occur in quoted-printable output ("=" there is followed by a hex digit or CR)
// nor in base64 output ("_" is not in its alphabet, RFC 2045 §6.8), so a boundary containing
// it never occurs inside an encoded part (RFC 2046 §5.1.1). 7bit parts are searched instead.
struct DerivedBoundary {
  char text[22];  // "=_mma_" and 16 hex digits
  [[nodiscard]] std::string_view view() const { return {text, sizeof(text)}; }
};

DerivedBoundary derived_boundary(std::string_view message_id) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a: unique per Message-ID for our purpose
  for (const char c : message_id) h = (h ^ octet(c)) * 0x100000001b3ULL;
  DerivedBoundary b{};
  std::memcpy(b.text, "=_mma_", 6);
  for (std::size_t i = 0; i < 16; ++i) b.text[6 + i] = kHex[(h >> (60 - 4 * i)) & 15];
  return b;
}

// glibc's two-way memmem: std::string_view::find runs memchr and memcmp at each first
// character, which is slow on HTML full of "=".
bool contains(std::string_view hay, std::string_view needle) {
  return memmem(hay.data(), hay.size(), needle.data(), needle.size()) != nullptr;
}

void check_boundary(std::string_view b) {
  if (b.empty() || b.size() > kMaxBoundary || b.back() == ' ')
    throw std::invalid_argument("boundary must be 1-70 characters, not ending in a space");
  for (const char c : b)
    if (!kBchars[octet(c)]) throw std::invalid_argument("boundary has a character outside bchars");
}

struct Part {
  std::string_view text;
  BodyScan scan;
  Cte cte;
};

Part plan_part(std::string_view text, std::string_view boundary) {
  Part p{text, scan_body(text), Cte::k7bit};
  p.cte = choose_cte(p.scan, text.size());
  if (p.cte == Cte::k7bit && !boundary.empty() && contains(text, boundary))
    p.cte = Cte::kQuotedPrintable;
  return p;
}

void write_part_headers(std::string& out, std::string_view type, Cte cte) {
  out += "Content-Type: ";
  out += type;
  out += "; charset=utf-8\r\nContent-Transfer-Encoding: ";
  out += cte_name(cte);
  out += "\r\n";
}

void write_part(std::string& out, const Part& p, std::string_view type, std::string_view boundary) {
  out += "\r\n--";
  out += boundary;
  out += "\r\n";
  write_part_headers(out, type, p.cte);
  out += "\r\n";
  const std::size_t start = out.size();
  append_body(p.text, p.scan, p.cte, out);
  // See derived_boundary; 7bit parts were searched by plan_part.
  if (p.cte != Cte::k7bit && boundary.find("=_") == std::string_view::npos &&
      contains(std::string_view(out).substr(start), boundary))
    throw std::invalid_argument("boundary occurs in the encoded content");
}

void render(const MimeMessage& m, std::string& out) {
  write_address_field(out, "From", m.from_name, m.from_address);
  write_address_field(out, "To", m.to_name, m.to_address);
  write_text_field(out, "Subject", m.subject);
  out += "Date: ";
  append_date(m.date, out);
  out += "\r\n";
  if (!m.message_id.empty()) {
    check_token("Message-ID", m.message_id, max_token_after("Message-ID") - 2);
    FieldWriter w(out, "Message-ID");
    w("<", m.message_id, ">");
    w.end();
  }
  out += "MIME-Version: 1.0\r\n";
  for (const auto& [name, value] : m.headers) {
    check_field_name(name);
    write_text_field(out, name, value);
  }

  if (m.html.empty()) {
    const Part text = plan_part(m.text, {});
    out.reserve(out.size() + 128 + encoded_size_estimate(text.scan, m.text.size(), text.cte));
    write_part_headers(out, "text/plain", text.cte);
    out += "\r\n";
    append_body(m.text, text.scan, text.cte, out);
    if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
    return;
  }

  const DerivedBoundary derived = derived_boundary(m.message_id);
  if (!m.boundary.empty()) check_boundary(m.boundary);
  const std::string_view boundary = m.boundary.empty() ? derived.view() : m.boundary;
  const Part text = plan_part(m.text, boundary);
  const Part html = plan_part(m.html, boundary);
  out.reserve(out.size() + 256 + 3 * boundary.size() +
              encoded_size_estimate(text.scan, m.text.size(), text.cte) +
              encoded_size_estimate(html.scan, m.html.size(), html.cte));
  {
    // RFC 2045 §5.1: "=" is a tspecial, so the boundary is quoted.
    FieldWriter w(out, "Content-Type");
    w("multipart/alternative;");
    w(" boundary=\"", boundary, "\"");
    w.end();
  }
  // RFC 2046 §5.1.4: in increasing order of preference, so the plain text comes first. The
  // CRLF before each delimiter belongs to the delimiter (§5.1.1), so it is always written.
  write_part(out, text, "text/plain", boundary);
  write_part(out, html, "text/html", boundary);
  out += "\r\n--";
  out += boundary;
  out += "--\r\n";
}

}  // namespace
}  // namespace mma::compose::detail

namespace mma::compose {

void build_mime(const MimeMessage& m, std::string& out) {
  // All or nothing: a message refused halfway must not leave half a message behind.
  const std::size_t mark = out.size();
  try {
    detail::render(m, out);
  } catch (...) {
    out.resize(mark);
    throw;
  }
}

}  // namespace mma::compose
