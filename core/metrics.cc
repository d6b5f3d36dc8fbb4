#include "core/metrics.h"

#include <cstdio>

namespace pgwarden::core {
namespace {

void seconds(std::string& out, std::uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(ns) / 1e9);
  out += buf;
}

}  // namespace

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kBuckets; ++i) {
    cumulative += buckets_[i].get();
    out += name;
    out += "_bucket{";
    out += labels;
    if (!labels.empty()) out += ',';
    out += "le=\"";
    if (i == kBuckets) {
      out += "+Inf";
    } else {
      seconds(out, static_cast<std::uint64_t>((*bounds_)[i]));
    }
    out += "\"} ";
    out += std::to_string(cumulative);
    out += '\n';
  }
  for (const std::string_view part : {std::string_view("_sum"), std::string_view("_count")}) {
    out += name;
    out += part;
    if (!labels.empty()) {
      out += '{';
      out += labels;
      out += '}';
    }
    out += ' ';
    if (part == "_sum") {
      seconds(out, sum_ns_.get());
    } else {
      out += std::to_string(cumulative);
    }
    out += '\n';
  }
}

void metric_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ");
  out.append(name).append(" ").append(type).append("\n");
}

}  // namespace pgwarden::core
