#include "compose/synthetic_campaign.hpp"

#include <chrono>
#include <ctime>
#include <random>

namespace mma::compose {
namespace {

constexpr const char* kParagraphs[] = {
    "This week in the newsletter: the travel pages you asked for, with fares from your nearest "
    "airport.",
    "Markets closed higher on Friday; your watch list moved by the amounts shown in your "
    "dashboard.",
    "Our readers' favourite recipes this month are below, sorted by the time they take to prepare.",
    "You are receiving this because you subscribed to our mailing list. Manage your topics any "
    "time.",
};

}  // namespace

SyntheticCampaign::SyntheticCampaign(SyntheticOptions opts) : opts_(std::move(opts)) {
  run_id_ = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count());
}

std::string SyntheticCampaign::recipient(std::size_t n) const {
  // A fixed share goes to the big domain, spread evenly (not randomly) so runs are comparable.
  if (!opts_.big_domain.empty() && opts_.big_share > 0) {
    const auto per_mille = static_cast<std::size_t>(opts_.big_share * 1000);
    if (n % 1000 < per_mille) return "user" + std::to_string(n) + "@" + opts_.big_domain;
  }
  return "user" + std::to_string(n) + "@d" + std::to_string(n % opts_.domains) + "." +
         opts_.domain_suffix;
}

ComposedMessage SyntheticCampaign::compose(std::size_t index) const {
  ComposedMessage m;
  m.sender = opts_.sender;
  for (std::size_t k = 0; k < opts_.rcpts_per_message; ++k) {
    m.recipients.push_back(recipient(index * opts_.rcpts_per_message + k));
  }
  char date[64];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  const std::string name = "Subscriber " + std::to_string(index);
  std::string& w = m.wire;
  w.reserve(opts_.body_size + 512);
  w += "From: Newsletter <" + opts_.sender + ">\r\n";
  w += "To: " + name + " <" + m.recipients[0] + ">\r\n";
  w += "Subject: Your " + opts_.campaign + " news, " + name + "\r\n";
  w += std::string("Date: ") + date + "\r\n";
  w += "Message-ID: <" + opts_.campaign + "." + run_id_ + "." + std::to_string(index) +
       "@compose.mma>\r\n";
  w += "MIME-Version: 1.0\r\nContent-Type: text/plain; "
       "charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
  w += "Dear " + name + ",\r\n\r\n";
  std::size_t p = index;
  while (w.size() < opts_.body_size) {
    w += kParagraphs[p++ % 4];
    w += "\r\n";
  }
  w += "\r\n-- \r\nUnsubscribe: https://example.test/u/" + std::to_string(index) + "\r\n";
  return m;
}

}  // namespace mma::compose
