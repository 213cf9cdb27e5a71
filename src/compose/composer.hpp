// compose/composer: a campaign's messages, one per subscriber: rows read from the source as
// the injector asks for them, checked (bad rows reported with their row and skipped, never
// sent), already-accepted recipients skipped (resuming), templates rendered, MIME built, DKIM
// signed, dot-stuffed for SMTP.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <ctime>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "compose/campaign.hpp"
#include "compose/message_source.hpp"
#include "compose/recipients.hpp"
#include "compose/send_log.hpp"

namespace mma::compose {

struct ComposeCounts {
  std::size_t rows = 0;          // read from the source
  std::size_t bad = 0;           // refused: reported and not sent
  std::size_t already_sent = 0;  // accepted in an earlier run of this campaign
  std::size_t composed = 0;
  std::map<std::string, std::size_t> bad_reasons;
};

// With `threads` > 0, that many threads compose ahead of the injector (DKIM signatures cost
// 50-400 us each: one core would limit the campaign), into a bounded buffer; rows are still read
// in order, one at a time, under a lock. With 0, next() composes on the caller's thread.
class CampaignComposer : public MessageSource {
 public:
  // `log` may be null (no resuming). `expected`: rows expected, for the progress line.
  CampaignComposer(const Campaign& campaign, std::unique_ptr<RecipientSource> source,
                   std::unique_ptr<SendLog> log, std::size_t expected, unsigned threads = 0);
  ~CampaignComposer() override;
  CampaignComposer(const CampaignComposer&) = delete;
  CampaignComposer& operator=(const CampaignComposer&) = delete;

  // nullopt at the end, or when the source failed (see failure()).
  std::optional<ComposedMessage> next() override;
  [[nodiscard]] std::size_t expected() const override { return expected_; }
  void accepted(const ComposedMessage& m) override;
  void finish() override;

  // The message for one subscriber (also for tests and the benchmark). Thread-safe.
  [[nodiscard]] ComposedMessage compose(const Subscriber& s) const;
  // After finish().
  [[nodiscard]] const ComposeCounts& counts() const { return counts_; }
  // Why the campaign stopped early (the source failed: lost connection, broken CSV...), or "".
  [[nodiscard]] std::string failure();

 private:
  std::optional<Subscriber> next_row();  // under mu_
  void compose_ahead();                  // a composing thread

  const Campaign& campaign_;
  std::unique_ptr<RecipientSource> source_;
  std::unique_ptr<SendLog> log_;
  std::size_t expected_;
  std::vector<std::string> required_;
  std::time_t now_;
  ComposeCounts counts_;

  std::mutex mu_;
  std::condition_variable ready_cv_, room_cv_;
  std::deque<ComposedMessage> ready_;
  std::size_t composing_ = 0;  // rows taken by a thread and not yet in ready_
  bool source_done_ = false, stopping_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

// The message identity for a recipient: stable across runs of the campaign, so that a
// receiver (and our tests) can tell a resend from a new message.
std::string message_id_for(const Campaign& c, const std::string& key);
// "." at the start of a line doubled (RFC 5321 §4.5.2); CRLF line ends expected.
void append_dot_stuffed(std::string_view message, std::string& out);

}  // namespace mma::compose
