// observe/accounting_report: `mma report`: a summary of an accounting log: outcomes per queue,
// the busiest domains, and the delivery rate between the first and the last event.
#pragma once

#include <string>

namespace mma::observe {

struct ReportOptions {
  std::string path;
  std::size_t top_domains = 5;
  bool json = false;
};

// Returns the text to print; throws std::runtime_error if the log cannot be read.
std::string accounting_report(const ReportOptions& opts);

}  // namespace mma::observe
