#include "compose/campaign.hpp"

#include <toml++/toml.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "smtp/address.hpp"

namespace mma::compose {
namespace {

namespace fs = std::filesystem;

struct Reader {
  std::string file;

  [[noreturn]] void fail(const toml::node* n, const std::string& key,
                         const std::string& why) const {
    const int line = n != nullptr ? static_cast<int>(n->source().begin.line) : 1;
    throw CampaignError(file + ":" + std::to_string(line) + ": key '" + key + "': " + why);
  }

  // Unknown keys are errors: a misspelt `htlm` must not silently send text only.
  void only(const toml::table& t, const std::string& section,
            std::initializer_list<std::string_view> known) const {
    for (const auto& [k, v] : t) {
      if (std::find(known.begin(), known.end(), k.str()) == known.end()) {
        fail(&v, section.empty() ? std::string(k.str()) : section + "." + std::string(k.str()),
             "unknown key");
      }
    }
  }

  std::string str(const toml::table& t, const std::string& section, std::string_view key,
                  bool required) const {
    const std::string name = section.empty() ? std::string(key) : section + "." + std::string(key);
    const toml::node* n = t.get(key);
    if (n == nullptr) {
      if (required) fail(nullptr, name, "missing (required)");
      return {};
    }
    const auto* s = n->as_string();
    if (s == nullptr) fail(n, name, "must be a string");
    return s->get();
  }

  bool boolean(const toml::table& t, std::string_view key, bool fallback) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return fallback;
    const auto* b = n->as_boolean();
    if (b == nullptr) fail(n, std::string(key), "must be true or false");
    return b->get();
  }

  const toml::table* table(const toml::table& t, std::string_view key) const {
    const toml::node* n = t.get(key);
    if (n == nullptr) return nullptr;
    if (n->as_table() == nullptr)
      fail(n, std::string(key), "must be a table ([" + std::string(key) + "])");
    return n->as_table();
  }

  int line(const toml::table& t, std::string_view key) const {
    const toml::node* n = t.get(key);
    return n != nullptr ? static_cast<int>(n->source().begin.line) : 1;
  }

  // An address-spec from the file: checked as an RFC 5321 path would be.
  void check_address(const toml::table& t, std::string_view key, const std::string& value) const {
    const smtp::PathParse p = smtp::parse_path("<" + value + ">", false, false);
    if (!p.ok || !p.rest.empty()) {
      fail(t.get(key), std::string(key), "'" + value + "' is not an email address");
    }
  }
};

std::string read_file(const std::string& path, const std::string& why) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CampaignError(why + ": cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool is_remote_source(const std::string& s) {
  return s.rfind("postgresql://", 0) == 0 || s.rfind("postgres://", 0) == 0 ||
         s.find("host=") != std::string::npos || s.find("dbname=") != std::string::npos;
}

}  // namespace

std::vector<std::string> Campaign::required_fields() const {
  std::set<std::string> all;
  auto add = [&](const Template& t) {
    for (auto& f : t.required_fields()) all.insert(f);
  };
  add(subject);
  add(text);
  add(html);
  for (const auto& header : headers) add(header.second);
  add(unsubscribe_url);
  add(unsubscribe_mailto);
  return {all.begin(), all.end()};
}

std::string verp_encode(std::string_view key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(key.size() + 8);
  for (const unsigned char c : key) {
    // '.' too: "a..b" or a trailing dot would not be a dot-atom.
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_') {
      out += static_cast<char>(c);
    } else {
      out += '=';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string Campaign::sender_for(const std::string& key) const {
  if (!verp || envelope_sender.empty()) return envelope_sender;
  const auto at = envelope_sender.rfind('@');
  return envelope_sender.substr(0, at) + "+" + verp_encode(key) + envelope_sender.substr(at);
}

Campaign load_campaign(const std::string& path) {
  Reader r{path};
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    throw CampaignError(path + ":" + std::to_string(e.source().begin.line) + ": " +
                        std::string(e.description()));
  }
  r.only(root, "",
         {"name", "from_name", "from_address", "reply_to", "envelope_sender", "verp", "subject",
          "text", "html", "headers", "unsubscribe", "recipients", "dkim"});
  const fs::path dir = fs::absolute(path).parent_path();
  auto relative = [&](const std::string& p) {
    return fs::path(p).is_absolute() ? p : (dir / p).string();
  };

  Campaign c;
  c.path = path;
  c.name = r.str(root, "", "name", true);
  if (c.name.empty() || c.name.find_first_of(" \t\r\n<>@") != std::string::npos)
    r.fail(root.get("name"), "name", "must be a non-empty word (no spaces, <, > or @)");
  c.from_name = r.str(root, "", "from_name", false);
  if (c.from_name.find_first_of("\r\n") != std::string::npos)
    r.fail(root.get("from_name"), "from_name", "must not contain a line break");
  c.from_address = r.str(root, "", "from_address", true);
  r.check_address(root, "from_address", c.from_address);
  c.reply_to = r.str(root, "", "reply_to", false);
  if (!c.reply_to.empty()) r.check_address(root, "reply_to", c.reply_to);
  c.envelope_sender = r.str(root, "", "envelope_sender", false);
  if (c.envelope_sender.empty()) c.envelope_sender = c.from_address;
  r.check_address(root, root.get("envelope_sender") ? "envelope_sender" : "from_address",
                  c.envelope_sender);
  c.verp = r.boolean(root, "verp", false);
  c.message_id_domain = c.from_address.substr(c.from_address.rfind('@') + 1);

  const std::string subject = r.str(root, "", "subject", true);
  c.subject = Template::compile(
      subject, path + " (subject, line " + std::to_string(r.line(root, "subject")) + ")",
      Escape::None);
  const std::string text_path = relative(r.str(root, "", "text", true));
  c.text = Template::compile(read_file(text_path, path + ": key 'text'"), text_path, Escape::None);
  if (root.get("html") != nullptr) {
    const std::string html_path = relative(r.str(root, "", "html", true));
    c.html =
        Template::compile(read_file(html_path, path + ": key 'html'"), html_path, Escape::Html);
    c.has_html = true;
  }
  if (const toml::table* h = r.table(root, "headers")) {
    for (const auto& [k, v] : *h) {
      const std::string name(k.str());
      const auto* s = v.as_string();
      if (s == nullptr) r.fail(&v, "headers." + name, "must be a string");
      const bool ftext = !name.empty() && std::all_of(name.begin(), name.end(), [](char ch) {
        return ch > 32 && ch < 127 && ch != ':';  // RFC 5322 §3.6.8 ftext
      });
      if (!ftext) r.fail(&v, "headers." + name, "is not a valid header field name");
      c.headers.emplace_back(
          name, Template::compile(s->get(), path + " (headers." + name + ")", Escape::None));
    }
  }
  if (const toml::table* u = r.table(root, "unsubscribe")) {
    r.only(*u, "unsubscribe", {"url", "mailto"});
    const std::string url = r.str(*u, "unsubscribe", "url", false);
    const std::string mailto = r.str(*u, "unsubscribe", "mailto", false);
    if (!url.empty()) {
      if (url.rfind("https://", 0) != 0)
        r.fail(u->get("url"), "unsubscribe.url", "must be an https:// URL (RFC 8058 §3.1)");
      c.unsubscribe_url = Template::compile(url, path + " (unsubscribe.url)", Escape::None);
      c.has_unsubscribe_url = true;
    }
    if (!mailto.empty()) {
      c.unsubscribe_mailto =
          Template::compile(mailto, path + " (unsubscribe.mailto)", Escape::None);
      c.has_unsubscribe_mailto = true;
    }
  }
  const toml::table* rc = r.table(root, "recipients");
  if (rc == nullptr) r.fail(nullptr, "recipients", "missing: [recipients] source = ...");
  r.only(*rc, "recipients", {"source", "query"});
  c.source = r.str(*rc, "recipients", "source", true);
  if (!is_remote_source(c.source)) c.source = relative(c.source);
  c.query = r.str(*rc, "recipients", "query", false);
  if (const toml::table* d = r.table(root, "dkim")) {
    r.only(*d, "dkim", {"domain", "selector", "key"});
    const std::string key = relative(r.str(*d, "dkim", "key", true));
    try {
      c.dkim = std::make_shared<const DkimSigner>(r.str(*d, "dkim", "domain", true),
                                                  r.str(*d, "dkim", "selector", true), key);
    } catch (const std::exception& e) {
      r.fail(d->get("key"), "dkim.key", e.what());
    }
  }
  return c;
}

}  // namespace mma::compose
