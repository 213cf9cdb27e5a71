#include "compose/template.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace mma::compose {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A recipient row in memory, which remembers what the template asked of it.
class Recipient : public FieldSource {
 public:
  Recipient() = default;
  Recipient(std::map<std::string, std::string, std::less<>> fields, std::set<std::string> topics)
      : fields_(std::move(fields)), topics_(std::move(topics)) {}

  std::optional<std::string_view> field(std::string_view name) const override {
    asked_fields.emplace_back(name);
    const auto it = fields_.find(name);
    if (it == fields_.end()) return std::nullopt;
    return it->second;
  }
  bool subscribed(std::string_view topic) const override {
    asked_topics.emplace_back(topic);
    return topics_.count(std::string(topic)) > 0;
  }

  mutable std::vector<std::string> asked_fields;
  mutable std::vector<std::string> asked_topics;

 private:
  std::map<std::string, std::string, std::less<>> fields_;
  std::set<std::string> topics_;
};

std::string render(std::string_view text, const FieldSource& recipient,
                   Escape escape = Escape::None) {
  std::string out;
  Template::compile(text, "t.txt", escape).render(recipient, out);
  return out;
}

TEST(TemplateTest, SubstitutesFields) {
  const Recipient ann({{"name", "Ann"}, {"city", "Paris"}}, {});
  EXPECT_EQ(render("Hello {{name}}, {{ city }}!", ann), "Hello Ann, Paris!");
  EXPECT_EQ(render("{{\t name \t}}{{name}}", ann), "AnnAnn");
  EXPECT_EQ(render("no tags at all", ann), "no tags at all");
  EXPECT_EQ(render("", ann), "");
}

TEST(TemplateTest, MissingFieldWithoutDefaultRendersEmpty) {
  const Recipient ann({{"empty", ""}}, {});
  EXPECT_EQ(render("[{{ missing }}][{{ empty }}]", ann), "[][]");
}

TEST(TemplateTest, DefaultWhenFieldMissingOrEmpty) {
  const Recipient ann({{"name", "Ann"}, {"empty", ""}}, {});
  EXPECT_EQ(render("{{ name | dear customer }}", ann), "Ann");
  EXPECT_EQ(render("{{ missing |   dear customer  }}", ann), "dear customer");
  EXPECT_EQ(render("{{ empty|friend}}", ann), "friend");
  EXPECT_EQ(render("{{ missing | a | b }}", ann), "a | b");
  EXPECT_EQ(render("[{{ missing | }}]", ann), "[]");
}

TEST(TemplateTest, HtmlEscapesValuesAndDefaultsButNotTheTemplate) {
  const Recipient tom({{"name", R"(<b>"Tom" & 'Jerry'</b>)"}}, {});
  EXPECT_EQ(render("<p>{{ name }}</p>", tom, Escape::Html),
            "<p>&lt;b&gt;&quot;Tom&quot; &amp; &#39;Jerry&#39;&lt;/b&gt;</p>");
  EXPECT_EQ(render("<p>{{ missing | <none> & 'x' }}</p>", tom, Escape::Html),
            "<p>&lt;none&gt; &amp; &#39;x&#39;</p>");
}

TEST(TemplateTest, PlainTextIsNeverEscaped) {
  const Recipient tom({{"name", R"(<b>"Tom" & 'Jerry'</b>)"}}, {});
  EXPECT_EQ(render("{{ name }} {{ missing | <none> }}", tom, Escape::None),
            R"(<b>"Tom" & 'Jerry'</b> <none>)");
}

TEST(TemplateTest, TripleBracesInsertUnescaped) {
  const Recipient tom({{"banner", "<img src=\"x.png\">"}}, {});
  EXPECT_EQ(render("{{{ banner }}}|{{banner}}", tom, Escape::Html),
            "<img src=\"x.png\">|&lt;img src=&quot;x.png&quot;&gt;");
  EXPECT_EQ(render("{{{ missing | <i>none</i> }}}", tom, Escape::Html), "<i>none</i>");
  EXPECT_EQ(render("{{{banner}}}", tom, Escape::None), "<img src=\"x.png\">");
}

TEST(TemplateTest, ValuesAreNotParsedAgain) {
  const Recipient odd({{"a", "{{ b }}"}, {"b", "B"}}, {});
  EXPECT_EQ(render("{{ a }}", odd), "{{ b }}");
}

TEST(TemplateTest, SectionsShowOnlyToSubscribers) {
  const std::string_view text = "a{{# news }}N{{/ news }}b{{^ news }}n{{/ news }}c";
  EXPECT_EQ(render(text, Recipient({}, {"news"})), "aNbc");
  EXPECT_EQ(render(text, Recipient({}, {})), "abnc");
  EXPECT_EQ(render("{{#news}}{{/news}}x", Recipient({}, {"news"})), "x");
}

TEST(TemplateTest, HiddenSectionsAreNotEvaluated) {
  const Recipient reader({{"name", "Ann"}}, {});
  EXPECT_EQ(render("{{# news }}{{ name }}{{# offers }}{{/ offers }}{{/ news }}!", reader), "!");
  EXPECT_THAT(reader.asked_fields, IsEmpty());
  EXPECT_THAT(reader.asked_topics, ElementsAre("news"));
}

class NestedSectionsTest : public ::testing::TestWithParam<std::tuple<bool, bool, std::string>> {};

TEST_P(NestedSectionsTest, Render) {
  const auto& [a, b, expected] = GetParam();
  std::set<std::string> topics;
  if (a) topics.insert("a");
  if (b) topics.insert("b");
  constexpr std::string_view kText =
      "{{#a}}A{{#b}}B{{/b}}{{^b}}b{{/b}}.{{/a}}{{^a}}-{{^b}}nb{{/b}}{{#b}}yb{{/b}}{{/a}}";
  EXPECT_EQ(render(kText, Recipient({}, topics)), expected);
}

INSTANTIATE_TEST_SUITE_P(AllSubscriptions, NestedSectionsTest,
                         ::testing::Values(std::make_tuple(true, true, "AB."),
                                           std::make_tuple(true, false, "Ab."),
                                           std::make_tuple(false, true, "-yb"),
                                           std::make_tuple(false, false, "-nb")));

TEST(TemplateTest, NamesAndTopicsAreCaseInsensitive) {
  const Recipient ann({{"first_name", "Ann"}}, {"news"});
  EXPECT_EQ(render("{{ First_NAME }}{{# NEWS }}!{{/ News }}", ann), "Ann!");
  EXPECT_THAT(ann.asked_fields, ElementsAre("first_name"));
  EXPECT_THAT(ann.asked_topics, ElementsAre("news"));
}

TEST(TemplateTest, AsksTheRecipientOncePerFieldAndTopic) {
  const Recipient ann({{"name", "Ann"}, {"empty", ""}}, {"news"});
  EXPECT_EQ(render("{{name}}{{#news}}{{ NAME }}{{/news}}{{^news}}{{/news}}{{{name}}}"
                   "{{empty|a}}{{empty|b}}{{missing}}{{missing|c}}",
                   ann, Escape::Html),
            "AnnAnnAnnabc");
  EXPECT_THAT(ann.asked_fields, ElementsAre("name", "empty", "missing"));
  EXPECT_THAT(ann.asked_topics, ElementsAre("news"));
}

TEST(TemplateTest, ManyDistinctFieldsAndTopics) {
  std::map<std::string, std::string, std::less<>> fields;
  std::set<std::string> topics;
  std::string text;
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    const std::string n = std::to_string(i);
    if (i % 3 != 0) fields["f" + n] = "<" + n + ">";
    if (i % 2 == 0) topics.insert("t" + n);
    text += "{{#t" + n + "}}{{ f" + n + " | -" + n + " }}{{/t" + n + "}}{{^t" + n + "}}.{{/t" + n +
            "}}";
    expected += i % 2 != 0 ? "." : i % 3 != 0 ? "&lt;" + n + "&gt;" : "-" + n;
  }
  EXPECT_EQ(render(text + text, Recipient(fields, topics), Escape::Html), expected + expected);
}

TEST(TemplateTest, NamesMayHoldDigitsDotsAndDashes) {
  const Recipient ann({{"address.zip-code_2", "75001"}}, {});
  EXPECT_EQ(render("{{ Address.Zip-Code_2 }}", ann), "75001");
}

TEST(TemplateTest, CommentsRenderNothing) {
  const Recipient ann({{"name", "Ann"}}, {});
  EXPECT_EQ(render("a{{! a { } note }}b", ann), "ab");
  EXPECT_EQ(render("a{{!\n  a note\n  over lines\n}}b {{name}}", ann), "ab Ann");
  EXPECT_EQ(render("{{!}}{{ ! spaced }}", ann), "");
}

TEST(TemplateTest, LoneBracesAreText) {
  const Recipient ann({{"name", "Ann"}}, {});
  EXPECT_EQ(render("body { color: red; } {x} }} } { {{name}}}", ann),
            "body { color: red; } {x} }} } { Ann}");
  EXPECT_EQ(render("@media { a { b: c }}", ann), "@media { a { b: c }}");
  EXPECT_EQ(render("{ {{{name}}}}", ann, Escape::Html), "{ Ann}");
}

TEST(TemplateTest, Utf8PassesThroughUntouched) {
  const Recipient zoe({{"name", "Zoë 🎉 日本"}, {"ville", "Besançon"}}, {});
  EXPECT_EQ(render("Grüße, {{name}} — {{ ville }} ✓", zoe, Escape::Html),
            "Grüße, Zoë 🎉 日本 — Besançon ✓");
  EXPECT_EQ(render("{{ missing | Chère cliente }}", zoe, Escape::Html), "Chère cliente");
}

TEST(TemplateTest, LineEndsAreKept) {
  const Recipient ann({{"name", "Ann"}}, {});
  EXPECT_EQ(render("Hi\r\n{{ name }}\r\n", ann), "Hi\r\nAnn\r\n");
}

// --- Standalone tags -----------------------------------------------------------------------

TEST(TemplateTest, StandaloneSectionLinesDisappear) {
  constexpr std::string_view kText = "Hello,\n{{#travel}}\nTRAVEL news\n{{/travel}}\nBye\n";
  EXPECT_EQ(render(kText, Recipient({}, {"travel"})), "Hello,\nTRAVEL news\nBye\n");
  EXPECT_EQ(render(kText, Recipient({}, {})), "Hello,\nBye\n");
  constexpr std::string_view kInverted = "Hello,\n{{^travel}}\nno travel\n{{/travel}}\nBye\n";
  EXPECT_EQ(render(kInverted, Recipient({}, {"travel"})), "Hello,\nBye\n");
  EXPECT_EQ(render(kInverted, Recipient({}, {})), "Hello,\nno travel\nBye\n");
}

TEST(TemplateTest, StandaloneLinesWithCrLf) {
  constexpr std::string_view kText = "Hello,\r\n{{#t}}\r\nT\r\n{{/t}}\r\n{{! note }}\r\nBye\r\n";
  EXPECT_EQ(render(kText, Recipient({}, {"t"})), "Hello,\r\nT\r\nBye\r\n");
  EXPECT_EQ(render(kText, Recipient({}, {})), "Hello,\r\nBye\r\n");
  // A lone \r ends no line.
  EXPECT_EQ(render("{{#t}}\rT\n{{/t}}\r", Recipient({}, {"t"})), "\rT\n\r");
}

TEST(TemplateTest, StandaloneLinesMayBeIndented) {
  constexpr std::string_view kText = "<ul>\n  {{#t}}  \n  <li>T</li>\n\t {{/t}}\t\n</ul>\n";
  EXPECT_EQ(render(kText, Recipient({}, {"t"}), Escape::Html), "<ul>\n  <li>T</li>\n</ul>\n");
  EXPECT_EQ(render(kText, Recipient({}, {}), Escape::Html), "<ul>\n</ul>\n");
}

TEST(TemplateTest, StandaloneOnFirstAndLastLines) {
  EXPECT_EQ(render("  {{#t}}\nT\n  {{/t}}  ", Recipient({}, {"t"})), "T\n");
  EXPECT_EQ(render("  {{#t}}\nT\n  {{/t}}  ", Recipient({}, {})), "");
  EXPECT_EQ(render("a\n{{! end }}", Recipient()), "a\n");
  EXPECT_EQ(render("a\n{{! end }}\r\n", Recipient()), "a\n");
  EXPECT_EQ(render("\t{{! only }}", Recipient()), "");
}

TEST(TemplateTest, NestedStandaloneSections) {
  constexpr std::string_view kText =
      "Hi\n"
      "{{#a}}\n"
      "  {{#b}}\n"
      "  ab\n"
      "  {{/b}}\n"
      "  {{^b}}\n"
      "  a\n"
      "  {{/b}}\n"
      "{{/a}}\n"
      "\n"
      "Bye\n";
  EXPECT_EQ(render(kText, Recipient({}, {"a", "b"})), "Hi\n  ab\n\nBye\n");
  EXPECT_EQ(render(kText, Recipient({}, {"a"})), "Hi\n  a\n\nBye\n");
  EXPECT_EQ(render(kText, Recipient({}, {"b"})), "Hi\n\nBye\n");
}

TEST(TemplateTest, StandaloneComments) {
  EXPECT_EQ(render("a\n  {{! note }}\t\nb\n", Recipient()), "a\nb\n");
  EXPECT_EQ(render("a\n  {{! a note\n  over lines }}\r\nb\n", Recipient()), "a\nb\n");
  // Not standalone: text on its first or last line.
  EXPECT_EQ(render("a\nx {{! a note\n  over lines }}\nb\n", Recipient()), "a\nx \nb\n");
  EXPECT_EQ(render("a\n{{! a note\n  over lines }} y\nb\n", Recipient()), "a\n y\nb\n");
}

TEST(TemplateTest, TagsNotAloneOnTheirLineAreKept) {
  const Recipient ann({{"name", "Ann"}}, {"t"});
  EXPECT_EQ(render("a {{#t}}\nT\n{{/t}} b\n", ann), "a \nT\n b\n");
  EXPECT_EQ(render("{{#t}}{{/t}}\nx\n", ann), "\nx\n");
  EXPECT_EQ(render("{{#t}}{{name}}\n{{/t}}", ann), "Ann\n");
  EXPECT_EQ(render("  {{name}}  \n{{ missing }}\n", ann), "  Ann  \n\n");
  EXPECT_EQ(render("  {{{name}}}\n", ann), "  Ann\n");
  EXPECT_EQ(render("{{! c }}{{! d }}\nx", ann), "\nx");
  EXPECT_EQ(render("- {{! c }}\n", ann), "- \n");
}

TEST(TemplateTest, ErrorsAfterStandaloneTagsKeepTheirPositions) {
  try {
    static_cast<void>(Template::compile("{{#a}}\n  {{! x }}\n  {{ oops", "t.txt", Escape::None));
    FAIL();
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.line, 3U);
    EXPECT_EQ(e.column, 3U);
  }
}

TEST(TemplateTest, RenderAppends) {
  const Template t = Template::compile("[{{ name }}]", "t.txt", Escape::None);
  std::string out = "so far:";
  t.render(Recipient({{"name", "Ann"}}, {}), out);
  t.render(Recipient({{"name", "Bob"}}, {}), out);
  EXPECT_EQ(out, "so far:[Ann][Bob]");
}

TEST(TemplateTest, DefaultTemplateRendersNothing) {
  const Template t;
  std::string out = "x";
  t.render(Recipient(), out);
  EXPECT_EQ(out, "x");
  EXPECT_THAT(t.required_fields(), IsEmpty());
  EXPECT_THAT(t.topics(), IsEmpty());
}

TEST(TemplateTest, CopiesOutliveTheOriginal) {
  Template copy;
  {
    const auto original = std::make_unique<Template>(
        Template::compile("a{{#t}}{{ name | x }}{{/t}}b", "t.txt", Escape::Html));
    copy = *original;
  }
  std::string out;
  copy.render(Recipient({}, {"t"}), out);
  EXPECT_EQ(out, "axb");
}

TEST(TemplateTest, RequiredFieldsAreThoseWithoutDefaultOutsideSections) {
  const Template t = Template::compile(
      "{{b}} {{a}} {{ B }} {{c|d}} {{{e}}} {{#t}}{{f}}{{/t}} {{! {{g}} }} {{ c }}", "t.txt",
      Escape::Html);
  EXPECT_THAT(t.required_fields(), ElementsAre("b", "a", "e", "c"));
}

TEST(TemplateTest, FieldsOnlyInSectionsOrWithDefaultsAreNotRequired) {
  const auto required = [](std::string_view text) {
    return Template::compile(text, "t.txt", Escape::None).required_fields();
  };
  EXPECT_THAT(required("{{#city}} from {{city}}{{/city}}"), IsEmpty());
  EXPECT_THAT(required("{{^t}}{{a}}{{/t}}{{#t}}{{#u}}{{{b}}}{{/u}}{{/t}}{{ c | x }}"), IsEmpty());
  // Used outside sections too, in any order: required, in order of the first use outside.
  EXPECT_THAT(required("{{#t}}{{a}}{{b}}{{/t}}{{b}}{{a|x}}{{{a}}}"), ElementsAre("b", "a"));
  EXPECT_THAT(required("{{a}}{{#t}}{{a}}{{/t}}"), ElementsAre("a"));
  // Missing, such a field renders empty (or as its default).
  EXPECT_EQ(render("{{#city}}from {{city}}{{/city}}[{{ zip | none }}]", Recipient({}, {"city"})),
            "from [none]");
}

TEST(TemplateTest, TopicsOfAllSections) {
  const Template t = Template::compile("{{#x}}{{^Y}}{{/y}}{{/x}}{{#x}}{{/x}}{{^z}}{{/z}}{{ w }}",
                                       "t.txt", Escape::None);
  EXPECT_THAT(t.topics(), ElementsAre("x", "y", "z"));
}

// --- Errors -------------------------------------------------------------------------------

struct BadTemplate {
  std::string text;
  unsigned line;
  unsigned column;
  std::string message;
};

class TemplateErrorTest : public ::testing::TestWithParam<BadTemplate> {};

TEST_P(TemplateErrorTest, NamesFileLineAndColumn) {
  const BadTemplate& bad = GetParam();
  try {
    static_cast<void>(Template::compile(bad.text, "campaign/body.html", Escape::Html));
    FAIL() << "compiled: " << bad.text;
  } catch (const TemplateError& e) {
    EXPECT_EQ(e.file, "campaign/body.html");
    EXPECT_EQ(e.line, bad.line);
    EXPECT_EQ(e.column, bad.column);
    EXPECT_EQ(std::string(e.what()), "campaign/body.html:" + std::to_string(bad.line) + ":" +
                                         std::to_string(bad.column) + ": " + bad.message);
  }
}

const std::string kUnterminated = "unterminated tag: '{{' without '}}' on the same line";
const std::string kBadFieldName = "' (letters, digits, '_', '-', '.')";

INSTANTIATE_TEST_SUITE_P(
    EachFault, TemplateErrorTest,
    ::testing::Values(
        BadTemplate{"Hi {{ name", 1, 4, kUnterminated},
        BadTemplate{"Hi {{ name\n}}", 1, 4, kUnterminated},
        BadTemplate{"a\nb {{ x {{ y }}", 2, 3, kUnterminated},
        BadTemplate{"ok\r\n{{ x", 2, 1, kUnterminated},
        BadTemplate{"é {{", 1, 4, kUnterminated},  // columns count bytes
        BadTemplate{"{{# news", 1, 1, kUnterminated},
        BadTemplate{"x {{! never closed\n", 1, 3, "unterminated comment: '{{!' without '}}'"},
        BadTemplate{"{{}}", 1, 1, "empty field name"},
        BadTemplate{"\n\n  {{   }}", 3, 3, "empty field name"},
        BadTemplate{"{{ | guest }}", 1, 1, "empty field name"},
        BadTemplate{"{{{ }}}", 1, 1, "empty field name"},
        BadTemplate{"{{ first name }}", 1, 1, "invalid field name 'first name" + kBadFieldName},
        BadTemplate{"{{ naïve }}", 1, 1, "invalid field name 'naïve" + kBadFieldName},
        BadTemplate{"{{ a@b }}", 1, 1, "invalid field name 'a@b" + kBadFieldName},
        BadTemplate{"{{{ #x }}}", 1, 1, "invalid field name '#x" + kBadFieldName},
        BadTemplate{"{{#}}", 1, 1, "empty section name"},
        BadTemplate{"{{/ }}", 1, 1, "empty section name"},
        BadTemplate{"{{# a b }}{{/ a b }}", 1, 1,
                    "invalid section name 'a b' (letters, digits, '_', '-', '.')"},
        BadTemplate{"text\n  {{/ News }}", 2, 3, "'{{/news}}' closes no open section"},
        BadTemplate{"{{#a}}{{/a}}{{/a}}", 1, 13, "'{{/a}}' closes no open section"},
        BadTemplate{"{{#a}}\n  {{^b}}x{{/a}}", 2, 10,
                    "'{{/a}}' does not close section 'b' opened at 2:3"},
        BadTemplate{"{{#a}}x\n{{^b}}y{{/b}}", 1, 1, "section 'a' is never closed"},
        BadTemplate{"{{#a}}\n {{#b}}", 2, 2, "section 'b' is never closed"},
        BadTemplate{"{{{ a }}", 1, 1, "triple brace not closed by '}}}'"},
        BadTemplate{"{{{ a }} }}}", 1, 1, "triple brace not closed by '}}}'"},
        BadTemplate{"x{{{ a", 1, 2, "unterminated tag: '{{{' without '}}}' on the same line"},
        BadTemplate{"{{> partial }}", 1, 1, "unknown tag sigil '>'"},
        BadTemplate{"{{ &name }}", 1, 1, "unknown tag sigil '&'"},
        BadTemplate{"{{=<% %>=}}", 1, 1, "unknown tag sigil '='"}));

// --- Property: random templates against a naive reference ---------------------------------

// A template as a tree, which serializes to text and renders by the definition of the syntax.
struct Node {
  enum class Kind { Text, Field, Comment, Section } kind = Kind::Text;
  std::string text;  // Text and Comment: the content; Field: the name; Section: the topic
  std::optional<std::string> fallback;
  bool triple = false;
  bool inverted = false;
  std::vector<Node> children;
};

const std::vector<std::string> kNames = {"first_name", "city", "code", "a.b", "x-y", "n1"};
const std::vector<std::string> kTopics = {"news", "offers", "tips"};
const std::vector<std::string> kValues = {"Ann",        "<b>&amp;</b>", "\"q\" 'a'", "Zoë 日本",
                                          "{{ city }}", "a\nb",         "",          "}}"};

class Generator {
 public:
  explicit Generator(std::uint32_t seed) : random_(seed) {}

  std::vector<Node> nodes(int depth) {
    std::vector<Node> out(pick(0, 5));
    for (Node& n : out) n = node(depth);
    return out;
  }

  std::string pad() { return std::string(pick(0, 2), pick(0, 3) == 0 ? '\t' : ' '); }

  // Mostly a line end, sometimes none (the text's start or end, or more text on the line).
  std::string line_end() {
    static const std::vector<std::string> kEnds = {"\n", "\n", "\r\n", "", "\r"};
    return kEnds[pick(0, kEnds.size() - 1)];
  }

  std::size_t pick(std::size_t low, std::size_t high) {
    return std::uniform_int_distribution<std::size_t>(low, high)(random_);
  }

  std::string any_case(const std::string& name) {
    std::string s = name;
    for (char& c : s) {
      if (c >= 'a' && c <= 'z' && pick(0, 1) == 1) c = static_cast<char>(c - 'a' + 'A');
    }
    return s;
  }

  Recipient recipient() {
    std::map<std::string, std::string, std::less<>> fields;
    for (const std::string& name : kNames) {
      if (pick(0, 3) > 0) fields[name] = kValues[pick(0, kValues.size() - 1)];
    }
    std::set<std::string> topics;
    for (const std::string& topic : kTopics) {
      if (pick(0, 1) == 1) topics.insert(topic);
    }
    return Recipient(std::move(fields), std::move(topics));
  }

 private:
  Node node(int depth) {
    Node n;
    switch (pick(0, depth > 2 ? 2 : 3)) {
      case 0:
        n.kind = Node::Kind::Text;
        n.text = text({"a",  "b", " ", "\t", "\n", "\r\n", "\r", "<", ">", "&",
                       "\"", "'", "{", "}",  "}}", "|",    "#",  "!", "é", "中"});
        break;
      case 1:
        n.kind = Node::Kind::Field;
        n.text = kNames[pick(0, kNames.size() - 1)];
        n.triple = pick(0, 3) == 0;
        if (pick(0, 1) == 1) n.fallback = text({"x", "y", " ", "<", "&", "'", "\"", "|", "é"});
        break;
      case 2:
        n.kind = Node::Kind::Comment;
        n.text = text({"c", " ", "\n", "\r\n", "{", "{{", "#"});
        break;
      default:
        n.kind = Node::Kind::Section;
        n.text = kTopics[pick(0, kTopics.size() - 1)];
        n.inverted = pick(0, 1) == 1;
        n.children = nodes(depth + 1);
        break;
    }
    return n;
  }

  // Text never contains `{{` or ends in `{`, so that it cannot open a tag with what follows.
  std::string text(const std::vector<std::string>& tokens) {
    std::string s;
    for (std::size_t count = pick(0, 8); count > 0; --count) {
      const std::string& token = tokens[pick(0, tokens.size() - 1)];
      if (!s.empty() && s.back() == '{' && token.front() == '{') continue;
      s += token;
    }
    if (!s.empty() && s.back() == '{') s += 'a';
    return s;
  }

  std::mt19937 random_;
};

// One piece of a template's text: literal text, or one tag.
struct Token {
  enum class Kind { Text, Field, Comment, Open, Close } kind = Kind::Text;
  std::string source;
  const Node* node = nullptr;  // the Field or Section; null for Text and Comment
};

// The template as tokens, whose sources back to back are its text. Section tags and comments
// are often put on lines of their own, to make them standalone.
void tokenize(const std::vector<Node>& nodes, Generator& g, std::vector<Token>& out) {
  const auto maybe_own_line = [&](Token tag) {
    const bool own_line = g.pick(0, 1) == 1;
    if (own_line) out.push_back({Token::Kind::Text, g.line_end() + g.pad()});
    out.push_back(std::move(tag));
    if (own_line) out.push_back({Token::Kind::Text, g.pad() + g.line_end()});
  };
  for (const Node& n : nodes) {
    switch (n.kind) {
      case Node::Kind::Text:
        out.push_back({Token::Kind::Text, n.text});
        break;
      case Node::Kind::Comment:
        maybe_own_line({Token::Kind::Comment, "{{!" + n.text + "}}"});
        break;
      case Node::Kind::Field: {
        std::string s = n.triple ? "{{{" : "{{";
        s += g.pad() + g.any_case(n.text) + g.pad();
        if (n.fallback) s += "|" + *n.fallback;
        s += n.triple ? "}}}" : "}}";
        out.push_back({Token::Kind::Field, std::move(s), &n});
        break;
      }
      case Node::Kind::Section:
        maybe_own_line({Token::Kind::Open,
                        std::string(n.inverted ? "{{^" : "{{#") + g.pad() + g.any_case(n.text) +
                            g.pad() + "}}",
                        &n});
        tokenize(n.children, g, out);
        maybe_own_line({Token::Kind::Close, "{{/" + g.pad() + g.any_case(n.text) + g.pad() + "}}"});
        break;
    }
  }
}

std::string naive_escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    if (c == '&') {
      out += "&amp;";
    } else if (c == '<') {
      out += "&lt;";
    } else if (c == '>') {
      out += "&gt;";
    } else if (c == '"') {
      out += "&quot;";
    } else if (c == '\'') {
      out += "&#39;";
    } else {
      out += c;
    }
  }
  return out;
}

std::string naive_trim(std::string s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.erase(0, 1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

std::string render_field(const Node& n, const Recipient& r, Escape escape) {
  const auto value = r.field(n.text);
  std::string s =
      value && !value->empty() ? std::string(*value) : naive_trim(n.fallback.value_or(""));
  return escape == Escape::Html && !n.triple ? naive_escape(s) : s;
}

// Renders by the definition: the text is cut into characters and tags; a section tag or comment
// with nothing but blanks between it and the line's start (or the text's) and its line end
// (\n, \r\n, or the text's end) takes those blanks and that line end with it.
std::string reference(const std::vector<Token>& tokens, const Recipient& r, Escape escape) {
  struct Unit {
    const Token* tag = nullptr;  // or a character of text
    char c = 0;
    bool dropped = false;
  };
  std::vector<Unit> units;
  for (const Token& token : tokens) {
    if (token.kind != Token::Kind::Text) {
      units.push_back({&token});
      continue;
    }
    for (const char c : token.source) units.push_back({nullptr, c});
  }
  const auto is_char = [&](std::size_t i, char c) {
    return i < units.size() && units[i].tag == nullptr && units[i].c == c;
  };
  const auto is_blank = [&](std::size_t i) { return is_char(i, ' ') || is_char(i, '\t'); };
  for (std::size_t i = 0; i < units.size(); ++i) {
    if (units[i].tag == nullptr || units[i].tag->kind == Token::Kind::Field) continue;
    std::size_t start = i;
    while (start > 0 && is_blank(start - 1)) --start;
    if (start > 0 && !is_char(start - 1, '\n')) continue;
    std::size_t end = i + 1;
    while (is_blank(end)) ++end;
    if (is_char(end, '\r') && is_char(end + 1, '\n')) {
      end += 2;
    } else if (is_char(end, '\n')) {
      end += 1;
    } else if (end != units.size()) {
      continue;
    }
    for (std::size_t j = start; j < end; ++j) {
      if (j != i) units[j].dropped = true;
    }
  }
  std::string out;
  std::vector<bool> shown = {true};
  for (const Unit& u : units) {
    if (u.tag == nullptr) {
      if (shown.back() && !u.dropped) out += u.c;
      continue;
    }
    switch (u.tag->kind) {
      case Token::Kind::Field:
        if (shown.back()) out += render_field(*u.tag->node, r, escape);
        break;
      case Token::Kind::Open:
        shown.push_back(shown.back() && r.subscribed(u.tag->node->text) != u.tag->node->inverted);
        break;
      case Token::Kind::Close:
        shown.pop_back();
        break;
      default:
        break;
    }
  }
  return out;
}

// Required: used without a default outside every section.
void collect_names(const std::vector<Node>& nodes, bool in_section,
                   std::vector<std::string>& fields, std::vector<std::string>& topics) {
  const auto add = [](std::vector<std::string>& names, const std::string& name) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  };
  for (const Node& n : nodes) {
    if (n.kind == Node::Kind::Field && !n.fallback && !in_section) add(fields, n.text);
    if (n.kind == Node::Kind::Section) {
      add(topics, n.text);
      collect_names(n.children, true, fields, topics);
    }
  }
}

TEST(TemplatePropertyTest, RandomTemplatesRenderAsTheReference) {
  Generator g(20240601);
  for (int round = 0; round < 400; ++round) {
    const std::vector<Node> tree = g.nodes(0);
    std::vector<Token> tokens;
    tokenize(tree, g, tokens);
    std::string text;
    for (const Token& token : tokens) text += token.source;
    for (const Escape escape : {Escape::None, Escape::Html}) {
      const Template t = Template::compile(text, "random", escape);
      std::vector<std::string> fields;
      std::vector<std::string> topics;
      collect_names(tree, false, fields, topics);
      ASSERT_EQ(t.required_fields(), fields) << text;
      ASSERT_EQ(t.topics(), topics) << text;
      for (int row = 0; row < 4; ++row) {
        const Recipient r = g.recipient();
        std::string out;
        t.render(r, out);
        ASSERT_EQ(out, reference(tokens, r, escape)) << "template:\n" << text;
      }
    }
  }
}

}  // namespace
}  // namespace mma::compose
