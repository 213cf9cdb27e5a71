// Micro-benchmarks of the protocol hot paths: reading DATA content into its wire form and
// parsing pipelined commands. Report ratios against a baseline of the same run (bench/README.md).
#include <benchmark/benchmark.h>

#include <string>

#include "smtp/chunk_reader.hpp"
#include "smtp/data_reader.hpp"
#include "smtp/line_buffer.hpp"
#include "smtp/server_protocol.hpp"

namespace {

std::string message(std::size_t size) {
  std::string m = "Subject: benchmark\r\nMessage-ID: <x@y>\r\n\r\n";
  while (m.size() < size)
    m += "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
  return m + ".\r\n";
}

void BM_DataReader(benchmark::State& state) {
  const std::string in = message(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    std::string wire;
    wire.reserve(in.size());
    mma::smtp::DataReader r(wire, mma::smtp::DataLimits{1 << 30, 998});
    benchmark::DoNotOptimize(r.feed(in));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_DataReader)->Arg(5 * 1024)->Arg(1 << 20);

// The same content as one BDAT chunk (no terminator): stuffed into the wire form as it is read.
void BM_ChunkReader(benchmark::State& state) {
  std::string in = message(static_cast<std::size_t>(state.range(0)));
  in.resize(in.size() - 3);  // no ".\r\n": BDAT has no terminator
  for (auto _ : state) {
    std::string wire;
    wire.reserve(in.size());
    mma::smtp::ChunkReader r(wire, mma::smtp::DataLimits{1 << 30, 998});
    r.feed(in);
    r.finish();
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_ChunkReader)->Arg(5 * 1024)->Arg(1 << 20);

// Baseline for BM_DataReader: a plain copy of the same bytes.
void BM_Copy(benchmark::State& state) {
  const std::string in = message(static_cast<std::size_t>(state.range(0)));
  for (auto _ : state) {
    std::string wire;
    wire.reserve(in.size());
    wire.append(in);
    benchmark::DoNotOptimize(wire.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * in.size()));
}
BENCHMARK(BM_Copy)->Arg(5 * 1024)->Arg(1 << 20);

void BM_Envelope(benchmark::State& state) {
  using namespace mma::smtp;
  for (auto _ : state) {
    ServerProtocol p(ServerOptions{.hostname = "bench"});
    benchmark::DoNotOptimize(p.on_command("EHLO composer.test"));
    benchmark::DoNotOptimize(
        p.on_command("MAIL FROM:<bounces+12345@sender.example.com> SIZE=5120"));
    benchmark::DoNotOptimize(p.on_command("RCPT TO:<subscriber.12345@d123.example.net>"));
    benchmark::DoNotOptimize(p.on_command("DATA"));
    benchmark::DoNotOptimize(p.finish_data());
  }
}
BENCHMARK(BM_Envelope);

}  // namespace
