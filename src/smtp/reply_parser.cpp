#include "smtp/reply_parser.hpp"

namespace mma::smtp {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// 1*3DIGIT
std::size_t digits(std::string_view s, std::size_t pos, std::size_t max) {
  std::size_t n = 0;
  while (pos + n < s.size() && n < max && is_digit(s[pos + n])) ++n;
  return n;
}

}  // namespace

bool split_enhanced(int code, std::string_view text, std::string_view& enhanced,
                    std::string_view& rest) {
  if (text.size() < 5 || text[0] != static_cast<char>('0' + code / 100) || text[1] != '.') {
    return false;
  }
  std::size_t pos = 2;
  const std::size_t subject = digits(text, pos, 3);
  if (subject == 0 || pos + subject >= text.size() || text[pos + subject] != '.') return false;
  pos += subject + 1;
  const std::size_t detail = digits(text, pos, 3);
  if (detail == 0) return false;
  pos += detail;
  if (pos < text.size() && text[pos] != ' ') return false;
  enhanced = text.substr(0, pos);
  rest = pos < text.size() ? text.substr(pos + 1) : std::string_view{};
  return true;
}

ReplyParser::Status ReplyParser::on_line(std::string_view line) {
  if (line.size() > kMaxLine) {
    error_ = "reply line too long";
    return Status::Garbled;
  }
  if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
      line[0] < '2' || line[0] > '5' || (line.size() > 3 && line[3] != ' ' && line[3] != '-')) {
    error_ = "garbled reply line";
    return Status::Garbled;
  }
  const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (lines_ == 0) {
    current_.code = code;
  } else if (code != current_.code) {
    error_ = "reply code changed within a multi-line reply";
    return Status::Garbled;
  }
  if (++lines_ > kMaxLines) {
    error_ = "too many reply lines";
    return Status::Garbled;
  }
  std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};
  std::string_view enhanced, rest;
  if (split_enhanced(code, text, enhanced, rest)) {
    if (lines_ == 1) current_.enhanced.assign(enhanced);
    text = rest;
  }
  if (lines_ > 1) current_.text += '\n';
  current_.text.append(text);
  const bool last = line.size() == 3 || line[3] == ' ';
  return last ? Status::Complete : Status::NeedMore;
}

ReplyParser::Status ReplyParser::parse(LineBuffer& in) {
  LineBuffer::Line line;
  for (;;) {
    switch (in.next_line(kMaxLine, line)) {
      case LineBuffer::Status::NeedMore:
        return Status::NeedMore;
      case LineBuffer::Status::TooLong:
        error_ = "reply line too long";
        return Status::Garbled;
      case LineBuffer::Status::Line:
        break;
    }
    const Status s = on_line(line.text);
    if (s != Status::NeedMore) return s;
  }
}

Reply ReplyParser::take() {
  Reply r = std::move(current_);
  current_ = Reply{};
  lines_ = 0;
  return r;
}

}  // namespace mma::smtp
