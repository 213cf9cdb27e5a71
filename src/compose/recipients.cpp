// compose/recipients: the Subscriber, which source a spec names, and whether a row may be sent.
#include "compose/recipients.hpp"

#include <algorithm>

#include "compose/recipients_internal.hpp"
#include "smtp/address.hpp"

namespace mma::compose::detail {

std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

std::vector<std::string> split_topics(std::string_view text) {
  std::vector<std::string> topics;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ',' || is_blank(text[i]))) ++i;
    const std::size_t start = i;
    while (i < text.size() && text[i] != ',' && !is_blank(text[i])) ++i;
    if (i > start) topics.push_back(lowered(text.substr(start, i - start)));
  }
  return topics;
}

namespace {

bool ends_with_nocase(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  return lowered(s.substr(s.size() - suffix.size())) == suffix;
}

std::optional<std::string> check_address(const Subscriber& s) {
  const char* column = s.field("email") ? "email" : s.field("address") ? "address" : nullptr;
  const std::string name = column != nullptr ? column : "email";
  if (s.address.empty()) {
    if (column == nullptr) return "no address: the row has neither an 'email' nor an 'address'";
    return "field '" + name + "' is empty";
  }
  if (is_blank(s.address.front()) || is_blank(s.address.back())) {
    return "field '" + name + "' has blanks around the address";
  }
  // parse_path() accepts a source route, as SMTP must; a list has no excuse for one.
  if (s.address.front() == '@') return "field '" + name + "' is not a valid mailbox: source route";
  const std::string path = "<" + s.address + ">";
  const smtp::PathParse parsed = smtp::parse_path(path, false, false);
  if (!parsed.ok || !parsed.rest.empty()) {
    return "field '" + name +
           "' is not a valid mailbox: " + (parsed.ok ? "junk after the address" : parsed.error);
  }
  return std::nullopt;
}

}  // namespace
}  // namespace mma::compose::detail

namespace mma::compose {

std::optional<std::string_view> Subscriber::field(std::string_view lower_name) const {
  for (const auto& [name, value] : fields) {
    if (name == lower_name) return value;
  }
  return std::nullopt;
}

bool Subscriber::subscribed(std::string_view lower_topic) const {
  return std::find(topics.begin(), topics.end(), lower_topic) != topics.end();
}

std::unique_ptr<RecipientSource> open_source(const std::string& spec, const std::string& query) {
  if (detail::is_postgres_uri(spec) || spec.find("host=") != std::string::npos ||
      spec.find("dbname=") != std::string::npos) {
    return open_postgres(spec, query);
  }
  if (detail::ends_with_nocase(spec, ".csv")) {
    if (!query.empty()) throw SourceError(spec + ": a query applies only to SQL sources");
    return open_csv(spec);
  }
  return open_sqlite(spec, query);
}

std::optional<std::string> validate(const Subscriber& s,
                                    const std::vector<std::string>& required_fields) {
  // Injection first: whatever else is wrong, a line break must be what the log reports.
  for (const auto& [name, value] : s.fields) {
    for (const char c : value) {
      if (c == '\r') return "field '" + name + "' contains a CR";
      if (c == '\n') return "field '" + name + "' contains a LF";
      if (c == '\0') return "field '" + name + "' contains a NUL byte";
    }
  }
  if (auto why = detail::check_address(s)) return why;
  for (const auto& required : required_fields) {
    const std::string name = detail::lowered(required);
    const auto value = s.field(name);
    if (!value) return "required field '" + name + "' is missing";
    if (std::all_of(value->begin(), value->end(), detail::is_blank)) {
      return "required field '" + name + "' is empty";
    }
  }
  return std::nullopt;
}

}  // namespace mma::compose
