#include "compose/composer.hpp"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "compose/mime.hpp"

namespace mma::compose {
namespace {

// What the templates see of one subscriber.
class SubscriberFields : public FieldSource {
 public:
  explicit SubscriberFields(const Subscriber& s) : s_(s) {}
  [[nodiscard]] std::optional<std::string_view> field(std::string_view name) const override {
    return s_.field(name);
  }
  // A section shows for a subscribed topic, or for a field the recipient has ({{#city}}).
  [[nodiscard]] bool subscribed(std::string_view topic) const override {
    if (s_.subscribed(topic)) return true;
    const auto f = s_.field(topic);
    return f && !f->empty();
  }

 private:
  const Subscriber& s_;
};

std::string render(const Template& t, const FieldSource& f) {
  std::string out;
  t.render(f, out);
  return out;
}

}  // namespace

std::string message_id_for(const Campaign& c, const std::string& key) {
  return c.name + "." + verp_encode(key) + "@" + c.message_id_domain;
}

void append_dot_stuffed(std::string_view m, std::string& out) {
  out.reserve(out.size() + m.size() + 16);
  std::size_t line = 0;
  while (line < m.size()) {
    if (m[line] == '.') out += '.';
    const std::size_t end = m.find('\n', line);
    const std::size_t next = end == std::string_view::npos ? m.size() : end + 1;
    out.append(m.data() + line, next - line);
    line = next;
  }
}

CampaignComposer::CampaignComposer(const Campaign& campaign,
                                   std::unique_ptr<RecipientSource> source,
                                   std::unique_ptr<SendLog> log, std::size_t expected,
                                   unsigned threads)
    : campaign_(campaign),
      source_(std::move(source)),
      log_(std::move(log)),
      expected_(expected),
      required_(campaign.required_fields()),
      now_(std::time(nullptr)) {
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { compose_ahead(); });
}

CampaignComposer::~CampaignComposer() {
  finish();
}

void CampaignComposer::finish() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  room_cv_.notify_all();
  for (auto& t : threads_) t.join();
  threads_.clear();
}

std::optional<Subscriber> CampaignComposer::next_row() {
  for (;;) {
    std::optional<Subscriber> s = source_->next();
    if (!s) return std::nullopt;
    ++counts_.rows;
    if (auto why = validate(*s, required_)) {
      ++counts_.bad;
      ++counts_.bad_reasons[*why];
      std::fprintf(stderr, "compose: %s: row %zu (%s): %s: not sent\n", source_->describe().c_str(),
                   s->row, s->key.c_str(), why->c_str());
      continue;
    }
    if (log_ && log_->sent(s->key)) {
      ++counts_.already_sent;
      continue;
    }
    ++counts_.composed;
    return s;
  }
}

void CampaignComposer::compose_ahead() {
  // Enough ahead to cover a burst of replies; bounded, so a slow server holds the threads.
  const std::size_t limit = 64 * std::max<std::size_t>(1, threads_.size());
  std::unique_lock lock(mu_);
  for (;;) {
    room_cv_.wait(lock, [&] { return stopping_ || ready_.size() + composing_ < limit; });
    if (stopping_ || source_done_) return;
    std::optional<Subscriber> s;
    try {
      s = next_row();
    } catch (...) {
      error_ = std::current_exception();
    }
    if (!s) {
      source_done_ = true;
      ready_cv_.notify_all();
      return;
    }
    ++composing_;
    lock.unlock();
    std::optional<ComposedMessage> m;
    std::exception_ptr failed;
    try {
      m = compose(*s);
    } catch (...) {
      failed = std::current_exception();
    }
    lock.lock();
    --composing_;
    if (failed) {
      error_ = failed;
      source_done_ = true;
    } else {
      ready_.push_back(std::move(*m));
    }
    ready_cv_.notify_all();
  }
}

std::optional<ComposedMessage> CampaignComposer::next() {
  if (threads_.empty()) {
    std::optional<Subscriber> s;
    {
      std::lock_guard lock(mu_);
      if (error_) return std::nullopt;
      try {
        s = next_row();
      } catch (...) {
        error_ = std::current_exception();
      }
    }
    if (!s) return std::nullopt;
    return compose(*s);
  }
  std::unique_lock lock(mu_);
  ready_cv_.wait(lock, [&] { return !ready_.empty() || (source_done_ && composing_ == 0); });
  if (ready_.empty()) return std::nullopt;
  ComposedMessage m = std::move(ready_.front());
  ready_.pop_front();
  lock.unlock();
  room_cv_.notify_one();
  return m;
}

std::string CampaignComposer::failure() {
  std::lock_guard lock(mu_);
  if (!error_) return {};
  try {
    std::rethrow_exception(error_);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

void CampaignComposer::accepted(const ComposedMessage& m) {
  if (!log_ || m.key.empty()) return;
  std::lock_guard lock(mu_);  // the composing threads read the log (sent())
  log_->record(m.key);
}

ComposedMessage CampaignComposer::compose(const Subscriber& s) const {
  const SubscriberFields f(s);
  MimeMessage m;
  m.from_name = campaign_.from_name;
  m.from_address = campaign_.from_address;
  if (auto name = s.field("name")) {
    m.to_name = std::string(*name);
  } else {
    auto first = s.field("first_name"), last = s.field("last_name");
    if (first) m.to_name = std::string(*first);
    if (last) m.to_name += (m.to_name.empty() ? "" : " ") + std::string(*last);
  }
  m.to_address = s.address;
  m.subject = render(campaign_.subject, f);
  m.message_id = message_id_for(campaign_, s.key);
  m.date = now_;
  if (!campaign_.reply_to.empty()) m.headers.emplace_back("Reply-To", campaign_.reply_to);
  for (const auto& [name, t] : campaign_.headers) m.headers.emplace_back(name, render(t, f));
  // RFC 2369 §3.2 and RFC 8058 §3.1: the one-click POST needs an https URI in the header.
  std::string unsubscribe;
  if (campaign_.has_unsubscribe_url) unsubscribe = "<" + render(campaign_.unsubscribe_url, f) + ">";
  if (campaign_.has_unsubscribe_mailto) {
    if (!unsubscribe.empty()) unsubscribe += ", ";
    unsubscribe += "<mailto:" + render(campaign_.unsubscribe_mailto, f) + ">";
  }
  if (!unsubscribe.empty()) m.headers.emplace_back("List-Unsubscribe", unsubscribe);
  if (campaign_.has_unsubscribe_url)
    m.headers.emplace_back("List-Unsubscribe-Post", "List-Unsubscribe=One-Click");
  campaign_.text.render(f, m.text);
  if (campaign_.has_html) campaign_.html.render(f, m.html);

  std::string message;
  message.reserve(m.text.size() + m.html.size() * 2 + 2048);
  build_mime(m, message);
  ComposedMessage out;
  if (campaign_.dkim) {
    std::string signature = campaign_.dkim->sign(message, now_);
    out.wire.reserve(signature.size() + message.size() + 64);
    out.wire = std::move(signature);
  }
  append_dot_stuffed(message, out.wire);
  out.sender = campaign_.sender_for(s.key);
  out.recipients.push_back(s.address);
  out.key = s.key;
  out.message_id = std::move(m.message_id);
  return out;
}

}  // namespace mma::compose
