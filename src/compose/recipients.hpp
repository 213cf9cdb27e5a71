// compose/recipients: where a campaign's subscribers come from, and whether a row may be sent.
//
// Owns the recipient sources of `mma compose`: SQLite (the embedded default), CSV files and
// PostgreSQL (libpq). Every source streams one row at a time, so a list of millions costs
// the memory of one row. Talks to nothing else in mma but smtp/address, which judges the
// addresses.
//
// STANDARDS: RFC 4180 (CSV), RFC 5321 §4.1.2 (a Mailbox), RFC 3629 (the UTF-8 BOM).
//
// SECURITY: field values end up in message headers, so validate() refuses a row with CR, LF
// or NUL anywhere in it rather than trusting a template to escape them.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mma::compose {

struct Subscriber {
  // 1-based data row. CSV: the record number after the header, not the line (a quoted field
  // may span lines; blank lines are not records). SQL: the ordinal in the result.
  std::size_t row = 0;
  // Stable identity for resuming: the `id` column when the row has a non-empty one, else the
  // address.
  std::string key;
  std::string address;  // from the column `email` (or else `address`); column names ignore case
  // Every present column (lower-case names, including id/email), in column order. SQL NULL
  // and the missing tail of a short CSV record are absent; an empty CSV field is "".
  std::vector<std::pair<std::string, std::string>> fields;
  // From the `topics` column: separated by commas and/or blanks, lower-cased, empties dropped.
  std::vector<std::string> topics;

  [[nodiscard]] std::optional<std::string_view> field(std::string_view lower_name) const;
  [[nodiscard]] bool subscribed(std::string_view lower_topic) const;
};

// The source itself fails (cannot open, bad SQL, broken CSV quoting, lost connection): what()
// names the source (file path or "postgresql <conninfo without password>") and, for CSV, the
// line.
struct SourceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class RecipientSource {
 public:
  virtual ~RecipientSource() = default;
  [[nodiscard]] virtual std::optional<Subscriber> next() = 0;  // nullopt at the end
  [[nodiscard]] virtual std::string describe() const = 0;      // e.g. "subscribers.db"
};

// Every opener reads the column names at once and throws SourceError when none is `email` or
// `address` (the message lists the columns found).

// query default: "SELECT * FROM subscribers". Opened read-only.
std::unique_ptr<RecipientSource> open_sqlite(const std::string& path,
                                             const std::string& query = {});

// RFC 4180: a header row naming the columns; fields quoted with "..." may hold commas, CR/LF
// and "" for a quote; LF or CRLF records; a UTF-8 BOM is skipped. Also accepted: a last record
// without a line end, blank lines (skipped), a quote inside an unquoted field (kept as is).
// A short record: its missing fields are absent. A long record is a SourceError, unless its
// extra fields are all empty (trailing commas): an unquoted comma shifts every later column,
// and mailing shifted fields (a surname where the first name belongs) is worse than
// stopping; the run resumes by key once the file is fixed. A quoted field that never closes
// is a SourceError naming the line where it opened.
std::unique_ptr<RecipientSource> open_csv(const std::string& path);

// libpq; rows streamed in single-row mode, never all in memory. Values arrive as text (bytea
// is unescaped to its bytes), in UTF-8 whatever the database encoding.
std::unique_ptr<RecipientSource> open_postgres(const std::string& conninfo,
                                               const std::string& query = {});

// Opens by form: "postgresql://..." or "postgres://..." or a string with "host=" / "dbname=":
// PostgreSQL; "*.csv": CSV (a query is then a SourceError); else SQLite.
std::unique_ptr<RecipientSource> open_source(const std::string& spec,
                                             const std::string& query = {});

// Why a row must not be sent, or nullopt when it is good: no address, an address that is not
// an RFC 5321 Mailbox (or is padded with blanks), a CR, LF or NUL in any field (header
// injection), a required field missing or empty (blanks only count as empty). The reason
// names the field.
std::optional<std::string> validate(const Subscriber& s,
                                    const std::vector<std::string>& required_fields);

}  // namespace mma::compose
