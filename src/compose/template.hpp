// compose/template: templates: `{{field}}` substitution (HTML-escaped in HTML), topic sections,
// defaults; errors name file, line and column.
//
// A campaign's plain-text and HTML bodies are each one Template, compiled once when the
// campaign loads and rendered once per recipient. Rendering walks a flat list of compiled
// pieces and appends to the caller's buffer: no parsing, and no allocation but the buffer's
// growth (and one more past 32 distinct fields and topics, to remember the recipient's answers).
// Recipient data comes through FieldSource (the recipient sources implement it).
//
// Syntax (a subset of mustache):
//   {{ name }}              the recipient's field; names are letters, digits, `_`, `-`, `.`,
//                           case-insensitive (looked up lower-case)
//   {{ name | text }}       the field, or `text` (literal, trimmed) when it is missing or empty
//   {{{ name }}}            the field unescaped, also with `| text`
//   {{# topic }} ... {{/ topic }}   shown only to recipients subscribed to `topic`
//   {{^ topic }} ... {{/ topic }}   shown only to recipients not subscribed to `topic`
//   {{! comment }}          nothing; the only tag that may span lines
// In an Escape::Html template every substituted value, default text included, is escaped
// (& < > " '); in Escape::None nothing is. A `{` or `}` not part of `{{` is plain text; there
// is no way to write a literal `{{`. Every other tag must close on the line it opens, so that a
// forgotten `}}` is reported where it was forgotten. A field missing without a default renders
// empty: rejecting such a recipient is the caller's choice (required_fields()).
//
// Standalone tags (as in mustache): a line holding nothing but spaces, tabs and one section tag
// (`{{#x}}`, `{{^x}}`, `{{/x}}`) or one comment disappears whole, line end (\n or \r\n)
// included, so that a tag on a line of its own leaves no blank line in a plain-text mail. A
// comment spanning lines is standalone when its first line starts, and its last line ends, with
// nothing but blanks. A field tag never makes a line standalone; nor do two tags on one line.
// The last line needs no line end. This is settled at compile time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace mma::compose {

// Thrown by compile(); what() is "file:line:column: message" (1-based line and column, in
// bytes, so that an editor's byte column finds it).
struct TemplateError : std::runtime_error {
  TemplateError(std::string file, unsigned line, unsigned column, const std::string& message);
  std::string file;
  unsigned line;
  unsigned column;
};

enum class Escape { None, Html };

// What a template reads for one recipient.
class FieldSource {
 public:
  virtual ~FieldSource() = default;
  // `name` is lower-case.
  [[nodiscard]] virtual std::optional<std::string_view> field(std::string_view name) const = 0;
  [[nodiscard]] virtual bool subscribed(std::string_view topic) const = 0;
};

class Template {
 public:
  Template() = default;  // renders nothing

  // Throws TemplateError naming `file`, line and column of the fault.
  static Template compile(std::string_view text, std::string file, Escape escape);

  // Appends the rendering for one recipient to `out`. Each field and topic is asked of
  // `recipient` at most once, and only when the part of the template using it is shown.
  void render(const FieldSource& recipient, std::string& out) const;

  // Field names used without a default outside every section: a recipient missing one is a bad
  // row (the caller checks). A field used only inside sections, or only with a default, is not
  // required (it renders empty, or as its default, when missing); one used without a default
  // outside sections is, even when it also has a default elsewhere. Lower-case, each once, in
  // order of first such use.
  [[nodiscard]] std::vector<std::string> required_fields() const;
  // Topic names of sections, lower-case, each once, in order of first use.
  [[nodiscard]] std::vector<std::string> topics() const;

 private:
  // A run of pool_.
  struct Span {
    std::uint32_t offset = 0;
    std::uint32_t size = 0;
  };
  enum class Kind : std::uint8_t { Text, Field, Section, InvertedSection };
  // Text: `text` is the literal. Field: `text` is the name, `fallback` the default, already
  // escaped when `escape`, `slot` the index of the name in field_names_. Sections: `text` is the
  // topic, `slot` its index in topics_, `end` the index of the piece after the section, where
  // rendering resumes when the section is not shown.
  struct Piece {
    Kind kind = Kind::Text;
    bool escape = false;
    Span text;
    Span fallback;
    std::uint32_t slot = 0;
    std::uint32_t end = 0;
  };
  friend class TemplateCompiler;

  [[nodiscard]] std::string_view view(Span s) const { return {pool_.data() + s.offset, s.size}; }

  std::vector<Piece> pieces_;
  std::string pool_;                      // every literal, name and default, back to back
  std::size_t text_bytes_ = 0;            // all literal bytes, to grow `out` once per rendering
  std::vector<std::string> field_names_;  // every field, with a default or not
  std::vector<std::string> required_fields_;
  std::vector<std::string> topics_;
};

}  // namespace mma::compose
