// compose/dkim: DKIM signatures for the messages `mma compose` writes (RFC 6376, relaxed/relaxed;
// rsa-sha256, and ed25519-sha256 from RFC 8463). Owns the key, the canonicalization and the
// DKIM-Signature field; knows nothing of SMTP: it takes a message in wire form and returns the
// field to prepend.
//
// One DkimSigner per (domain, selector, key), shared by every composer thread: the key is
// read-only after construction and each sign() has its own OpenSSL contexts.
//
// STANDARDS: RFC 6376 (DKIM), RFC 8463 (Ed25519 for DKIM), RFC 8301 (no RSA under 1024 bits).
#pragma once

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mma::compose {

class DkimSigner;

namespace detail {

// RFC 6376 §3.4.2, one header field as it appears in the message ("Name: value", folded or
// not, with or without its final CRLF) to "name:value\r\n".
[[nodiscard]] std::string relaxed_header(std::string_view field);

// RFC 6376 §3.4.4, the body (everything after the empty line). An empty body, or one of empty
// lines only, is the empty string; otherwise the result ends in exactly one CRLF.
[[nodiscard]] std::string relaxed_body(std::string_view body);

// The bh= value: base64 of the SHA-256 of relaxed_body(body), hashed without building it.
[[nodiscard]] std::string relaxed_body_hash(std::string_view body);

// The b= value for a DKIM-Signature field laid out by the caller, for published test vectors
// whose tags differ from ours (RFC 8463 Appendix A). `unsigned_field` is the whole field up to
// and including "b=" with an empty value; `signed_names` is its h= list, in order.
[[nodiscard]] std::string signature_for(const DkimSigner& signer, std::string_view message,
                                        const std::vector<std::string>& signed_names,
                                        std::string_view unsigned_field);

}  // namespace detail

class DkimSigner {
 public:
  // The key is a PEM private key: RSA (a=rsa-sha256) or Ed25519 (a=ed25519-sha256). Throws
  // std::runtime_error naming `key_path` and the reason. `headers` are the header names to sign
  // when present; empty means the default list (From, To, Subject, Date, Message-ID, ...).
  DkimSigner(std::string domain, std::string selector, const std::string& key_path,
             std::vector<std::string> headers = {});
  static DkimSigner from_pem(std::string domain, std::string selector, std::string_view pem,
                             std::vector<std::string> headers = {});

  // `message`: the whole message in wire form (CRLF, header fields, empty line, body), not
  // dot-stuffed. Returns the DKIM-Signature field to prepend, folded, ending in CRLF. Throws
  // std::invalid_argument if the message has no From (RFC 6376 §5.4: From MUST be signed).
  // Thread-safe.
  [[nodiscard]] std::string sign(std::string_view message, std::time_t now) const;
  [[nodiscard]] const char* algorithm() const;  // "rsa-sha256" or "ed25519-sha256"

  ~DkimSigner();
  DkimSigner(DkimSigner&&) noexcept;
  DkimSigner& operator=(DkimSigner&&) noexcept;

 private:
  struct Impl;
  DkimSigner(std::string domain, std::string selector, std::string_view pem,
             std::string_view key_origin, std::vector<std::string> headers);
  friend std::string detail::signature_for(const DkimSigner&, std::string_view,
                                           const std::vector<std::string>&, std::string_view);

  std::unique_ptr<const Impl> impl_;
};

}  // namespace mma::compose
