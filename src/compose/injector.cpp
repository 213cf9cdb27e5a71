#include "compose/injector.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <functional>
#include <stdexcept>

#include "core/json.hpp"
#include "delivery/smtp_client.hpp"
#include "net/connect.hpp"
#include "smtp/header_scan.hpp"

namespace mma::compose {
namespace {

using namespace asio::experimental::awaitable_operators;
using std::chrono::milliseconds;

struct Run {
  MessageSource& source;
  const InjectOptions& opts;
  InjectResult result;
  bool exhausted = false;  // the source has no more messages, or a signal said stop
  std::size_t done = 0;    // messages with an answer (or given up)
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  std::FILE* acked = nullptr;
};

void count_reason(Run& run, const smtp::Reply& r) {
  std::string key = std::to_string(r.code);
  if (!r.enhanced.empty()) key += " " + r.enhanced;
  std::string text = r.text.substr(0, r.text.find('\n'));
  // "Ok: queued as X" and similar carry ids: keep reasons countable.
  if (r.klass() == 2) text = "accepted";
  ++run.result.reasons[key + " " + text.substr(0, 80)];
}

net::Task<void> connection(Run& run, unsigned id) {
  auto ex = co_await asio::this_coro::executor;
  delivery::SmtpClient client(ex);
  config::Timeouts t;
  const delivery::TlsOptions no_tls;
  t.banner = t.command = t.data = t.data_done = run.opts.timeout;
  asio::steady_timer pause(ex);
  const config::Endpoint& server = run.opts.servers[id % run.opts.servers.size()];
  auto session = [&]() -> net::Task<void> {
    for (int attempt = 0; attempt < run.opts.reconnects && !run.exhausted; ++attempt) {
      // Before another try after a refusal: a relay that refused a connection, or greeted it
      // with 421 (at its max_connections), is not asked again at once, 1000 times in a second.
      if (attempt > 0 && !client.connected()) {
        pause.expires_after(milliseconds(500));
        co_await pause.async_wait(net::use_tuple);
        if (run.exhausted) break;
      }
      net::Connected c = co_await net::connect(server, milliseconds(30'000));
      if (!c.stream) {
        std::fprintf(stderr, "compose: connection %u: %s: %s\n", id, server.to_string().c_str(),
                     c.ec.message().c_str());
        continue;
      }
      client.attach(std::move(c.stream), c.address);
      const bool ok51 = co_await client.open(run.opts.helo, run.opts.lmtp, t, no_tls);
      if (!ok51) {
        std::fprintf(stderr, "compose: connection %u: %s\n", id, client.error().c_str());
        client.close();
        continue;
      }
      while (!run.exhausted) {
        std::optional<ComposedMessage> next = run.source.next();
        if (!next) {
          run.exhausted = true;
          break;
        }
        ComposedMessage& m = *next;
        smtp::TransactionInput in;
        in.sender = m.sender;
        for (const auto& r : m.recipients) in.recipients.push_back(r);
        in.size = m.wire.size();
        in.lmtp = run.opts.lmtp;
        in.chunking = true;  // BDAT where the relay offers CHUNKING: no wait for a 354
        ++run.result.messages;
        Body body;
        body.wire = std::move(m.wire);
        auto tx = co_await client.transact(std::move(in), body, t);
        m.wire.clear();
        if (tx.fault) {
          // No answer: the server may or may not have it. Not counted as accepted.
          ++run.result.unanswered;
          ++run.done;
          std::fprintf(stderr, "compose: connection %u: %s\n", id, client.error().c_str());
          client.close();
          break;
        }
        ++run.done;
        bool all_ok = true, any_permanent = false;
        for (const auto& r : tx.replies) {
          count_reason(run, r);
          if (r.klass() == 2) {
            ++run.result.recipients_accepted;
          } else {
            all_ok = false;
            any_permanent = any_permanent || r.klass() == 5;
          }
        }
        if (all_ok) {
          ++run.result.accepted;
          run.source.accepted(m);
          if (run.acked) {
            const std::string mid = m.message_id.empty()
                                        ? smtp::find_header(body.wire, "Message-ID")
                                        : "<" + m.message_id + ">";
            std::fprintf(run.acked, "%s\n", mid.c_str());
            std::fflush(run.acked);
          }
        } else if (any_permanent) {
          ++run.result.rejected;
        } else {
          ++run.result.deferred;
        }
        if (tx.closing) {
          client.close();
          break;
        }
      }
      if (client.connected()) co_await client.quit(milliseconds(5000));
      if (run.exhausted) break;
    }
  };
  co_await (session() || client.watch());
}

void print_progress(const Run& run, bool tty, bool final) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
  const double rate = secs > 0 ? static_cast<double>(run.done) / secs : 0;
  const std::size_t total = std::max(run.source.expected(), run.done);
  const double eta = rate > 0 ? static_cast<double>(total - run.done) / rate : 0;
  char line[256];
  if (tty) {
    const int width = 30;
    const int filled = total ? static_cast<int>(width * run.done / total) : width;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::snprintf(line, sizeof line,
                  "\r[%s] %zu/%zu msgs  %.0f msg/s  ETA %.0fs  accepted %zu  refused %zu ",
                  bar.c_str(), run.done, total, rate, eta, run.result.accepted,
                  run.result.rejected + run.result.deferred);
    std::fputs(line, stderr);
    if (final) std::fputc('\n', stderr);
  } else {
    std::snprintf(line, sizeof line,
                  "compose: %zu/%zu messages, %.0f msg/s, accepted %zu, refused %zu\n", run.done,
                  total, rate, run.result.accepted, run.result.rejected + run.result.deferred);
    std::fputs(line, stderr);
  }
  std::fflush(stderr);
}

}  // namespace

InjectResult inject(MessageSource& source, const InjectOptions& opts) {
  if (opts.servers.empty()) throw std::invalid_argument("no server to inject into");
  asio::io_context ctx(1);
  Run run{source, opts, {}};
  // Ctrl-C: finish what is in flight, so that its answers are recorded; twice: stop now.
  asio::signal_set signals(ctx, SIGINT, SIGTERM);
  std::function<void()> on_signal = [&] {
    signals.async_wait([&](std::error_code ec, int sig) {
      if (ec) return;
      if (run.result.interrupted) {
        std::fprintf(stderr, "\ncompose: stopping now\n");
        ctx.stop();
        return;
      }
      run.result.interrupted = run.exhausted = true;
      std::fprintf(stderr,
                   "\ncompose: %s: finishing the transactions in flight (again: stop now)\n",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      on_signal();
    });
  };
  on_signal();
  if (!opts.acked_log.empty()) run.acked = std::fopen(opts.acked_log.c_str(), "a");
  const bool tty = opts.progress == InjectOptions::Progress::Always ||
                   (opts.progress == InjectOptions::Progress::Auto && ::isatty(2) != 0);
  const bool show = opts.progress != InjectOptions::Progress::Never;
  std::size_t live = opts.connections;
  asio::steady_timer timer(ctx);
  for (unsigned i = 0; i < opts.connections; ++i) {
    asio::co_spawn(ctx, connection(run, i), [&](std::exception_ptr e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          std::fprintf(stderr, "compose: %s\n", x.what());
        }
      }
      if (--live == 0) {
        timer.cancel();
        signals.cancel();
      }
    });
  }
  std::function<void()> tick = [&] {
    timer.expires_after(milliseconds(tty ? 250 : 2000));
    timer.async_wait([&](std::error_code ec) {
      if (ec || live == 0) return;
      if (show) print_progress(run, tty, false);
      tick();
    });
  };
  tick();
  ctx.run();
  run.result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
  if (run.acked) std::fclose(run.acked);
  source.finish();
  if (show) print_progress(run, tty, true);
  return run.result;
}

std::string summary_json(const InjectResult& r) {
  std::string out = "{\"messages\":" + std::to_string(r.messages) +
                    ",\"accepted\":" + std::to_string(r.accepted) +
                    ",\"deferred\":" + std::to_string(r.deferred) +
                    ",\"rejected\":" + std::to_string(r.rejected) +
                    ",\"unanswered\":" + std::to_string(r.unanswered) +
                    ",\"recipients_accepted\":" + std::to_string(r.recipients_accepted) +
                    ",\"interrupted\":" + (r.interrupted ? "true" : "false") +
                    ",\"seconds\":" + std::to_string(r.seconds) + ",\"reasons\":{";
  bool first = true;
  for (const auto& [k, v] : r.reasons) {
    if (!first) out += ',';
    first = false;
    append_json_string(out, k);
    out += ':' + std::to_string(v);
  }
  out += "}}\n";
  return out;
}

}  // namespace mma::compose
