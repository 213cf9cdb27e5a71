// mma: the mass-mail accelerator. One binary, subcommands (DESIGN.md §1):
//   serve             the accelerator daemon
//   sink              a simulated internet of remote MTAs, for tests and benchmarks
//   compose           the composer: a campaign, personalized and injected
//   report            a summary of an accounting log
//   config-reference  the configuration reference (docs/CONFIG.md)
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <sys/resource.h>

#include <cstdio>
#include <iostream>

#include "app/daemon.hpp"
#include "compose/campaign_run.hpp"
#include "compose/injector.hpp"
#include "compose/sample.hpp"
#include "compose/synthetic_campaign.hpp"
#include "config/config.hpp"
#include "config/units.hpp"
#include "observe/accounting_report.hpp"
#include "sink/sink_server.hpp"

namespace {

using namespace mma;

// The listener of the README's example configuration.
constexpr const char* kDefaultInjectServer = "127.0.0.1:2525";

std::chrono::milliseconds duration_arg(const std::string& s, const char* what) {
  if (s.empty()) return std::chrono::milliseconds(0);
  auto d = config::parse_duration(s);
  if (!d) throw CLI::ValidationError(what, "expected a duration such as 100ms or 2s");
  return *d;
}

config::Endpoint endpoint_arg(const std::string& s, std::uint16_t default_port) {
  std::string err;
  auto ep = config::parse_endpoint(s, default_port, err);
  if (!ep) throw CLI::ValidationError(s, err);
  return *ep;
}

void setup_logging(const std::string& level) {
  // The diagnostics log goes to stderr: stdout may be the SMTP channel (--stdio).
  spdlog::set_default_logger(spdlog::stderr_color_mt("mma"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace

// Thousands of connections need thousands of descriptors: take the hard limit, which the
// administrator sets; the soft default (often 1024) is a historical accident.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char** argv) {
  CLI::App app{"mma: the mass-mail accelerator"};
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->capture_default_str();

  // --- serve ---
  app::ServeOptions serve;
  bool check = false;
  auto* serve_cmd = app.add_subcommand("serve", "Run the accelerator daemon");
  serve_cmd->add_option("--config,-c", serve.config_path, "Configuration file (TOML)")->required();
  serve_cmd->add_flag("--check", check, "Validate the configuration and exit");
  serve_cmd->add_flag(
      "--stdio", serve.stdio,
      "Also serve one SMTP session on stdin/stdout; exit when it ends and all is delivered");
  serve_cmd->add_flag("--stdio-lmtp", serve.stdio_lmtp, "Speak LMTP on stdin/stdout");
  serve_cmd->add_flag("--stdio-delivered", serve.stdio_delivered,
                      "Use the `delivered` ack mode on stdin/stdout");

  // --- sink ---
  sink::SinkOptions sink_opts;
  std::vector<std::string> listen;
  std::string banner_delay, reply_delay, data_delay, report_every, duration;
  bool no_pipelining = false, no_chunking = false, no_ehlo = false;
  auto* sink_cmd = app.add_subcommand("sink", "Run a simulated internet of remote MTAs");
  sink_cmd
      ->add_option("--listen,-l", listen,
                   "Address to listen on (host:port or unix:/path); repeatable")
      ->required();
  sink_cmd->add_option("--threads", sink_opts.threads, "Event-loop threads")->capture_default_str();
  sink_cmd->add_option("--hostname", sink_opts.hostname, "Name in the banner")
      ->capture_default_str();
  sink_cmd->add_option("--banner-delay", banner_delay, "Delay before the greeting (e.g. 100ms)");
  sink_cmd->add_option("--reply-delay", reply_delay, "Delay before each batch of replies");
  sink_cmd->add_option("--data-delay", data_delay, "Delay before the reply to the final \".\"");
  sink_cmd->add_option("--rcpt-defer", sink_opts.rcpt_defer, "Fraction of recipients answered 451");
  sink_cmd->add_option("--rcpt-reject", sink_opts.rcpt_reject,
                       "Fraction of recipients answered 550");
  sink_cmd->add_option("--txn-defer", sink_opts.txn_defer,
                       "Fraction of transactions answered 451 after the data");
  sink_cmd->add_option("--txn-reject", sink_opts.txn_reject,
                       "Fraction of transactions answered 554 after the data");
  sink_cmd->add_option("--drop", sink_opts.drop,
                       "Fraction of transactions whose connection is dropped after the data");
  sink_cmd->add_option("--seed", sink_opts.seed, "Seed of the fault dice")->capture_default_str();
  sink_cmd->add_flag("--no-pipelining", no_pipelining, "Do not offer PIPELINING");
  sink_cmd->add_flag("--no-chunking", no_chunking, "Do not offer CHUNKING (BDAT, RFC 3030)");
  sink_cmd->add_flag("--no-ehlo", no_ehlo, "Refuse EHLO (502), so clients fall back to HELO");
  sink_cmd->add_option("--max-message-size", sink_opts.max_message_size,
                       "SIZE limit in bytes (0: none)");
  sink_cmd->add_option("--max-recipients", sink_opts.max_recipients,
                       "Recipients per transaction; beyond: 452");
  sink_cmd->add_option("--report", sink_opts.report_path,
                       "Write counts as JSON here (default: stdout on exit)");
  sink_cmd->add_option("--report-every", report_every,
                       "Also rewrite the report this often (e.g. 500ms)");
  sink_cmd->add_option("--maildir", sink_opts.maildir,
                       "Write every accepted message into this directory");
  sink_cmd->add_option("--duration", duration, "Exit after this long");
  std::vector<std::string> faults;
  sink_cmd->add_option(
      "--fault", faults,
      "PHASE:KIND[:SESSIONS]: fail at banner, ehlo, mail, rcpt, data or dot with timeout, drop, "
      "421, garbled or truncated, for the first SESSIONS sessions (default: all); repeatable");
  std::string starttls;
  sink_cmd->add_option("--starttls", starttls,
                       "\"broken\": offer STARTTLS, then answer it with garbage");
  sink_cmd->add_flag("--paused", sink_opts.paused,
                     "Start stopped: accept connections but greet nobody until SIGUSR2");

  // --- compose ---
  compose::SyntheticOptions syn;
  compose::CampaignRunOptions run;
  compose::InjectOptions& inj = run.inject;
  compose::SampleOptions sample;
  std::size_t synthetic = 0;
  std::string progress = "auto", sample_dir;
  std::vector<std::string> servers;
  bool plan = false, no_resume = false;
  std::size_t preview = 0;
  auto* compose_cmd = app.add_subcommand(
      "compose",
      "Compose a campaign and inject it into an MTA:\n"
      "  mma compose CAMPAIGN.toml -s HOST:PORT    send it (resumes where an earlier run stopped)\n"
      "  mma compose CAMPAIGN.toml --plan          recipients per domain, suggested [[queue]]s\n"
      "  mma compose CAMPAIGN.toml --preview 1     print composed messages\n"
      "  mma compose --make-sample DIR             write a sample campaign and database\n"
      "  mma compose --synthetic N -s HOST:PORT    generated messages, for benchmarks");
  compose_cmd->add_option("campaign", run.campaign_path, "The campaign file (TOML)");
  compose_cmd->add_flag("--plan", plan,
                        "Report recipients per domain and suggest queues; send nothing");
  compose_cmd->add_option("--preview", preview, "Print this many composed messages; send nothing");
  compose_cmd->add_option("--top", run.plan_top, "Domains listed by --plan")->capture_default_str();
  compose_cmd
      ->add_option("--queue-share", run.plan.queue_share,
                   "--plan suggests a queue for each domain with this share (0 to 1)")
      ->capture_default_str();
  compose_cmd->add_option("--state", run.state_path,
                          "Record accepted recipients in this file (default: in the SQLite "
                          "database, or beside the CSV file or the campaign file)");
  compose_cmd
      ->add_option("--compose-threads", run.compose_threads,
                   "Threads composing ahead of the connections (0: one per core)")
      ->capture_default_str();
  compose_cmd->add_flag("--no-resume", no_resume,
                        "Send to every recipient, even those accepted in an earlier run");
  compose_cmd->add_option("--make-sample", sample_dir,
                          "Write a sample campaign (campaign.toml, templates, subscribers.db, "
                          "DKIM key) into this folder");
  compose_cmd->add_option("--subscribers", sample.subscribers, "Subscribers in the sample")
      ->capture_default_str();
  compose_cmd->add_option("--synthetic", synthetic, "Generate this many personalized messages");
  compose_cmd->add_option("--domains", syn.domains, "Domains of the sample or synthetic recipients")
      ->capture_default_str();
  compose_cmd->add_option("--domain-suffix", syn.domain_suffix, "Domains are d<N>.<suffix>")
      ->capture_default_str();
  compose_cmd->add_option("--rcpts", syn.rcpts_per_message, "Recipients per message")
      ->capture_default_str();
  compose_cmd->add_option("--size", syn.body_size, "Approximate message size in bytes")
      ->capture_default_str();
  compose_cmd->add_option("--big-domain", syn.big_domain,
                          "Send a share of recipients to this domain");
  compose_cmd->add_option("--big-share", syn.big_share, "That share (0 to 1)");
  compose_cmd->add_option("--sender", syn.sender, "Envelope sender")->capture_default_str();
  compose_cmd->add_option("--campaign", syn.campaign, "Campaign name (in Message-IDs)")
      ->capture_default_str();
  // One value per -s: a vector option would otherwise also take the campaign file after it.
  compose_cmd
      ->add_option("--server,-s", servers,
                   "Where to inject: host:port or unix:/path. Repeat it to spread the connections "
                   "over several relays, round robin (no failover: each connection keeps to its "
                   "own)")
      ->allow_extra_args(false)
      ->default_str(kDefaultInjectServer);
  compose_cmd->add_option("--connections,-n", inj.connections, "Parallel connections")
      ->capture_default_str();
  compose_cmd->add_flag("--lmtp", inj.lmtp, "Speak LMTP");
  compose_cmd->add_option("--progress", progress, "auto, always, never")->capture_default_str();
  compose_cmd->add_option("--summary-json", run.summary_path,
                          "Also write the summary as JSON here");
  compose_cmd->add_option("--acked-log", inj.acked_log,
                          "Append the Message-ID of every accepted message here");
  compose_cmd
      ->add_option("--reconnects", inj.reconnects,
                   "Attempts per connection after a failure, 0.5 s apart")
      ->capture_default_str();

  auto* ref_cmd =
      app.add_subcommand("config-reference", "Print the configuration reference (Markdown)");

  observe::ReportOptions report;
  auto* report_cmd = app.add_subcommand("report", "Summarize an accounting log");
  report_cmd->add_option("log", report.path, "The accounting log (JSON lines)")->required();
  report_cmd->add_option("--top", report.top_domains, "How many of the busiest domains to list")
      ->capture_default_str();
  report_cmd->add_flag("--json", report.json, "Print JSON");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  setup_logging(log_level);
  raise_fd_limit();

  if (ref_cmd->parsed()) {
    std::cout << config::config_reference();
    return 0;
  }
  if (report_cmd->parsed()) {
    try {
      std::cout << observe::accounting_report(report);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mma report: %s\n", e.what());
      return 1;
    }
    return 0;
  }
  if (serve_cmd->parsed()) {
    config::Config cfg;
    try {
      cfg = config::load_config(serve.config_path);
    } catch (const config::ConfigError& e) {
      std::fprintf(stderr, "mma: %s\n", e.what());
      return 2;
    }
    if (check) {
      std::size_t general = 0;
      for (const auto& q : cfg.queues) general += q.general() ? 1 : 0;
      std::printf("%s: ok: %zu listener(s), %zu queue(s)%s\n", serve.config_path.c_str(),
                  cfg.listeners.size(), cfg.queues.size(),
                  general ? ", with a general queue" : ", no general queue");
      return 0;
    }
    if (cfg.listeners.empty() && !serve.stdio) {
      std::fprintf(stderr, "mma: %s: no [[listener]] configured and no --stdio: nothing to serve\n",
                   serve.config_path.c_str());
      return 2;
    }
    return app::run_daemon(cfg, serve);
  }
  if (sink_cmd->parsed()) {
    try {
      for (const auto& l : listen) sink_opts.listen.push_back(endpoint_arg(l, 0));
      sink_opts.banner_delay = duration_arg(banner_delay, "--banner-delay");
      sink_opts.reply_delay = duration_arg(reply_delay, "--reply-delay");
      sink_opts.data_delay = duration_arg(data_delay, "--data-delay");
      sink_opts.report_every = duration_arg(report_every, "--report-every");
      sink_opts.duration = duration_arg(duration, "--duration");
    } catch (const CLI::Error& e) {
      return app.exit(e);
    }
    for (const auto& f : faults) {
      sink::Fault fault;
      const auto a = f.find(':');
      const auto b = a == std::string::npos ? a : f.find(':', a + 1);
      if (a == std::string::npos) {
        std::fprintf(stderr, "mma sink: --fault %s: expected PHASE:KIND[:SESSIONS]\n", f.c_str());
        return 2;
      }
      fault.phase = f.substr(0, a);
      fault.kind = f.substr(a + 1, b == std::string::npos ? std::string::npos : b - a - 1);
      if (b != std::string::npos) fault.sessions = std::stoul(f.substr(b + 1));
      const std::string phases = " banner ehlo mail rcpt data dot ",
                        kinds = " timeout drop 421 garbled truncated ";
      if (phases.find(" " + fault.phase + " ") == std::string::npos ||
          kinds.find(" " + fault.kind + " ") == std::string::npos) {
        std::fprintf(stderr, "mma sink: --fault %s: unknown phase or kind\n", f.c_str());
        return 2;
      }
      sink_opts.faults.push_back(fault);
    }
    if (!starttls.empty() && starttls != "broken") {
      std::fprintf(stderr, "mma sink: --starttls: only \"broken\" is known\n");
      return 2;
    }
    sink_opts.broken_starttls = starttls == "broken";
    sink_opts.pipelining = !no_pipelining;
    sink_opts.chunking = !no_chunking;
    sink_opts.ehlo = !no_ehlo;
    return sink::run_sink(sink_opts);
  }
  if (compose_cmd->parsed()) {
    try {
      if (servers.empty()) servers.emplace_back(kDefaultInjectServer);
      for (const auto& s : servers) inj.servers.push_back(endpoint_arg(s, 25));
    } catch (const CLI::Error& e) {
      return app.exit(e);
    }
    inj.progress = progress == "always"  ? compose::InjectOptions::Progress::Always
                   : progress == "never" ? compose::InjectOptions::Progress::Never
                                         : compose::InjectOptions::Progress::Auto;
    if (!sample_dir.empty()) {
      try {
        if (compose_cmd->count("--domains") > 0) sample.domains = syn.domains;
        const std::string path = compose::write_sample_campaign(sample_dir, sample);
        std::printf("%s\n", path.c_str());
        return 0;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "mma compose: %s\n", e.what());
        return 1;
      }
    }
    if (!run.campaign_path.empty()) {
      run.mode = plan          ? compose::CampaignRunOptions::Mode::Plan
                 : preview > 0 ? compose::CampaignRunOptions::Mode::Preview
                               : compose::CampaignRunOptions::Mode::Send;
      run.preview = preview;
      run.resume = !no_resume;
      return compose::run_campaign(run);
    }
    if (synthetic == 0) {
      std::fprintf(stderr, "mma compose: a campaign file, --synthetic N or --make-sample DIR\n");
      return 2;
    }
    syn.messages = synthetic;
    if (syn.domains == 0) syn.domains = 1;
    compose::SyntheticCampaign campaign(syn);
    const compose::InjectResult r = compose::inject(campaign, inj);
    std::printf(
        "composed %zu, accepted %zu, deferred %zu, rejected %zu, unanswered %zu in %.2f s: %.0f "
        "msg/s\n",
        r.messages, r.accepted, r.deferred, r.rejected, r.unanswered, r.seconds,
        r.seconds > 0 ? static_cast<double>(r.messages) / r.seconds : 0.0);
    for (const auto& [reason, n] : r.reasons) {
      if (reason.find("accepted") == std::string::npos)
        std::printf("  refused %zu x %s\n", n, reason.c_str());
    }
    if (!run.summary_path.empty()) {
      if (std::FILE* f = std::fopen(run.summary_path.c_str(), "w")) {
        const std::string j = compose::summary_json(r);
        std::fwrite(j.data(), 1, j.size(), f);
        std::fclose(f);
      }
    }
    return r.accepted == r.messages ? 0 : 3;
  }
  return 0;
}
