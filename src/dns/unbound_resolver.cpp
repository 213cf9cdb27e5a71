#include "dns/unbound_resolver.hpp"

#include <unbound.h>

#include <stdexcept>

#include "net/wakeup.hpp"

namespace mma::dns {

struct UnboundResolver::Pending {
  explicit Pending(const asio::any_io_executor& ex) : wakeup(std::make_shared<net::Wakeup>(ex)) {}
  std::shared_ptr<net::Wakeup> wakeup;
  Answer answer;
  int async_id = 0;
  bool done = false;              // on the resolver's loop only
  std::shared_ptr<Pending> keep;  // alive until libunbound calls back or the query is cancelled
};

namespace {

void on_answer(void* arg, int err, ub_result* r) {
  auto* p = static_cast<UnboundResolver::Pending*>(arg);
  auto keep = std::move(p->keep);
  p->done = true;
  Answer& a = p->answer;
  if (err != 0) {
    a.status = Answer::Status::Failed;
    a.error = ub_strerror(err);
  } else {
    a.ttl = r->ttl > 0 ? static_cast<std::uint32_t>(r->ttl) : 0;
    a.secure = r->secure != 0;
    if (r->rcode == 3 || r->nxdomain) {
      a.status = Answer::Status::NxDomain;
    } else if (r->rcode != 0) {
      a.status = Answer::Status::Failed;
      a.error = r->rcode == 2   ? "SERVFAIL"
                : r->rcode == 5 ? "REFUSED"
                                : "rcode " + std::to_string(r->rcode);
    } else if (r->bogus) {
      a.status = Answer::Status::Failed;
      a.error = std::string("DNSSEC validation failed: ") + (r->why_bogus ? r->why_bogus : "bogus");
    } else if (!r->havedata) {
      a.status = Answer::Status::NoData;
    } else {
      a.status = Answer::Status::Ok;
      for (int i = 0; r->data[i] != nullptr; ++i)
        a.rdata.emplace_back(r->data[i], static_cast<std::size_t>(r->len[i]));
    }
    ub_resolve_free(r);
  }
  p->wakeup->notify();
}

}  // namespace

UnboundResolver::UnboundResolver(asio::io_context& loop, const std::vector<std::string>& servers,
                                 std::chrono::milliseconds timeout)
    : loop_(loop), fd_(loop), timeout_(timeout) {
  ctx_ = ub_ctx_create();
  if (ctx_ == nullptr) throw std::runtime_error("libunbound: cannot create a context");
  auto check = [](int err, const std::string& what) {
    if (err != 0) throw std::runtime_error("libunbound: " + what + ": " + ub_strerror(err));
  };
  check(ub_ctx_async(ctx_, 1), "threads");
  // Test servers listen on loopback; libunbound refuses them by default.
  check(ub_ctx_set_option(ctx_, "do-not-query-localhost:", "no"), "do-not-query-localhost");
  if (servers.empty()) {
    if (ub_ctx_resolvconf(ctx_, nullptr) != 0) {
      // No usable resolv.conf: recurse from the root (libunbound's default).
    }
  } else {
    for (const auto& s : servers) {
      // libunbound writes "ip@port".
      std::string fwd = s;
      const auto colon = s.rfind(':');
      if (colon != std::string::npos && s.find(':') == colon)
        fwd = s.substr(0, colon) + "@" + s.substr(colon + 1);
      check(ub_ctx_set_fwd(ctx_, fwd.c_str()), "forwarder " + s);
    }
  }
  // "test." is a built-in static local zone (RFC 6761): every *.test name would be NXDOMAIN.
  // (Last: removing a zone finalizes the context, after which no option may change.)
  ub_ctx_zone_remove(ctx_, "test.");
  fd_.assign(ub_fd(ctx_));
  watch();
}

UnboundResolver::~UnboundResolver() {
  std::error_code ignored;
  fd_.cancel(ignored);
  fd_.release();  // libunbound owns the descriptor
  ub_ctx_delete(ctx_);
}

void UnboundResolver::watch() {
  fd_.async_wait(asio::posix::descriptor_base::wait_read, [this](std::error_code ec) {
    if (ec) return;
    ub_process(ctx_);
    watch();
  });
}

net::Task<Answer> UnboundResolver::query(std::string name, RrType type) {
  auto p = std::make_shared<Pending>(co_await asio::this_coro::executor);
  asio::post(loop_, [this, p, name, type] {
    p->keep = p;
    const int err = ub_resolve_async(ctx_, name.c_str(), static_cast<int>(type), 1, p.get(),
                                     &on_answer, &p->async_id);
    if (err != 0) {
      p->keep.reset();
      p->done = true;
      p->answer.status = Answer::Status::Failed;
      p->answer.error = ub_strerror(err);
      p->wakeup->notify();
    }
  });
  const bool ok112 = co_await p->wakeup->wait(timeout_);
  if (ok112) co_return p->answer;
  asio::post(loop_, [this, p] {
    if (!p->done) {
      ub_cancel(ctx_, p->async_id);
      p->done = true;
      p->keep.reset();
    }
  });
  co_return Answer{Answer::Status::Failed,
                   {},
                   0,
                   false,
                   "no answer within " + std::to_string(timeout_.count()) + " ms"};
}

}  // namespace mma::dns
