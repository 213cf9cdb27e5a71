// compose/campaign: a campaign file (TOML): who sends, the templates, the recipients' source,
// the unsubscribe links and the DKIM key. Loaded and compiled once; every error names the
// file, the line and the key (or, in a template, the template's file, line and column).
//
//   name = "autumn-news"                 # identifies the mailing: Message-IDs, resume state
//   from_name = "Example News"           # UTF-8; encoded as RFC 2047 when needed
//   from_address = "news@example.com"
//   reply_to = "help@example.com"        # optional
//   envelope_sender = "bounces@example.com"
//   verp = true                          # envelope sender bounces+<key>@example.com, per recipient
//   subject = "{{first_name|Hello}}, your autumn news"   # a template too
//   text = "news.txt"                    # paths relative to the campaign file
//   html = "news.html"                   # optional: without it, text/plain only
//   [headers]                            # extra header fields (values are templates)
//   X-Campaign = "autumn"
//   [unsubscribe]                        # RFC 2369 List-Unsubscribe, RFC 8058 one-click
//   url = "https://example.com/u/{{id}}"
//   mailto = "unsubscribe+{{id}}@example.com"
//   [recipients]
//   source = "subscribers.db"            # SQLite (default), *.csv, or postgresql://...
//   query = "SELECT * FROM subscribers"  # SQL sources only
//   [dkim]
//   domain = "example.com"
//   selector = "news"
//   key = "dkim.pem"                     # RSA (rsa-sha256) or Ed25519 (ed25519-sha256)
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "compose/dkim.hpp"
#include "compose/template.hpp"

namespace mma::compose {

class CampaignError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Campaign {
  std::string path;  // the campaign file
  std::string name;
  std::string from_name, from_address, reply_to;
  std::string envelope_sender;
  bool verp = false;
  Template subject, text, html;
  bool has_html = false;
  std::vector<std::pair<std::string, Template>> headers;
  Template unsubscribe_url, unsubscribe_mailto;
  bool has_unsubscribe_url = false, has_unsubscribe_mailto = false;
  std::string source;  // resolved against the campaign file's folder unless a URI/conninfo
  std::string query;
  std::shared_ptr<const DkimSigner> dkim;  // null: unsigned
  std::string message_id_domain;           // the from address's domain

  // Fields every recipient must have (used by a template without a default).
  [[nodiscard]] std::vector<std::string> required_fields() const;
  // The envelope sender for a recipient with `key` (VERP: local+key@domain, RFC 5321 §4.1.2
  // safe characters only; others are replaced by '=' and hex, as in Postfix's VERP).
  [[nodiscard]] std::string sender_for(const std::string& key) const;
};

// A key made safe for a local part or a Message-ID's left side (dot-atom-text, RFC 5322
// §3.2.3): letters, digits, '-' and '_' kept, every other byte '=' and two hex digits.
std::string verp_encode(std::string_view key);

// Throws CampaignError ("FILE:LINE: key 'K': ...") or TemplateError.
Campaign load_campaign(const std::string& path);

}  // namespace mma::compose
