#include "compose/campaign_run.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "compose/campaign.hpp"
#include "compose/composer.hpp"
#include "compose/send_log.hpp"

namespace mma::compose {
namespace {

namespace fs = std::filesystem;

enum class SourceKind { Sqlite, Csv, Postgres };

SourceKind kind_of(const std::string& source) {
  if (source.rfind("postgresql://", 0) == 0 || source.rfind("postgres://", 0) == 0 ||
      source.find("host=") != std::string::npos || source.find("dbname=") != std::string::npos)
    return SourceKind::Postgres;
  if (source.size() > 4 && source.compare(source.size() - 4, 4, ".csv") == 0)
    return SourceKind::Csv;
  return SourceKind::Sqlite;
}

// Where acceptances are recorded: in the SQLite database itself, beside a CSV file, or (for
// PostgreSQL, which we only read) beside the campaign file.
std::unique_ptr<SendLog> open_send_log(const Campaign& c, const CampaignRunOptions& o) {
  if (!o.state_path.empty()) return open_file_send_log(o.state_path);
  switch (kind_of(c.source)) {
    case SourceKind::Sqlite:
      return open_sqlite_send_log(c.source, c.name);
    case SourceKind::Csv:
      return open_file_send_log(c.source + "." + c.name + ".sent");
    case SourceKind::Postgres:
      break;
  }
  return open_file_send_log((fs::absolute(c.path).parent_path() / (c.name + ".sent")).string());
}

void write_summary(const std::string& path, const InjectResult& r, const ComposeCounts& k) {
  if (path.empty()) return;
  std::string j = summary_json(r);
  // The composer's own counts, in the same object.
  j.insert(j.rfind('}'), ",\"rows\":" + std::to_string(k.rows) +
                             ",\"bad_rows\":" + std::to_string(k.bad) +
                             ",\"already_sent\":" + std::to_string(k.already_sent));
  std::ofstream(path) << j;
}

}  // namespace

std::size_t expected_rows(const std::string& source, const std::string& query) {
  if (kind_of(source) == SourceKind::Csv) {
    std::ifstream in(source, std::ios::binary);
    std::size_t lines = 0;
    std::string line;
    while (std::getline(in, line)) ++lines;
    return lines > 0 ? lines - 1 : 0;  // an estimate: quoted line breaks count twice
  }
  if (kind_of(source) != SourceKind::Sqlite) return 0;
  sqlite3* db = nullptr;
  std::size_t n = 0;
  if (sqlite3_open_v2(source.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    const std::string sql =
        "SELECT COUNT(*) FROM (" + (query.empty() ? "SELECT * FROM subscribers" : query) + ")";
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &q, nullptr) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
      n = static_cast<std::size_t>(sqlite3_column_int64(q, 0));
    sqlite3_finalize(q);
  }
  sqlite3_close(db);
  return n;
}

int run_campaign(const CampaignRunOptions& o) {
  std::unique_ptr<Campaign> campaign;
  std::unique_ptr<RecipientSource> source;
  std::unique_ptr<SendLog> log;
  try {
    campaign = std::make_unique<Campaign>(load_campaign(o.campaign_path));
    // The log first: it may turn the SQLite database to WAL mode, which needs it unshared.
    if (o.mode == CampaignRunOptions::Mode::Send && o.resume) log = open_send_log(*campaign, o);
    source = open_source(campaign->source, campaign->query);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mma compose: %s\n", e.what());
    return 1;
  }
  const Campaign& c = *campaign;

  if (o.mode == CampaignRunOptions::Mode::Plan) {
    try {
      const CampaignPlan plan = plan_campaign(*source, c.required_fields());
      std::fputs(("campaign " + c.name + ", recipients from " + source->describe() + "\n").c_str(),
                 stdout);
      std::fputs(format_plan(plan, o.plan, o.plan_top).c_str(), stdout);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mma compose: %s\n", e.what());
      return 1;
    }
    return 0;
  }

  const std::size_t expected = expected_rows(c.source, c.query);
  const std::size_t before = log ? log->count() : 0;
  const std::string log_name = log ? log->describe() : std::string();
  const unsigned threads =
      o.mode == CampaignRunOptions::Mode::Preview
          ? 0
          : (o.compose_threads > 0 ? o.compose_threads
                                   : std::max(1u, std::thread::hardware_concurrency()));
  CampaignComposer composer(c, std::move(source), std::move(log),
                            expected > before ? expected - before : expected, threads);

  if (o.mode == CampaignRunOptions::Mode::Preview) {
    try {
      for (std::size_t i = 0; i < o.preview; ++i) {
        std::optional<ComposedMessage> m = composer.next();
        if (!m) {
          if (const std::string f = composer.failure(); !f.empty()) throw std::runtime_error(f);
          break;
        }
        std::printf("MAIL FROM:<%s> RCPT TO:<%s>\n%s.\n", m->sender.c_str(),
                    m->recipients.front().c_str(), m->wire.c_str());
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mma compose: %s\n", e.what());
      return 1;
    }
    return 0;
  }

  if (before > 0) {
    std::fprintf(stderr, "compose: resuming campaign %s: %zu recipient(s) already accepted (%s)\n",
                 c.name.c_str(), before, log_name.c_str());
  }
  InjectResult r;
  try {
    r = inject(composer, o.inject);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mma compose: %s\n", e.what());
    return 1;
  }
  composer.finish();
  const ComposeCounts& k = composer.counts();
  std::printf(
      "campaign %s: %zu rows read, %zu composed, %zu accepted, %zu deferred, %zu rejected, "
      "%zu unanswered; %zu bad rows not sent; %zu already accepted before; %.2f s, %.0f "
      "msg/s%s\n",
      c.name.c_str(), k.rows, r.messages, r.accepted, r.deferred, r.rejected, r.unanswered, k.bad,
      k.already_sent, r.seconds, r.seconds > 0 ? static_cast<double>(r.messages) / r.seconds : 0.0,
      r.interrupted ? " (interrupted: run again to send the rest)" : "");
  for (const auto& [reason, n] : k.bad_reasons)
    std::printf("  bad row %zu x %s\n", n, reason.c_str());
  const std::string failure = composer.failure();
  for (const auto& [reason, n] : r.reasons) {
    if (reason.find("accepted") == std::string::npos)
      std::printf("  refused %zu x %s\n", n, reason.c_str());
  }
  write_summary(o.summary_path, r, k);
  if (!failure.empty()) {
    std::fprintf(stderr,
                 "mma compose: the recipients' source failed: %s\n(what was accepted is recorded: "
                 "run the campaign again to send the rest)\n",
                 failure.c_str());
    return 1;
  }
  if (r.interrupted) return 130;
  return r.accepted == r.messages ? 0 : 3;
}

}  // namespace mma::compose
