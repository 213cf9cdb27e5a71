#include "sink/sink_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <optional>

#include "net/accept_loop.hpp"
#include "net/event_loops.hpp"
#include "sink/sink_counts.hpp"
#include "sink/sink_session.hpp"

namespace mma::sink {
namespace {

void write_report(const SinkOptions& opts, const SinkCounts& counts) {
  const std::string json = counts.json();
  if (opts.report_path.empty()) {
    std::fputs(json.c_str(), stdout);
    std::fflush(stdout);
    return;
  }
  // Atomically: readers never see half a report.
  const std::string tmp = opts.report_path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << json;
  }
  std::rename(tmp.c_str(), opts.report_path.c_str());
}

// Starts a SinkSession for each accepted connection, each with its own fault dice.
template <class Socket, class MakeStream>
auto start_session(const SinkOptions& opts, SinkCounts& counts, std::string name, MakeStream make) {
  return [&opts, &counts, name = std::move(name), make](Socket socket, asio::io_context& loop) {
    static std::atomic<std::uint64_t> sessions{0};
    auto s =
        std::make_shared<SinkSession>(make(std::move(socket)), loop.get_executor(), opts, counts,
                                      name, opts.seed * 1000003 + sessions.fetch_add(1));
    SinkSession::start(std::move(s), loop.get_executor());
  };
}

}  // namespace

int run_sink(const SinkOptions& opts) {
  SinkCounts counts;  // outlives the loops and the sessions they hold
  net::EventLoops loops(opts.threads);
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> tcp;
  std::vector<std::unique_ptr<asio::local::stream_protocol::acceptor>> local;
  if (!opts.maildir.empty()) ::mkdir(opts.maildir.c_str(), 0755);
  try {
    for (const auto& ep : opts.listen) {
      const std::string name = ep.to_string();
      if (ep.kind == config::Endpoint::Kind::Unix) {
        ::unlink(ep.path.c_str());
        local.push_back(std::make_unique<asio::local::stream_protocol::acceptor>(
            loops.main(), asio::local::stream_protocol::endpoint(ep.path)));
        asio::co_spawn(
            loops.main(),
            net::accept_loop(*local.back(), loops, name,
                             start_session<asio::local::stream_protocol::socket>(
                                 opts, counts, name,
                                 [](asio::local::stream_protocol::socket s) {
                                   return std::make_unique<net::UnixStream>(std::move(s));
                                 })),
            asio::detached);
      } else {
        auto addr = asio::ip::make_address(ep.host);
        tcp.push_back(std::make_unique<asio::ip::tcp::acceptor>(
            loops.main(), asio::ip::tcp::endpoint(addr, ep.port), true));
        asio::co_spawn(loops.main(),
                       net::accept_loop(*tcp.back(), loops, name,
                                        start_session<asio::ip::tcp::socket>(
                                            opts, counts, name,
                                            [](asio::ip::tcp::socket s) {
                                              std::error_code ignored;
                                              s.set_option(asio::ip::tcp::no_delay(true), ignored);
                                              return std::make_unique<net::TcpStream>(std::move(s));
                                            })),
                       asio::detached);
      }
    }
  } catch (const std::system_error& e) {
    spdlog::critical("mma sink: cannot listen: {}", e.code().message());
    return 1;
  }
  spdlog::info("mma sink: listening on {} address(es)", opts.listen.size());

  SinkSession::paused = opts.paused;
  asio::signal_set signals(loops.main(), SIGINT, SIGTERM, SIGUSR1);
  signals.add(SIGUSR2);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](std::error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGUSR1) {
        write_report(opts, counts);
        wait_signal();
        return;
      }
      if (sig == SIGUSR2) {
        SinkSession::paused = !SinkSession::paused;
        spdlog::info("mma sink: {}", SinkSession::paused ? "paused" : "resumed");
        wait_signal();
        return;
      }
      loops.stop();
    });
  };
  wait_signal();

  asio::steady_timer report_timer(loops.main());
  std::function<void()> tick = [&] {
    report_timer.expires_after(opts.report_every);
    report_timer.async_wait([&](std::error_code ec) {
      if (ec) return;
      write_report(opts, counts);
      tick();
    });
  };
  if (opts.report_every.count() > 0) tick();
  asio::steady_timer end_timer(loops.main());
  if (opts.duration.count() > 0) {
    end_timer.expires_after(opts.duration);
    end_timer.async_wait([&](std::error_code ec) {
      if (!ec) loops.stop();
    });
  }
  loops.run();
  write_report(opts, counts);
  for (const auto& ep : opts.listen) {
    if (ep.kind == config::Endpoint::Kind::Unix) ::unlink(ep.path.c_str());
  }
  return 0;
}

}  // namespace mma::sink
