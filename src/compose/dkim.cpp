#include "compose/dkim.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace mma::compose {

namespace {

constexpr std::string_view kCrlf = "\r\n";

// RFC 5322 §2.1.1 asks for lines of at most 78 characters; 76 is what MIME uses for base64
// (RFC 2045 §6.8) and keeps the field clear of that limit.
constexpr std::size_t kFoldWidth = 76;

// The default h= list: the fields a receiver shows or acts on. List-Unsubscribe(-Post) are
// signed because RFC 8058 §4 requires them to be for one-click unsubscribe.
constexpr std::array<std::string_view, 12> kDefaultSignedHeaders = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Reply-To",
    "Cc",
};

constexpr bool is_wsp(char c) {
  return c == ' ' || c == '\t';
}

constexpr char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string lowered(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdFree {
  void operator()(EVP_MD* p) const { EVP_MD_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using MdPtr = std::unique_ptr<EVP_MD, MdFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

// The oldest error on this thread's OpenSSL queue, and an empty queue afterwards: a composer
// thread must not carry one message's failure into the next.
std::string take_openssl_error() {
  const unsigned long code = ERR_peek_error();
  std::string text;
  if (code != 0) {
    std::array<char, 256> buf{};
    ERR_error_string_n(code, buf.data(), buf.size());
    text = buf.data();
  } else {
    text = "unknown OpenSSL error";
  }
  ERR_clear_error();
  return text;
}

[[noreturn]] void crypto_failure(const char* what) {
  throw std::runtime_error(std::string("DKIM: ") + what + ": " + take_openssl_error());
}

std::string base64(const unsigned char* data, std::size_t size) {
  std::string out(4 * ((size + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(size));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

using Digest = std::array<unsigned char, 32>;

// SHA-256 fed piece by piece, so that the canonical forms are hashed as they are produced.
class Sha256 {
 public:
  explicit Sha256(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_ || EVP_DigestInit_ex2(ctx_.get(), md, nullptr) != 1) crypto_failure("SHA-256");
  }
  void update(std::string_view data) {
    if (!data.empty() && EVP_DigestUpdate(ctx_.get(), data.data(), data.size()) != 1) {
      crypto_failure("SHA-256");
    }
  }
  Digest finish() {
    Digest d{};
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx_.get(), d.data(), &n) != 1 || n != d.size()) {
      crypto_failure("SHA-256");
    }
    return d;
  }

 private:
  MdCtxPtr ctx_;
};

// RFC 6376 §3.4.2: the name lower-cased and stripped of the WSP before the colon; the value
// unfolded (a CRLF followed by WSP is dropped), its WSP runs made one SP, WSP at either end
// removed. Appends "name:value\r\n" to `out`.
void append_relaxed_header(std::string_view field, std::string& out) {
  if (field.ends_with(kCrlf)) field.remove_suffix(2);
  const std::size_t colon = field.find(':');
  std::string_view name = field.substr(0, colon);
  while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
  for (char c : name) out.push_back(ascii_lower(c));
  out.push_back(':');
  if (colon != std::string_view::npos) {
    const std::string_view value = field.substr(colon + 1);
    bool pending_space = false;
    bool started = false;
    for (std::size_t i = 0; i < value.size(); ++i) {
      const char c = value[i];
      if (is_wsp(c)) {
        pending_space = true;
      } else if (c == '\r' && i + 2 < value.size() && value[i + 1] == '\n' &&
                 is_wsp(value[i + 2])) {
        ++i;  // the fold; the WSP after it is the one that counts
      } else {
        if (pending_space && started) out.push_back(' ');
        pending_space = false;
        started = true;
        out.push_back(c);
      }
    }
  }
  out.append(kCrlf);
}

// RFC 6376 §3.4.4, given to `emit` as slices of the input wherever it is already canonical,
// so that a body of plain text goes to the hash in a few large pieces and is never copied.
template <class Emit>
void emit_relaxed_body(std::string_view body, Emit&& emit) {
  // Everything after the last non-WSP character is trailing WSP and empty lines, all of which
  // go (§3.4.4 "Ignore all empty lines at the end of the message body"). A CR or LF that is
  // not part of a CRLF is content, as it is in a line.
  std::size_t end = body.size();
  while (end > 0) {
    if (is_wsp(body[end - 1])) {
      --end;
    } else if (end >= 2 && body[end - 1] == '\n' && body[end - 2] == '\r') {
      end -= 2;
    } else {
      break;
    }
  }
  if (end == 0) return;  // §3.4.4: only a non-empty body gets a CRLF added

  std::size_t start = 0;  // of the slice not yet emitted
  std::size_t i = 0;
  while (i < end) {
    const char c = body[i];
    if (!is_wsp(c)) {
      ++i;
      continue;
    }
    // The byte before `end` is not WSP, so a run always ends before `end`.
    std::size_t run_end = i + 1;
    // The SP between two words, most of the WSP in a body, is canonical already.
    if (c == ' ' && body[run_end] != '\r' && !is_wsp(body[run_end])) {
      i = run_end + 1;
      continue;
    }
    while (is_wsp(body[run_end])) ++run_end;
    const bool at_line_end =
        body[run_end] == '\r' && run_end + 1 < body.size() && body[run_end + 1] == '\n';
    if (at_line_end) {
      emit(body.substr(start, i - start));
      start = run_end;
    } else if (run_end - i > 1 || body[i] != ' ') {
      emit(body.substr(start, i - start));
      emit(std::string_view(" "));
      start = run_end;
    }
    i = run_end;
  }
  emit(body.substr(start, end - start));
  emit(kCrlf);
}

std::string body_hash(const EVP_MD* sha256, std::string_view body) {
  Sha256 hash(sha256);
  emit_relaxed_body(body, [&hash](std::string_view s) { hash.update(s); });
  const Digest d = hash.finish();
  return base64(d.data(), d.size());
}

struct HeaderField {
  std::string_view name;  // as written, without the WSP before the colon
  std::string_view text;  // the whole field, folds and final CRLF included
};

struct SplitMessage {
  std::vector<HeaderField> fields;
  std::string_view body;
};

// RFC 5322 §2.1: the header section ends at the first empty line. A line that starts with WSP
// continues the field above it (§2.2.3).
SplitMessage split_message(std::string_view message) {
  SplitMessage out;
  std::string_view header;
  if (message.starts_with(kCrlf)) {
    out.body = message.substr(2);
  } else if (const std::size_t blank = message.find("\r\n\r\n"); blank != std::string_view::npos) {
    header = message.substr(0, blank + 2);
    out.body = message.substr(blank + 4);
  } else {
    header = message;
  }
  std::size_t pos = 0;
  while (pos < header.size()) {
    std::size_t field_end = pos;
    do {
      const std::size_t eol = header.find(kCrlf, field_end);
      field_end = eol == std::string_view::npos ? header.size() : eol + 2;
    } while (field_end < header.size() && is_wsp(header[field_end]));
    const std::string_view text = header.substr(pos, field_end - pos);
    std::string_view name = text.substr(0, std::min(text.find(':'), text.size()));
    if (name.size() == text.size()) name = {};  // no colon: not a field anyone can sign
    while (!name.empty() && is_wsp(name.back())) name.remove_suffix(1);
    out.fields.push_back({name, text});
    pos = field_end;
  }
  return out;
}

// A folded field under construction. Continuation lines start with one SP, which relaxed
// canonicalization turns back into the SP it stands for (RFC 6376 §3.4.2).
class FieldFolder {
 public:
  explicit FieldFolder(std::string_view name) : out_(name), line_(name.size()) {}

  // `word` after a SP, or on a new line when it would overflow this one.
  void word(std::string_view w) {
    if (line_ + 1 + w.size() > kFoldWidth && line_ > 1) {
      fold();
    } else {
      out_.push_back(' ');
      ++line_;
    }
    append(w);
  }
  // `piece` right after the text before it, or on a new line: for h= entries, where FWS may
  // surround the colons (RFC 6376 §3.5 sig-h-tag).
  void piece(std::string_view p) {
    if (line_ + p.size() > kFoldWidth && line_ > 1) fold();
    append(p);
  }
  // base64, which may be broken anywhere (RFC 6376 §2.4 base64string allows FWS).
  void base64(std::string_view b) {
    while (!b.empty()) {
      if (line_ >= kFoldWidth) fold();
      const std::size_t n = std::min(b.size(), kFoldWidth - line_);
      append(b.substr(0, n));
      b.remove_prefix(n);
    }
  }
  void new_line() { fold(); }
  [[nodiscard]] const std::string& text() const { return out_; }
  std::string finish() && {
    out_.append(kCrlf);
    return std::move(out_);
  }

 private:
  void fold() {
    out_.append("\r\n ");
    line_ = 1;
  }
  void append(std::string_view s) {
    out_.append(s);
    line_ += s.size();
  }

  std::string out_;
  std::size_t line_;
};

// A domain or selector goes into the field unquoted: only what a DNS label holds (RFC 6376
// §3.5 d= and s=, with "_" that selectors use in practice).
void check_dns_name(std::string_view what, std::string_view name) {
  bool ok = !name.empty();
  for (char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    ok = ok && (alnum || c == '-' || c == '.' || c == '_');
  }
  if (!ok)
    throw std::invalid_argument("DKIM: invalid " + std::string(what) + " '" + std::string(name) +
                                "'");
}

// RFC 5322 §3.6.8 field-name: printable US-ASCII except the colon.
void check_field_name(std::string_view name) {
  bool ok = !name.empty();
  for (char c : name) ok = ok && c > ' ' && c < 127 && c != ':';
  if (!ok) throw std::invalid_argument("DKIM: invalid header name '" + std::string(name) + "'");
}

// A key that needs a passphrase must fail, not prompt on the terminal of a daemon.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

}  // namespace

enum class KeyKind { kRsa, kEd25519 };

struct DkimSigner::Impl {
  std::string domain;
  std::string selector;
  std::vector<std::string> headers;  // to sign when present, From first, no duplicates
  PkeyPtr key;
  KeyKind kind{};
  MdPtr sha256;  // fetched once: a fetch per message would cost a provider lookup each time

  // The digest of the signed fields in h= order and of the DKIM-Signature field itself
  // (RFC 6376 §3.7): each name takes the lowest unused instance (§5.4.2); a name with none
  // left contributes nothing, which is what makes over-signing work.
  Digest header_digest(const std::vector<HeaderField>& fields,
                       const std::vector<std::string>& signed_names,
                       std::string_view unsigned_field) const {
    Sha256 hash(sha256.get());
    std::vector<bool> used(fields.size(), false);
    std::string canonical;
    for (const std::string& name : signed_names) {
      for (std::size_t i = fields.size(); i-- > 0;) {
        if (!used[i] && iequals(fields[i].name, name)) {
          used[i] = true;
          canonical.clear();
          append_relaxed_header(fields[i].text, canonical);
          hash.update(canonical);
          break;
        }
      }
    }
    canonical.clear();
    append_relaxed_header(unsigned_field, canonical);
    canonical.resize(canonical.size() - 2);  // §3.7: this field goes in without its CRLF
    hash.update(canonical);
    return hash.finish();
  }

  // RFC 8463 §3: Ed25519 (PureEdDSA) signs the SHA-256 of the data, not the data. RSA is
  // PKCS#1 v1.5 over the same digest (RFC 8017 §8.2), as EVP_DigestSign would compute it.
  std::string sign_digest(const Digest& digest) const {
    std::array<unsigned char, 1024> sig{};  // RSA up to 8192 bits; Ed25519 needs 64
    std::size_t sig_len = sig.size();
    if (static_cast<std::size_t>(EVP_PKEY_get_size(key.get())) > sig.size()) {
      throw std::runtime_error("DKIM: key too large to sign with");
    }
    if (kind == KeyKind::kEd25519) {
      MdCtxPtr ctx(EVP_MD_CTX_new());
      if (!ctx ||
          EVP_DigestSignInit_ex(ctx.get(), nullptr, nullptr, nullptr, nullptr, key.get(),
                                nullptr) != 1 ||
          EVP_DigestSign(ctx.get(), sig.data(), &sig_len, digest.data(), digest.size()) != 1) {
        crypto_failure("Ed25519 signature");
      }
    } else {
      PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
      if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
          EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
          EVP_PKEY_CTX_set_signature_md(ctx.get(), sha256.get()) != 1 ||
          EVP_PKEY_sign(ctx.get(), sig.data(), &sig_len, digest.data(), digest.size()) != 1) {
        crypto_failure("RSA signature");
      }
    }
    return base64(sig.data(), sig_len);
  }
};

namespace detail {

std::string relaxed_header(std::string_view field) {
  std::string out;
  append_relaxed_header(field, out);
  return out;
}

std::string relaxed_body(std::string_view body) {
  std::string out;
  emit_relaxed_body(body, [&out](std::string_view s) { out.append(s); });
  return out;
}

std::string relaxed_body_hash(std::string_view body) {
  MdPtr md(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!md) crypto_failure("SHA-256");
  return body_hash(md.get(), body);
}

std::string signature_for(const DkimSigner& signer, std::string_view message,
                          const std::vector<std::string>& signed_names,
                          std::string_view unsigned_field) {
  const SplitMessage split = split_message(message);
  return signer.impl_->sign_digest(
      signer.impl_->header_digest(split.fields, signed_names, unsigned_field));
}

}  // namespace detail

DkimSigner::DkimSigner(std::string domain, std::string selector, std::string_view pem,
                       std::string_view key_origin, std::vector<std::string> headers) {
  check_dns_name("domain", domain);
  check_dns_name("selector", selector);
  auto impl = std::make_unique<Impl>();
  impl->domain = std::move(domain);
  impl->selector = std::move(selector);

  // From first and always: RFC 6376 §5.4 makes it the one field that MUST be signed.
  impl->headers.emplace_back("from");
  auto add = [&impl](std::string_view name) {
    check_field_name(name);
    for (const std::string& h : impl->headers) {
      if (iequals(h, name)) return;
    }
    impl->headers.push_back(lowered(name));
  };
  if (headers.empty()) {
    for (std::string_view h : kDefaultSignedHeaders) add(h);
  } else {
    for (const std::string& h : headers) add(h);
  }

  const auto fail = [key_origin](const std::string& why) {
    ERR_clear_error();
    return std::runtime_error("DKIM key " + std::string(key_origin) + ": " + why);
  };
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw fail("out of memory");
  impl->key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!impl->key) {
    if (pem.find("ENCRYPTED") != std::string_view::npos) {
      throw fail("encrypted private keys are not supported");
    }
    throw fail("not a PEM private key (" + take_openssl_error() + ")");
  }
  if (EVP_PKEY_is_a(impl->key.get(), "ED25519")) {
    impl->kind = KeyKind::kEd25519;
  } else if (EVP_PKEY_is_a(impl->key.get(), "RSA")) {
    impl->kind = KeyKind::kRsa;
    // RFC 8301 §3.2: verifiers MUST NOT accept RSA keys under 1024 bits.
    const int bits = EVP_PKEY_get_bits(impl->key.get());
    if (bits < 1024) {
      throw fail("RSA key of " + std::to_string(bits) + " bits, under the 1024 RFC 8301 requires");
    }
  } else {
    const char* type = EVP_PKEY_get0_type_name(impl->key.get());
    throw fail(std::string("unsupported key type ") + (type != nullptr ? type : "?") +
               " (DKIM signs with RSA or Ed25519)");
  }
  impl->sha256.reset(EVP_MD_fetch(nullptr, "SHA256", nullptr));
  if (!impl->sha256) crypto_failure("SHA-256");
  impl_ = std::move(impl);
}

DkimSigner::DkimSigner(std::string domain, std::string selector, const std::string& key_path,
                       std::vector<std::string> headers)
    : DkimSigner([&] {
        // Read here rather than through BIO_new_file so that the reason is errno's words.
        std::FILE* f = std::fopen(key_path.c_str(), "rb");
        if (f == nullptr) {
          throw std::runtime_error("DKIM key " + key_path + ": " + std::strerror(errno));
        }
        std::string pem;
        std::array<char, 4096> buf{};
        std::size_t n = 0;
        while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) pem.append(buf.data(), n);
        const bool failed = std::ferror(f) != 0;
        const int err = errno;
        std::fclose(f);
        if (failed) throw std::runtime_error("DKIM key " + key_path + ": " + std::strerror(err));
        return DkimSigner(std::move(domain), std::move(selector), pem, key_path,
                          std::move(headers));
      }()) {}

DkimSigner DkimSigner::from_pem(std::string domain, std::string selector, std::string_view pem,
                                std::vector<std::string> headers) {
  return DkimSigner(std::move(domain), std::move(selector), pem, "(PEM text)", std::move(headers));
}

DkimSigner::~DkimSigner() = default;
DkimSigner::DkimSigner(DkimSigner&&) noexcept = default;
DkimSigner& DkimSigner::operator=(DkimSigner&&) noexcept = default;

const char* DkimSigner::algorithm() const {
  return impl_->kind == KeyKind::kEd25519 ? "ed25519-sha256" : "rsa-sha256";
}

std::string DkimSigner::sign(std::string_view message, std::time_t now) const {
  const SplitMessage split = split_message(message);

  // Every instance of each configured field, so that none can be changed; one more From than
  // there is, so that a From added in transit breaks the signature (RFC 6376 §8.15).
  std::vector<std::string> signed_names;
  for (const std::string& name : impl_->headers) {
    std::size_t count = 0;
    for (const HeaderField& f : split.fields) count += iequals(f.name, name) ? 1 : 0;
    if (name == "from") {
      if (count == 0) throw std::invalid_argument("DKIM: the message has no From field");
      ++count;
    }
    signed_names.insert(signed_names.end(), count, name);
  }

  FieldFolder field("DKIM-Signature:");
  field.word("v=1;");
  field.word(std::string("a=") + algorithm() + ";");
  field.word("c=relaxed/relaxed;");
  field.word("d=" + impl_->domain + ";");
  field.word("s=" + impl_->selector + ";");
  field.word("t=" + std::to_string(static_cast<long long>(now)) + ";");
  for (std::size_t i = 0; i < signed_names.size(); ++i) {
    std::string entry = (i == 0 ? "h=" : "") + signed_names[i];
    entry.push_back(i + 1 == signed_names.size() ? ';' : ':');
    if (i == 0) {
      field.word(entry);
    } else {
      field.piece(entry);
    }
  }
  field.word("bh=" + body_hash(impl_->sha256.get(), split.body) + ";");
  // b= starts its own line, so that the value removed for signing (§3.7) is all of it.
  field.new_line();
  field.piece("b=");
  field.base64(impl_->sign_digest(impl_->header_digest(split.fields, signed_names, field.text())));
  return std::move(field).finish();
}

}  // namespace mma::compose
