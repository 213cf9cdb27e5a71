// How fast `mma compose` turns a subscriber into a finished message: templates rendered, MIME
// built, DKIM signed, dot-stuffed (issue 6: tens of thousands of 10 KB messages per second per
// core). One thread; the sample campaign's templates grown to ~10 KB.
//   build/release/bench/compose_bench
#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "compose/campaign.hpp"
#include "compose/composer.hpp"
#include "compose/recipients.hpp"
#include "compose/sample.hpp"

namespace {

using namespace mma::compose;
namespace fs = std::filesystem;

struct Fixture {
  fs::path dir;
  std::vector<Subscriber> subscribers;

  Fixture() {
    dir = fs::temp_directory_path() / ("mma-compose-bench-" + std::to_string(::getpid()));
    SampleOptions o;
    o.subscribers = 2000;
    o.domains = 100;
    o.bad_rows = false;
    write_sample_campaign(dir.string(), o);
    // ~10 KB per message: the sample's text and HTML twelve times over.
    for (const char* name : {"news.txt", "news.html"}) {
      std::ifstream in(dir / name);
      std::stringstream s;
      s << in.rdbuf();
      std::string body = s.str();
      std::ofstream out(dir / name);
      for (int i = 0; i < 12; ++i) out << body;
    }
    auto src = open_sqlite((dir / "subscribers.db").string(), "SELECT * FROM subscribers");
    while (auto s = src->next()) subscribers.push_back(std::move(*s));
    // An RSA-2048 key beside the sample's Ed25519 one.
    EVP_PKEY* rsa = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
    std::FILE* f = std::fopen((dir / "rsa.pem").c_str(), "w");
    PEM_write_PrivateKey(f, rsa, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    EVP_PKEY_free(rsa);
  }
  ~Fixture() { fs::remove_all(dir); }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void run(benchmark::State& state, const char* dkim) {
  Fixture& f = fixture();
  Campaign c = load_campaign((f.dir / "campaign.toml").string());
  if (std::string(dkim) == "none") c.dkim.reset();
  if (std::string(dkim) == "rsa")
    c.dkim = std::make_shared<const DkimSigner>("news.example.test", "rsa",
                                                (f.dir / "rsa.pem").string());
  CampaignComposer composer(c, nullptr, nullptr, 0);
  std::size_t i = 0, bytes = 0;
  for (auto _ : state) {
    ComposedMessage m = composer.compose(f.subscribers[i++ % f.subscribers.size()]);
    bytes += m.wire.size();
    benchmark::DoNotOptimize(m.wire.data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
  state.counters["bytes_per_message"] =
      static_cast<double>(bytes) / static_cast<double>(std::max<int64_t>(1, state.iterations()));
}

void BM_ComposeUnsigned(benchmark::State& s) {
  run(s, "none");
}
void BM_ComposeEd25519(benchmark::State& s) {
  run(s, "ed25519");
}
void BM_ComposeRsa2048(benchmark::State& s) {
  run(s, "rsa");
}
BENCHMARK(BM_ComposeUnsigned);
BENCHMARK(BM_ComposeEd25519);
BENCHMARK(BM_ComposeRsa2048);

}  // namespace

BENCHMARK_MAIN();
