#include "compose/template.hpp"

#include <algorithm>
#include <array>
#include <utility>

namespace mma::compose {

namespace {

// Offsets into a template are 32-bit; escaping a default can grow it sixfold in the pool.
constexpr std::size_t kMaxTemplateBytes = std::size_t{64} << 20;

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '-' || c == '.';
}

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank(s.back())) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string l(s);
  for (char& c : l) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return l;
}

constexpr std::array<bool, 256> kNeedsEscape = [] {
  std::array<bool, 256> needs{};
  for (const char c : std::string_view("&<>\"'")) needs[static_cast<unsigned char>(c)] = true;
  return needs;
}();

std::string_view html_entity(char c) {
  switch (c) {
    case '&':
      return "&amp;";
    case '<':
      return "&lt;";
    case '>':
      return "&gt;";
    case '"':
      return "&quot;";
    default:
      return "&#39;";
  }
}

void append_html_escaped(std::string& out, std::string_view value) {
  const char* run = value.data();
  const char* const end = run + value.size();
  for (const char* p = run; p != end; ++p) {
    if (!kNeedsEscape[static_cast<unsigned char>(*p)]) continue;
    out.append(run, static_cast<std::size_t>(p - run));
    out.append(html_entity(*p));
    run = p + 1;
  }
  out.append(run, static_cast<std::size_t>(end - run));
}

// The index of `name` in `names`, added if new.
std::uint32_t add_once(std::vector<std::string>& names, const std::string& name) {
  const auto it = std::find(names.begin(), names.end(), name);
  if (it != names.end()) return static_cast<std::uint32_t>(it - names.begin());
  names.push_back(name);
  return static_cast<std::uint32_t>(names.size() - 1);
}

// What one rendering has learnt of a field or topic; Present for a topic means subscribed.
struct Memo {
  enum class State : std::uint8_t { Unasked, Absent, Present } state = State::Unasked;
  std::string_view value;
};

// Enough memos for most campaigns without touching the heap.
constexpr std::size_t kInlineMemos = 32;

}  // namespace

TemplateError::TemplateError(std::string file_name, unsigned line_number, unsigned column_number,
                             const std::string& message)
    : std::runtime_error(file_name + ":" + std::to_string(line_number) + ":" +
                         std::to_string(column_number) + ": " + message),
      file(std::move(file_name)),
      line(line_number),
      column(column_number) {}

// One pass over the text, tag by tag, building the pieces of a Template.
class TemplateCompiler {
 public:
  TemplateCompiler(std::string_view text, std::string file, Escape escape)
      : text_(text), file_(std::move(file)), escape_(escape) {}

  Template run() {
    if (text_.size() > kMaxTemplateBytes) fail(0, "template larger than 64 MiB");
    std::size_t pos = 0;
    while (pos < text_.size()) {
      const std::size_t open = text_.find("{{", pos);
      if (open == std::string_view::npos) {
        pending_text_.append(text_.substr(pos));
        break;
      }
      pending_text_.append(text_.substr(pos, open - pos));
      pos = tag(open);
    }
    if (!open_sections_.empty()) {
      const OpenSection& innermost = open_sections_.back();
      fail(innermost.tag, "section '" + innermost.topic + "' is never closed");
    }
    flush_text();
    return std::move(template_);
  }

 private:
  struct OpenSection {
    std::string topic;
    std::size_t tag;  // offset of its `{{`
    std::size_t piece;
  };

  // Compiles the tag opening at `open`; returns the offset after it.
  std::size_t tag(std::size_t open) {
    if (text_.substr(open, 3) == "{{{") return triple(open);
    const std::size_t inner = open + 2;
    const std::size_t first = text_.find_first_not_of(" \t", inner);
    if (first != std::string_view::npos && text_[first] == '!') {
      const std::size_t close = text_.find("}}", first);
      if (close == std::string_view::npos) fail(open, "unterminated comment: '{{!' without '}}'");
      return standalone(open, close + 2);
    }
    const std::size_t close = closing(inner);
    if (close == std::string_view::npos) {
      fail(open, "unterminated tag: '{{' without '}}' on the same line");
    }
    const std::string_view content = trim(text_.substr(inner, close - inner));
    const char sigil = content.empty() ? '\0' : content.front();
    if (sigil == '#' || sigil == '^') {
      const std::size_t next = standalone(open, close + 2);
      open_section(open, content.substr(1), sigil == '^');
      return next;
    }
    if (sigil == '/') {
      const std::size_t next = standalone(open, close + 2);
      close_section(open, content.substr(1));
      return next;
    }
    if (sigil == '\0' || sigil == '|' || is_name_char(sigil) ||
        static_cast<unsigned char>(sigil) >= 0x80) {
      field(open, content, escape_ == Escape::Html);
    } else {
      fail(open, std::string("unknown tag sigil '") + sigil + "'");
    }
    return close + 2;
  }

  // For a section tag or comment from `open` to `after`: when nothing but blanks shares its
  // line(s), drops those blanks and the line end (\n or \r\n; none on the last line) and returns
  // the offset past them; otherwise returns `after`. The blanks before the tag are the tail of
  // pending_text_: whatever ended before them (a tag, or a standalone tag's line end) lies before
  // the line start. Both scans cross only blanks, which no other tag's scan crosses, so the
  // whole compile stays linear.
  std::size_t standalone(std::size_t open, std::size_t after) {
    std::size_t start = open;
    while (start > 0 && is_blank(text_[start - 1])) --start;
    if (start > 0 && text_[start - 1] != '\n') return after;
    std::size_t end = after;
    while (end < text_.size() && is_blank(text_[end])) ++end;
    if (end < text_.size() && text_[end] == '\r') ++end;
    if (end < text_.size()) {
      if (text_[end] != '\n') return after;
      ++end;
    } else if (text_[end - 1] == '\r') {
      return after;  // a lone \r at the very end is no line end
    }
    pending_text_.resize(pending_text_.size() - (open - start));
    return end;
  }

  std::size_t triple(std::size_t open) {
    const std::size_t inner = open + 3;
    const std::size_t close = closing(inner);
    if (close == std::string_view::npos) {
      fail(open, "unterminated tag: '{{{' without '}}}' on the same line");
    }
    if (text_.substr(close, 3) != "}}}") fail(open, "triple brace not closed by '}}}'");
    field(open, trim(text_.substr(inner, close - inner)), false);
    return close + 3;
  }

  // The offset of the first `}}` after `from` on the same line, or npos. Another `{{` first
  // also means the tag was left open.
  std::size_t closing(std::size_t from) const {
    const std::size_t end = std::min(text_.find('\n', from), text_.find("{{", from));
    const std::size_t close = text_.find("}}", from);
    return close < end ? close : std::string_view::npos;
  }

  void field(std::size_t open, std::string_view content, bool escape) {
    const std::size_t bar = content.find('|');
    const std::string name = checked_name(open, content.substr(0, bar), "field");
    Template::Piece piece;
    piece.kind = Template::Kind::Field;
    piece.escape = escape;
    piece.text = add(name);
    piece.slot = add_once(template_.field_names_, name);
    if (bar == std::string_view::npos) {
      if (open_sections_.empty()) add_once(template_.required_fields_, name);
    } else {
      const std::string_view fallback = trim(content.substr(bar + 1));
      if (escape) {
        std::string escaped;
        append_html_escaped(escaped, fallback);
        piece.fallback = add(escaped);
      } else {
        piece.fallback = add(fallback);
      }
    }
    push(piece);
  }

  void open_section(std::size_t open, std::string_view content, bool inverted) {
    std::string topic = checked_name(open, trim(content), "section");
    Template::Piece piece;
    piece.slot = add_once(template_.topics_, topic);
    piece.kind = inverted ? Template::Kind::InvertedSection : Template::Kind::Section;
    piece.text = add(topic);
    push(piece);
    open_sections_.push_back({std::move(topic), open, template_.pieces_.size() - 1});
  }

  void close_section(std::size_t open, std::string_view content) {
    const std::string topic = checked_name(open, trim(content), "section");
    if (open_sections_.empty()) {
      fail(open, "'{{/" + topic + "}}' closes no open section");
    }
    const OpenSection& innermost = open_sections_.back();
    if (innermost.topic != topic) {
      fail(open, "'{{/" + topic + "}}' does not close section '" + innermost.topic +
                     "' opened at " + position(innermost.tag));
    }
    flush_text();
    template_.pieces_[innermost.piece].end = static_cast<std::uint32_t>(template_.pieces_.size());
    open_sections_.pop_back();
  }

  std::string checked_name(std::size_t open, std::string_view name, const char* what) const {
    name = trim(name);
    if (name.empty()) fail(open, std::string("empty ") + what + " name");
    if (!std::all_of(name.begin(), name.end(), is_name_char)) {
      fail(open, std::string("invalid ") + what + " name '" + std::string(name) +
                     "' (letters, digits, '_', '-', '.')");
    }
    return lower(name);
  }

  // Comments add nothing, so the text around one becomes a single piece.
  void push(const Template::Piece& piece) {
    flush_text();
    template_.pieces_.push_back(piece);
  }

  void flush_text() {
    if (pending_text_.empty()) return;
    template_.text_bytes_ += pending_text_.size();
    Template::Piece piece;
    piece.text = add(pending_text_);  // a Text piece
    template_.pieces_.push_back(piece);
    pending_text_.clear();
  }

  Template::Span add(std::string_view s) {
    const Template::Span span{static_cast<std::uint32_t>(template_.pool_.size()),
                              static_cast<std::uint32_t>(s.size())};
    template_.pool_.append(s);
    return span;
  }

  std::pair<unsigned, unsigned> line_and_column(std::size_t offset) const {
    const std::string_view before = text_.substr(0, offset);
    const auto line = 1 + std::count(before.begin(), before.end(), '\n');
    const std::size_t line_start = before.rfind('\n') + 1;  // npos + 1 is 0: the first line
    return {static_cast<unsigned>(line), static_cast<unsigned>(offset - line_start + 1)};
  }

  std::string position(std::size_t offset) const {
    const auto [line, column] = line_and_column(offset);
    return std::to_string(line) + ":" + std::to_string(column);
  }

  [[noreturn]] void fail(std::size_t offset, const std::string& message) const {
    const auto [line, column] = line_and_column(offset);
    throw TemplateError(file_, line, column, message);
  }

  std::string_view text_;
  std::string file_;
  Escape escape_;
  Template template_;
  std::string pending_text_;
  std::vector<OpenSection> open_sections_;
};

Template Template::compile(std::string_view text, std::string file, Escape escape) {
  return TemplateCompiler(text, std::move(file), escape).run();
}

void Template::render(const FieldSource& recipient, std::string& out) const {
  // Grow at most once for the literal text, and geometrically, so that a caller appending many
  // renderings to one buffer does not reallocate for each.
  const std::size_t wanted = out.size() + text_bytes_;
  if (wanted > out.capacity()) out.reserve(std::max(wanted, 2 * out.capacity()));

  // Fields repeat (a first name in the greeting and the footer): ask the recipient once.
  std::array<Memo, kInlineMemos> inline_memos;
  std::vector<Memo> heap_memos;
  Memo* memos = inline_memos.data();
  if (field_names_.size() + topics_.size() > kInlineMemos) {
    heap_memos.resize(field_names_.size() + topics_.size());
    memos = heap_memos.data();
  }
  Memo* const topic_memos = memos + field_names_.size();

  const std::size_t count = pieces_.size();
  for (std::size_t i = 0; i < count;) {
    const Piece& piece = pieces_[i];
    switch (piece.kind) {
      case Kind::Text:
        out.append(view(piece.text));
        ++i;
        break;
      case Kind::Field: {
        Memo& memo = memos[piece.slot];
        if (memo.state == Memo::State::Unasked) {
          const std::optional<std::string_view> value = recipient.field(view(piece.text));
          const bool present = value && !value->empty();
          memo.state = present ? Memo::State::Present : Memo::State::Absent;
          if (present) memo.value = *value;
        }
        if (memo.state == Memo::State::Absent) {
          out.append(view(piece.fallback));
        } else if (piece.escape) {
          append_html_escaped(out, memo.value);
        } else {
          out.append(memo.value);
        }
        ++i;
        break;
      }
      case Kind::Section:
      case Kind::InvertedSection: {
        Memo& memo = topic_memos[piece.slot];
        if (memo.state == Memo::State::Unasked) {
          memo.state =
              recipient.subscribed(view(piece.text)) ? Memo::State::Present : Memo::State::Absent;
        }
        const bool shown = (memo.state == Memo::State::Present) == (piece.kind == Kind::Section);
        i = shown ? i + 1 : piece.end;
        break;
      }
    }
  }
}

std::vector<std::string> Template::required_fields() const {
  return required_fields_;
}

std::vector<std::string> Template::topics() const {
  return topics_;
}

}  // namespace mma::compose
