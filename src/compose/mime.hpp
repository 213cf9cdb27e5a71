// compose/mime: the MIME message: multipart/alternative, quoted-printable or base64, RFC 2047
// encoded words, line limits.
//
// Turns one recipient's rendered text and HTML into a complete Internet message in wire form
// (CRLF line ends, not dot-stuffed: the SMTP layer does that). Called by the composer once per
// recipient, so it appends into the caller's buffer and allocates nothing per line. No I/O.
//
// STANDARDS: RFC 5322 (header fields, folding §2.2.3, line limits §2.1.1, date §3.3),
// RFC 2045 (§6.7 quoted-printable, §6.8 base64), RFC 2046 (§5.1 multipart/alternative),
// RFC 2047 (encoded words).
//
// SECURITY: every header input is checked for CR and LF, and extra field names for ftext,
// so that no caller-supplied string can start a header field of its own (header injection).
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mma::compose {

struct MimeMessage {
  std::string from_name;     // UTF-8 display name, may be empty
  std::string from_address;  // addr-spec
  std::string to_name;
  std::string to_address;
  std::string subject;     // UTF-8
  std::string message_id;  // without angle brackets; empty: no Message-ID field
  std::time_t date = 0;    // rendered as RFC 5322 §3.3 date-time, in UTC "+0000"
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (name, UTF-8 value)
  std::string text;      // UTF-8 plain text; LF or CRLF line ends
  std::string html;      // UTF-8 HTML; empty: a single text/plain message, no multipart
  std::string boundary;  // the multipart boundary; empty: derived from message_id
};

// Appends the whole message in wire form to `out`: CRLF line ends, no line longer than 998
// octets (RFC 5322 §2.1.1), header fields folded to stay under 78 where they can; not
// dot-stuffed. Throws std::invalid_argument, leaving `out` as it was, for a header input with CR
// or LF, an extra field name that is not ftext or that this function writes itself, an address
// or Message-ID that is not one token, a bad boundary, or a date outside years 0-9999.
void build_mime(const MimeMessage& m, std::string& out);

// RFC 2047 encoded-word(s) for a UTF-8 header text: returned unchanged when it is printable
// ASCII (and safe); otherwise "=?UTF-8?B?...?=" or "=?UTF-8?Q?...?=" (whichever is shorter),
// split into several encoded words of at most 75 characters each, never splitting a UTF-8
// character (§5, §2). `phrase`: the text is a display name (RFC 2047 §5(3) restrictions on Q
// characters, and ASCII names containing specials get quoted as an RFC 5322 quoted-string
// instead). "Safe" means: no leading or trailing white space, nothing a decoder could take for
// an encoded word, and no word too long to fit a 998-octet line after a field name of up to 76.
std::string encode_header_text(std::string_view utf8, bool phrase);

// RFC 2045 §6.7 quoted-printable, CRLF line ends, soft line breaks at 76. The input is text: LF,
// CRLF and a lone CR all end a line and become CRLF.
void append_quoted_printable(std::string_view in, std::string& out);

// RFC 2045 §6.8 base64 in lines of 76, each ended by CRLF. The input is taken as octets.
void append_base64_lines(std::string_view in, std::string& out);

}  // namespace mma::compose
