// compose/recipients_internal: what the recipient sources share: the default query, the
// mapping of a result's columns onto a Subscriber, and ASCII case folding.
//
// Internal to mma_compose_recipients (recipients.cpp, csv_source.cpp, sqlite_source.cpp,
// postgres_source.cpp); the API is compose/recipients.hpp.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "compose/recipients.hpp"

namespace mma::compose::detail {

inline constexpr std::string_view kDefaultQuery = "SELECT * FROM subscribers";
inline constexpr std::size_t kNone = static_cast<std::size_t>(-1);

inline bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

inline char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

std::string lowered(std::string_view s);

// The `topics` column: separated by commas and/or blanks, lower-cased, empties dropped.
std::vector<std::string> split_topics(std::string_view text);

// A libpq connection URI: "postgresql://..." or "postgres://...".
bool is_postgres_uri(std::string_view s);

// The shape of a result, worked out once per source so that each row costs only its values.
class Columns {
 public:
  Columns(std::vector<std::string> names, const std::string& source) : names_(std::move(names)) {
    std::size_t alt_address = kNone;
    for (std::size_t i = 0; i < names_.size(); ++i) {
      const std::string& n = names_[i];
      if (n == "email" && address_ == kNone) address_ = i;
      if (n == "address" && alt_address == kNone) alt_address = i;
      if (n == "id" && id_ == kNone) id_ = i;
      if (n == "topics" && topics_ == kNone) topics_ = i;
    }
    if (address_ == kNone) address_ = alt_address;
    if (address_ == kNone) {
      std::string found;
      for (const auto& n : names_) found += (found.empty() ? "" : ", ") + n;
      throw SourceError(source + ": no address column (`email` or `address`); columns: " +
                        (found.empty() ? "(none)" : found));
    }
  }

  [[nodiscard]] std::size_t size() const { return names_.size(); }

  Subscriber start(std::size_t row) const {
    Subscriber s;
    s.row = row;
    s.fields.reserve(names_.size());
    return s;
  }

  void add(Subscriber& s, std::size_t column, std::string value) const {
    if (column == address_) s.address = value;
    if (column == id_) s.key = value;
    if (column == topics_) s.topics = split_topics(value);
    s.fields.emplace_back(names_[column], std::move(value));
  }

  static void finish(Subscriber& s) {
    if (s.key.empty()) s.key = s.address;
  }

 private:
  std::vector<std::string> names_;  // lower-case
  std::size_t address_ = kNone;
  std::size_t id_ = kNone;
  std::size_t topics_ = kNone;
};

}  // namespace mma::compose::detail
