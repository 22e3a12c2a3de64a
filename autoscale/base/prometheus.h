// A small Prometheus registry for the daemons' /metrics pages: counters, gauges and histograms
// with labels, rendered in the text exposition format. Thread-safe.
//
//   Metrics m;
//   m.Describe("autoscaling_agent_resizes_total", Metrics::kCounter, "VM resizes started.");
//   m.Add("autoscaling_agent_resizes_total", {{"vm", "vm1"}, {"result", "ok"}});
//   m.Set("autoscaling_vm_desired_cu", {{"vm", "vm1"}}, 4);
//   m.Observe("autoscaling_agent_scheduler_latency_seconds", {}, 0.002, Metrics::kLatencyBuckets);
//   std::string page = m.Render();
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace autoscale {

class Metrics {
 public:
  enum Type { kCounter, kGauge, kHistogram };
  using Labels = std::vector<std::pair<std::string, std::string>>;
  // Seconds, from 1 ms to 30 s.
  static const std::vector<double> kLatencyBuckets;

  // Gives a metric its type and help line (metrics without one are untyped).
  void Describe(const std::string& name, Type type, const std::string& help);
  void Set(const std::string& name, const Labels& labels, double value);
  void Add(const std::string& name, const Labels& labels, double delta = 1);
  void Observe(const std::string& name, const Labels& labels, double value,
               const std::vector<double>& buckets);
  // Drops every series of `name` whose labels include `label` (a VM that went away).
  void Forget(const std::pair<std::string, std::string>& label);

  std::string Render() const;

 private:
  struct Series {
    double value = 0;
    // Histograms: counts per upper bound (cumulative at render), sum and count.
    std::vector<double> bounds;
    std::vector<double> counts;
    double sum = 0;
  };
  struct Family {
    Type type = kGauge;
    std::string help;
    bool described = false;
    std::map<std::string, Series> series;  // by rendered label set
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
};

// The metrics every daemon's page ends with: process_cpu_seconds_total,
// process_resident_memory_bytes, process_virtual_memory_bytes, process_open_fds,
// process_start_time_seconds (as Prometheus' client libraries name them, read from /proc/self)
// and autoscale_build_info{version} 1. A /proc file that cannot be read leaves its metric out.
std::string ProcessMetricsText();

}  // namespace autoscale
