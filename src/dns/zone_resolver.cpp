#include "dns/resolver.hpp"

namespace mma::dns {

net::Task<Answer> ZoneResolver::query(std::string name, RrType type) {
  ++queries_;
  if (delay.count() > 0) {
    asio::steady_timer t(co_await asio::this_coro::executor, delay);
    co_await t.async_wait(net::use_tuple);
  }
  auto it = zone_.find({name, type});
  if (it != zone_.end()) co_return it->second;
  for (const auto& [key, answer] : zone_) {
    if (key.first == name) co_return Answer{Answer::Status::NoData, {}, 60, false, {}};
  }
  co_return Answer{Answer::Status::NxDomain, {}, 60, false, {}};
}

std::string mx_rdata(std::uint16_t preference, const std::string& exchange) {
  std::string out;
  out += static_cast<char>(preference >> 8);
  out += static_cast<char>(preference & 0xff);
  std::size_t start = 0;
  while (start < exchange.size()) {
    auto dot = exchange.find('.', start);
    if (dot == std::string::npos) dot = exchange.size();
    out += static_cast<char>(dot - start);
    out.append(exchange, start, dot - start);
    start = dot + 1;
  }
  out += '\0';
  return out;
}

bool parse_mx_rdata(const std::string& rdata, std::uint16_t& preference, std::string& exchange) {
  if (rdata.size() < 3) return false;
  preference = static_cast<std::uint16_t>((static_cast<unsigned char>(rdata[0]) << 8) |
                                          static_cast<unsigned char>(rdata[1]));
  exchange.clear();
  std::size_t pos = 2;
  for (;;) {
    if (pos >= rdata.size()) return false;
    const auto len = static_cast<unsigned char>(rdata[pos++]);
    if (len == 0) break;
    if (len > 63 || pos + len > rdata.size())
      return false;  // compression is not used in RDATA here
    if (!exchange.empty()) exchange += '.';
    for (std::size_t i = 0; i < len; ++i) {
      char c = rdata[pos + i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
      exchange += c;
    }
    pos += len;
  }
  return pos == rdata.size();
}

}  // namespace mma::dns
