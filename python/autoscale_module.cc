// The Python module `autoscale`: the real scaling core (the goal and the agent's state machine)
// and the fleet simulator, for people who tune policy in Python. A thin layer: every computation
// is the C++ library's; this file converts types and nothing else.
//
// Conventions: times and durations are float seconds (a State's `now` counts from any epoch the
// caller likes, as long as it is consistent); resources are Resources(milli_cpu, memory_bytes);
// the goal's deciding signal is its name ("cpu", "memory", ...). A non-OK absl::Status becomes a
// Python exception with the same message: ValueError for invalid arguments, FileNotFoundError for
// missing files, RuntimeError otherwise.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/operators.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "autoscale/api/config.pb.h"
#include "autoscale/base/proto_file.h"
#include "autoscale/base/units.h"
#include "autoscale/core/config.h"
#include "autoscale/core/config_proto.h"
#include "autoscale/core/goal.h"
#include "autoscale/core/resources.h"
#include "autoscale/core/state.h"
#include "autoscale/sim/report.h"
#include "autoscale/sim/simulation.h"
#include "autoscale/sim/trace.h"
#include "autoscale/sim/workload.h"

namespace py = pybind11;

namespace autoscale::python {
namespace {

using core::Resources;

// --- errors and units --------------------------------------------------------------------------

[[noreturn]] void Raise(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      throw py::value_error(std::string(status.message()));
    case absl::StatusCode::kNotFound:
      PyErr_SetString(PyExc_FileNotFoundError, std::string(status.message()).c_str());
      throw py::error_already_set();
    default:
      throw std::runtime_error(std::string(status.message()));
  }
}

void Check(const absl::Status& status) {
  if (!status.ok()) Raise(status);
}

template <typename T>
T Value(absl::StatusOr<T> v) {
  if (!v.ok()) Raise(v.status());
  return *std::move(v);
}

double Seconds(absl::Duration d) { return absl::ToDoubleSeconds(d); }

absl::Duration FromSeconds(double s, const char* what) {
  if (!std::isfinite(s)) throw py::value_error(absl::StrCat(what, ": ", s, " is not finite"));
  return absl::Seconds(s);
}

absl::Time At(double s) { return absl::UnixEpoch() + FromSeconds(s, "now"); }

std::optional<double> OptSeconds(const std::optional<absl::Duration>& d) {
  if (!d) return std::nullopt;
  return Seconds(*d);
}

// A duration field as a float-seconds property.
template <typename C>
void DurationProperty(py::class_<C>& cls, const char* name, absl::Duration C::*field) {
  cls.def_property(
      name, [field](const C& c) { return Seconds(c.*field); },
      [field, name](C& c, double s) { c.*field = FromSeconds(s, name); });
}

// --- NumPy -------------------------------------------------------------------------------------

// A 1-D view of `count` elements of type T starting at `data`, `stride` bytes apart, that keeps
// `owner` (the Python object owning the memory) alive: no copy.
template <typename T>
py::array_t<T> View(const T* data, size_t count, size_t stride, py::handle owner) {
  py::array_t<T> a({count}, {stride}, data, owner);
  // Results are read-only: writing through the view would change what the library recorded.
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

template <typename T>
py::array_t<T> Copy(const std::vector<T>& v) {
  py::array_t<T> a(v.size());
  std::copy(v.begin(), v.end(), a.mutable_data());
  return a;
}

template <typename T, typename F>
py::array_t<T> Column(size_t n, F&& f) {
  py::array_t<T> a(n);
  T* p = a.mutable_data();
  for (size_t i = 0; i < n; ++i) p[i] = f(i);
  return a;
}

// --- workloads and the simulation --------------------------------------------------------------

using TracePtr = std::shared_ptr<sim::Trace>;

// The simulation's results, owned by their Python object (NumPy views point into them).
struct PyResults {
  sim::Results results;
};

// Reference JSON (the files of examples/simulate --config) to a validated ScalingConfig.
core::ScalingConfig ScalingConfigFromJson(const std::string& text) {
  api::v1::ScalingConfig proto;
  Check(ParseJsonProto(text, proto, "scaling config JSON"));
  return Value(core::ResolveScalingConfig(proto));
}

std::vector<sim::SimVm> MakeVms(const sim::SimConfig& config, const TracePtr& trace,
                                const std::optional<sim::WorkloadMix>& mix, int vms) {
  if ((trace != nullptr) == mix.has_value()) {
    throw py::value_error("Simulation: give exactly one of trace= and mix=");
  }
  std::vector<sim::SimVm> out;
  if (trace != nullptr) {
    size_t n = vms > 0 ? std::min<size_t>(vms, trace->vms.size()) : trace->vms.size();
    for (size_t i = 0; i < n; ++i) {
      out.push_back({trace->vms[i].name, sim::NewTraceWorkload(trace, i)});
    }
    return out;
  }
  if (vms <= 0) throw py::value_error("Simulation: vms must be > 0 with mix=");
  Check(sim::ValidateWorkingSetDistribution(mix->working_set));
  for (auto& w : sim::MakeWorkloads(*mix, vms, config.seed)) {
    out.push_back({absl::StrCat("vm-", out.size()), std::move(w)});
  }
  return out;
}

class PySimulation {
 public:
  PySimulation(const sim::SimConfig& config, TracePtr trace, std::optional<sim::WorkloadMix> mix,
               int vms) {
    std::vector<sim::SimVm> v = MakeVms(config, trace, mix, vms);
    py::gil_scoped_release release;
    sim_ = Value(sim::Simulation::Create(config, std::move(v)));
  }

  void Run() {
    Live();
    absl::Status s;
    {
      py::gil_scoped_release release;
      s = sim_->Run();
    }
    Check(s);
  }
  void RunUntil(double t) {
    Live();
    absl::Duration d = FromSeconds(t, "run_until");
    absl::Status s;
    {
      py::gil_scoped_release release;
      s = sim_->RunUntil(d);
    }
    Check(s);
  }
  double now() {
    Live();
    return Seconds(sim_->now());
  }
  size_t vm_count() {
    Live();
    return sim_->vm_count();
  }
  std::unique_ptr<PyResults> Results() {
    Live();
    auto r = std::make_unique<PyResults>();
    r->results = sim_->TakeResults();
    sim_.reset();
    return r;
  }

 private:
  void Live() const {
    if (sim_ == nullptr) {
      throw std::runtime_error("Simulation: results() was called; the simulation is over");
    }
  }
  std::unique_ptr<sim::Simulation> sim_;
};

py::dict SummaryDict(const sim::Results& r, const std::string& label) {
  std::string json = sim::SummaryJson({{label, sim::Summarize(r)}});
  py::object loads = py::module_::import("json").attr("loads");
  return loads(json)["runs"][py::int_(0)].cast<py::dict>();
}

// Per-VM figures as columns.
py::dict VmColumns(const sim::Results& r) {
  const auto& v = r.vms;
  size_t n = v.size();
  py::dict d;
  py::list names, workloads, nodes;
  for (const auto& vm : v) {
    names.append(vm.name);
    workloads.append(vm.workload);
    nodes.append(vm.node);
  }
  d["name"] = names;
  d["workload"] = workloads;
  d["node"] = nodes;
  auto f = [&](auto get) { return Column<double>(n, [&](size_t i) { return get(v[i]); }); };
  auto i64 = [&](auto get) { return Column<int64_t>(n, [&](size_t i) { return get(v[i]); }); };
  using V = sim::VmResult;
  d["cu_hours_allocated"] = f([](const V& x) { return x.cu_hours_allocated; });
  d["cu_hours_demand"] = f([](const V& x) { return x.cu_hours_demand; });
  d["static_peak_cu"] = i64([](const V& x) { return int64_t{x.static_peak_cu}; });
  d["under_provisioned_s"] = f([](const V& x) { return Seconds(x.under_provisioned); });
  d["cpu_short_s"] = f([](const V& x) { return Seconds(x.cpu_short); });
  d["memory_short_s"] = f([](const V& x) { return Seconds(x.memory_short); });
  d["final_milli_cpu"] = i64([](const V& x) { return x.final_size.milli_cpu; });
  d["final_memory_bytes"] = i64([](const V& x) { return x.final_size.memory_bytes; });
  d["peak_milli_cpu"] = i64([](const V& x) { return x.peak_size.milli_cpu; });
  d["peak_memory_bytes"] = i64([](const V& x) { return x.peak_size.memory_bytes; });
  d["memory_shortfalls"] = i64([](const V& x) { return x.memory_shortfalls; });
  d["metrics"] = i64([](const V& x) { return x.metrics; });
  d["goal_by_cpu"] = i64([](const V& x) { return x.goal_by_cpu; });
  d["goal_by_memory"] = i64([](const V& x) { return x.goal_by_memory; });
  d["goal_by_memory_total"] = i64([](const V& x) { return x.goal_by_memory_total; });
  d["goal_by_lfc"] = i64([](const V& x) { return x.goal_by_lfc; });
  d["scheduler_requests"] = i64([](const V& x) { return x.scheduler_requests; });
  d["denials"] = i64([](const V& x) { return x.denials; });
  d["upscales"] = i64([](const V& x) { return x.upscales; });
  d["downscales"] = i64([](const V& x) { return x.downscales; });
  d["migrations"] = i64([](const V& x) { return x.migrations; });
  d["reactions"] = i64([](const V& x) { return static_cast<int64_t>(x.reaction_times.size()); });
  d["reactions_abandoned"] = i64([](const V& x) { return x.reactions_abandoned; });
  return d;
}

// Every reaction time (seconds) and the index of its VM.
py::tuple ReactionTimes(const sim::Results& r) {
  std::vector<double> s;
  std::vector<uint32_t> vm;
  for (size_t i = 0; i < r.vms.size(); ++i) {
    for (absl::Duration d : r.vms[i].reaction_times) {
      s.push_back(Seconds(d));
      vm.push_back(static_cast<uint32_t>(i));
    }
  }
  return py::make_tuple(Copy(s), Copy(vm));
}

// Node samples: the fleet's sums (1-D), or every node (2-D: samples x nodes).
py::dict NodeSeries(const sim::Results& r, bool fleet) {
  const auto& ns = r.node_series;
  size_t n = ns.size(), nodes = r.node_names.size();
  py::dict d;
  d["time_s"] = Column<double>(n, [&](size_t i) { return Seconds(ns[i].time); });
  auto put = [&](const char* name, auto get) {
    if (fleet) {
      d[name] = Column<double>(n, [&](size_t i) {
        double sum = 0;
        for (size_t k = 0; k < nodes; ++k) sum += get(ns[i], k);
        return sum;
      });
    } else {
      py::array_t<double> a({n, nodes});
      auto m = a.mutable_unchecked<2>();
      for (size_t i = 0; i < n; ++i) {
        for (size_t k = 0; k < nodes; ++k) m(i, k) = get(ns[i], k);
      }
      d[name] = a;
    }
  };
  using S = sim::NodeSample;
  // A sample's per-node vectors may be empty where a quantity was not recorded.
  auto at = [](const auto& v, size_t k) { return k < v.size() ? v[k] : decltype(v[k]){}; };
  put("reserved_milli_cpu",
      [&](const S& s, size_t k) { return double(at(s.reserved, k).milli_cpu); });
  put("reserved_memory_bytes",
      [&](const S& s, size_t k) { return double(at(s.reserved, k).memory_bytes); });
  put("allocated_milli_cpu",
      [&](const S& s, size_t k) { return double(at(s.allocated, k).milli_cpu); });
  put("allocated_memory_bytes",
      [&](const S& s, size_t k) { return double(at(s.allocated, k).memory_bytes); });
  put("demand_milli_cpu", [&](const S& s, size_t k) { return at(s.demand, k).milli_cpu; });
  put("demand_memory_bytes", [&](const S& s, size_t k) { return at(s.demand, k).memory_bytes; });
  put("used_milli_cpu", [&](const S& s, size_t k) { return at(s.used, k).milli_cpu; });
  put("used_memory_bytes", [&](const S& s, size_t k) { return at(s.used, k).memory_bytes; });
  put("shortage_milli_cpu", [&](const S& s, size_t k) { return at(s.shortage, k).milli_cpu; });
  put("shortage_memory_bytes",
      [&](const S& s, size_t k) { return at(s.shortage, k).memory_bytes; });
  if (!fleet) {
    py::list names;
    for (const auto& name : r.node_names) names.append(name);
    d["node"] = names;
  }
  return d;
}

// A recorded VM's series: views into the results (no copy), except time.
py::dict VmSeriesDict(const sim::VmSeries& s, py::handle owner) {
  py::dict d;
  size_t n = s.time.size();
  d["vm"] = s.vm;
  d["time_s"] = Column<double>(n, [&](size_t i) { return Seconds(s.time[i]); });
  static_assert(sizeof(sim::Demand) == 3 * sizeof(int64_t));
  static_assert(sizeof(Resources) == 2 * sizeof(int64_t));
  const sim::Demand* dem = s.demand.data();
  const Resources* al = s.allocated.data();
  d["demand_milli_cpu"] = View<int64_t>(&dem->milli_cpu, n, sizeof(sim::Demand), owner);
  d["demand_memory_bytes"] = View<int64_t>(&dem->memory_bytes, n, sizeof(sim::Demand), owner);
  d["demand_lfc_working_set_bytes"] =
      View<int64_t>(&dem->lfc_working_set_bytes, n, sizeof(sim::Demand), owner);
  d["allocated_milli_cpu"] = View<int64_t>(&al->milli_cpu, n, sizeof(Resources), owner);
  d["allocated_memory_bytes"] = View<int64_t>(&al->memory_bytes, n, sizeof(Resources), owner);
  for (auto [name, v] : {std::pair{"goal_cu", &s.goal_cu}, std::pair{"cpu_cu", &s.cpu_cu},
                         std::pair{"memory_cu", &s.memory_cu}, std::pair{"lfc_cu", &s.lfc_cu}}) {
    d[name] = View<double>(v->data(), v->size(), sizeof(double), owner);
  }
  return d;
}

sim::Trace TraceFromArrays(
    py::array_t<double, py::array::c_style | py::array::forcecast> time_s,
    const std::vector<std::string>& vm,
    py::array_t<double, py::array::c_style | py::array::forcecast> cpu_cores,
    py::array_t<double, py::array::c_style | py::array::forcecast> memory_mib,
    std::optional<py::array_t<double, py::array::c_style | py::array::forcecast>> lfc,
    const std::string& source) {
  for (auto* a : {&time_s, &cpu_cores, &memory_mib}) {
    if (a->ndim() != 1) throw py::value_error(absl::StrCat(source, ": the columns must be 1-D"));
  }
  auto span = [](const py::array_t<double, py::array::c_style | py::array::forcecast>& a) {
    return std::span<const double>(a.data(), a.size());
  };
  std::span<const double> l;
  if (lfc) {
    if (lfc->ndim() != 1) throw py::value_error(absl::StrCat(source, ": the columns must be 1-D"));
    l = span(*lfc);
  }
  absl::StatusOr<sim::Trace> t;
  {
    py::gil_scoped_release release;
    t = sim::TraceFromColumns(span(time_s), vm, span(cpu_cores), span(memory_mib), l, source);
  }
  return Value(std::move(t));
}

// --- the module --------------------------------------------------------------------------------

void Define(py::module_& m) {
  m.doc() =
      "The autoscaling core (goal, state machine) and the fleet simulator. Times are float "
      "seconds; resources are milli-CPU and bytes.";
  // Simulations take many locks; Abseil's deadlock detector would dominate (simulation.h).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  m.attr("KiB") = kKiB;
  m.attr("MiB") = kMiB;
  m.attr("GiB") = kGiB;

  py::class_<Resources>(m, "Resources")
      .def(py::init([](int64_t milli_cpu, int64_t memory_bytes) {
             return Resources{milli_cpu, memory_bytes};
           }),
           py::arg("milli_cpu") = 0, py::arg("memory_bytes") = 0)
      .def_static(
          "parse", [](const std::string& s) { return Value(core::ParseResources(s, "Resources")); },
          "Parses \"250m/1GiB\".")
      .def_readwrite("milli_cpu", &Resources::milli_cpu)
      .def_readwrite("memory_bytes", &Resources::memory_bytes)
      .def(py::self == py::self)
      .def("__repr__", [](const Resources& r) { return "Resources(" + r.ToString() + ")"; })
      .def("__str__", &Resources::ToString);

  py::class_<core::Bounds>(m, "Bounds")
      .def(py::init([](uint32_t min_cu, uint32_t max_cu) {
             return core::Bounds{min_cu, max_cu};
           }),
           py::arg("min_cu"), py::arg("max_cu"))
      .def_readwrite("min_cu", &core::Bounds::min_cu)
      .def_readwrite("max_cu", &core::Bounds::max_cu)
      .def("__repr__", [](const core::Bounds& b) {
        return absl::StrCat("Bounds(", b.min_cu, ", ", b.max_cu, ")");
      });

  py::class_<core::ScalingConfig> scaling(m, "ScalingConfig",
                                          "The goal's formulas (reference defaults).");
  scaling.def(py::init<>())
      .def_static("from_json", &ScalingConfigFromJson,
                  "Reference JSON (examples/simulate --config files), validated.")
      .def("validate", [](const core::ScalingConfig& c) { Check(core::ValidateScalingConfig(c)); })
      .def_readwrite("load_average_fraction_target",
                     &core::ScalingConfig::load_average_fraction_target)
      .def_readwrite("memory_usage_fraction_target",
                     &core::ScalingConfig::memory_usage_fraction_target)
      .def_readwrite("memory_total_fraction_target",
                     &core::ScalingConfig::memory_total_fraction_target)
      .def_readwrite("enable_lfc_metrics", &core::ScalingConfig::enable_lfc_metrics)
      .def_readwrite("lfc_use_largest_window", &core::ScalingConfig::lfc_use_largest_window)
      .def_readwrite("lfc_to_memory_ratio", &core::ScalingConfig::lfc_to_memory_ratio)
      .def_readwrite("lfc_window_size_minutes", &core::ScalingConfig::lfc_window_size_minutes)
      .def_readwrite("lfc_min_wait_before_downscale_minutes",
                     &core::ScalingConfig::lfc_min_wait_before_downscale_minutes)
      .def_readwrite("cpu_stable_zone_ratio", &core::ScalingConfig::cpu_stable_zone_ratio)
      .def_readwrite("cpu_mixed_zone_ratio", &core::ScalingConfig::cpu_mixed_zone_ratio)
      .def_readwrite("max_downscale_step_cu", &core::ScalingConfig::max_downscale_step_cu);
  DurationProperty(scaling, "downscale_stabilization_window",
                   &core::ScalingConfig::downscale_stabilization_window);

  py::class_<core::Timings> timings(m, "Timings", "The agent's timers (reference defaults).");
  timings.def(py::init<>());
  DurationProperty(timings, "scheduler_request_at_least_every",
                   &core::Timings::scheduler_request_at_least_every);
  DurationProperty(timings, "scheduler_retry_failed_request",
                   &core::Timings::scheduler_retry_failed_request);
  DurationProperty(timings, "scheduler_retry_denied_upscale",
                   &core::Timings::scheduler_retry_denied_upscale);
  DurationProperty(timings, "scheduler_request_timeout", &core::Timings::scheduler_request_timeout);
  DurationProperty(timings, "monitor_response_timeout", &core::Timings::monitor_response_timeout);
  DurationProperty(timings, "monitor_retry_failed_request",
                   &core::Timings::monitor_retry_failed_request);
  DurationProperty(timings, "monitor_retry_denied_downscale",
                   &core::Timings::monitor_retry_denied_downscale);
  DurationProperty(timings, "monitor_requested_upscale_valid",
                   &core::Timings::monitor_requested_upscale_valid);
  DurationProperty(timings, "vm_request_timeout", &core::Timings::vm_request_timeout);
  DurationProperty(timings, "vm_retry_failed_request", &core::Timings::vm_retry_failed_request);

  py::class_<core::SystemMetrics>(m, "SystemMetrics")
      .def(py::init([](double l1, double l5, double usage, double cached) {
             return core::SystemMetrics{l1, l5, usage, cached};
           }),
           py::arg("load_avg_1m") = 0.0, py::arg("load_avg_5m") = 0.0,
           py::arg("memory_usage_bytes") = 0.0, py::arg("memory_cached_bytes") = 0.0)
      .def_readwrite("load_avg_1m", &core::SystemMetrics::load_avg_1m)
      .def_readwrite("load_avg_5m", &core::SystemMetrics::load_avg_5m)
      .def_readwrite("memory_usage_bytes", &core::SystemMetrics::memory_usage_bytes)
      .def_readwrite("memory_cached_bytes", &core::SystemMetrics::memory_cached_bytes);

  py::class_<core::LfcMetrics>(m, "LfcMetrics",
                               "working_set_pages[i]: distinct 8 KiB pages in the last i+1 min.")
      .def(py::init([](std::vector<double> pages) { return core::LfcMetrics{std::move(pages)}; }),
           py::arg("working_set_pages"))
      .def_readwrite("working_set_pages", &core::LfcMetrics::working_set_pages);

  py::class_<core::Goal>(m, "Goal", "A goal and its breakdown (sub-goals in compute units).")
      .def_readonly("goal_cu", &core::Goal::goal_cu)
      .def_property_readonly("decided_by",
                             [](const core::Goal& g) { return core::SignalName(g.decided_by); })
      .def_readonly("cpu_cu", &core::Goal::cpu_cu)
      .def_readonly("memory_cu", &core::Goal::memory_cu)
      .def_readonly("memory_total_cu", &core::Goal::memory_total_cu)
      .def_readonly("lfc_cu", &core::Goal::lfc_cu)
      .def_readonly("load_average", &core::Goal::load_average)
      .def_readonly("lfc_estimate_pages", &core::Goal::lfc_estimate_pages)
      .def_readonly("lfc_projected_pages", &core::Goal::lfc_projected_pages)
      .def_readonly("has_all_metrics", &core::Goal::has_all_metrics)
      .def("__repr__", [](const core::Goal& g) {
        return absl::StrCat("Goal(", g.goal_cu, " CU, decided by ", core::SignalName(g.decided_by),
                            ")");
      });

  m.def(
      "compute_goal",
      [](const core::ScalingConfig& config, std::optional<core::SystemMetrics> metrics,
         std::optional<core::LfcMetrics> lfc, const Resources& compute_unit) {
        Check(core::ValidateScalingConfig(config));
        return core::ComputeGoal(config, compute_unit, metrics ? &*metrics : nullptr,
                                 lfc ? &*lfc : nullptr);
      },
      py::arg("config"), py::arg("metrics"), py::arg("lfc") = py::none(),
      py::arg("compute_unit") = Resources{250, kGiB},
      "The goal of `metrics` (and `lfc` with config.enable_lfc_metrics), with its breakdown.");

  // --- the state machine ---
  py::class_<core::PermitRequest>(m, "PermitRequest")
      .def_readonly("last_permit", &core::PermitRequest::last_permit)
      .def_readonly("target", &core::PermitRequest::target);
  py::class_<core::VmResize>(m, "VmResize")
      .def_readonly("current", &core::VmResize::current)
      .def_readonly("target", &core::VmResize::target);
  py::class_<core::MonitorUpscale>(m, "MonitorUpscale")
      .def_readonly("current", &core::MonitorUpscale::current)
      .def_readonly("target", &core::MonitorUpscale::target);
  py::class_<core::MonitorDownscale>(m, "MonitorDownscale")
      .def_readonly("current", &core::MonitorDownscale::current)
      .def_readonly("target", &core::MonitorDownscale::target);
  py::class_<core::ActionSet>(m, "ActionSet")
      .def_readonly("id", &core::ActionSet::id)
      .def_property_readonly("wait", [](const core::ActionSet& a) { return OptSeconds(a.wait); })
      .def_readonly("scheduler_request", &core::ActionSet::scheduler_request)
      .def_readonly("vm_resize", &core::ActionSet::vm_resize)
      .def_readonly("monitor_upscale", &core::ActionSet::monitor_upscale)
      .def_readonly("monitor_downscale", &core::ActionSet::monitor_downscale);
  py::class_<core::Desired>(m, "Desired")
      .def_readonly("resources", &core::Desired::resources)
      .def_readonly("goal_cu", &core::Desired::goal_cu)
      .def_property_readonly("decided_by",
                             [](const core::Desired& d) { return core::SignalName(d.decided_by); })
      .def_property_readonly("expires",
                             [](const core::Desired& d) { return OptSeconds(d.expires); })
      .def_readonly("goal", &core::Desired::goal);

  using core::State;
  py::class_<State>(m, "State",
                    "The agent's decision state machine for one VM: ask next_actions(now), carry "
                    "the actions out, report back with the ..._started/succeeded/failed methods.")
      .def(py::init([](const Resources& compute_unit, const Resources& current,
                       const core::Bounds& bounds, const core::ScalingConfig& scaling,
                       const core::Timings& timings) {
             Check(core::ValidateScalingConfig(scaling));
             if (compute_unit.milli_cpu <= 0 || compute_unit.memory_bytes <= 0) {
               throw py::value_error("State: compute_unit must have both fields > 0");
             }
             if (bounds.min_cu < 1 || bounds.min_cu > bounds.max_cu) {
               throw py::value_error("State: bounds must satisfy 1 <= min_cu <= max_cu");
             }
             return std::make_unique<State>(core::StateConfig{compute_unit, scaling, timings},
                                            current, bounds);
           }),
           py::arg("compute_unit"), py::arg("current"), py::arg("bounds"),
           py::arg("scaling") = core::ScalingConfig{}, py::arg("timings") = core::Timings{})
      .def("next_actions", [](const State& s, double now) { return s.NextActions(At(now)); })
      .def("desired", [](const State& s, double now) { return s.DesiredResources(At(now)); })
      .def_property_readonly("generation", &State::generation)
      .def_property_readonly("goal", &State::goal)
      .def_property_readonly("current", &State::current)
      .def_property_readonly("bounds", &State::bounds)
      .def_property_readonly("migrating", &State::migrating)
      .def_property_readonly("permit", &State::permit)
      .def_property_readonly("monitor_approved", &State::monitor_approved)
      .def("set_migrating", &State::SetMigrating)
      .def("update_bounds", &State::UpdateBounds)
      .def("update_system_metrics",
           [](State& s, double now, const core::SystemMetrics& m) {
             s.UpdateSystemMetrics(At(now), m);
           })
      .def("update_lfc_metrics",
           [](State& s, double now, const core::LfcMetrics& m) { s.UpdateLfcMetrics(At(now), m); })
      .def("scheduler_request_started",
           [](State& s, double now, const Resources& r) { s.SchedulerRequestStarted(At(now), r); })
      .def(
          "scheduler_request_succeeded",
          [](State& s, double now, const Resources& permit) {
            Check(s.SchedulerRequestSucceeded(At(now), permit));
          },
          "Raises ValueError for a permit the state refuses (it records a failed request).")
      .def("scheduler_request_failed",
           [](State& s, double now) { s.SchedulerRequestFailed(At(now)); })
      .def("vm_resize_started",
           [](State& s, double now, const Resources& r) { s.VmResizeStarted(At(now), r); })
      .def("vm_resize_succeeded",
           [](State& s, double now, const Resources& r) { s.VmResizeSucceeded(At(now), r); })
      .def(
          "vm_resize_failed",
          [](State& s, double now, std::optional<Resources> at) { s.VmResizeFailed(At(now), at); },
          py::arg("now"), py::arg("now_at") = py::none())
      .def("monitor_connected", [](State& s, double now) { s.MonitorConnected(At(now)); })
      .def("monitor_disconnected", &State::MonitorDisconnected)
      .def("monitor_upscale_requested",
           [](State& s, double now) { s.MonitorUpscaleRequested(At(now)); })
      .def("monitor_upscale_started",
           [](State& s, double now, const Resources& r) { s.MonitorUpscaleStarted(At(now), r); })
      .def("monitor_upscale_succeeded",
           [](State& s, double now) { s.MonitorUpscaleSucceeded(At(now)); })
      .def("monitor_upscale_failed", [](State& s, double now) { s.MonitorUpscaleFailed(At(now)); })
      .def("monitor_downscale_started",
           [](State& s, double now, const Resources& r) { s.MonitorDownscaleStarted(At(now), r); })
      .def("monitor_downscale_approved",
           [](State& s, double now) { s.MonitorDownscaleApproved(At(now)); })
      .def("monitor_downscale_denied",
           [](State& s, double now) { s.MonitorDownscaleDenied(At(now)); })
      .def("monitor_downscale_failed",
           [](State& s, double now) { s.MonitorDownscaleFailed(At(now)); });

  // --- workloads ---
  py::class_<sim::WorkloadMix>(m, "WorkloadMix",
                               "Generated workloads: kinds with weights and working-set draws.")
      .def(py::init([](const std::string& text) { return Value(sim::ParseWorkloadMix(text)); }),
           py::arg("text") = "diurnal:4,bursty:2,ramp:1,spike:1,idle:2")
      .def_property(
          "lfc_base_gib",
          [](const sim::WorkloadMix& w) {
            return py::make_tuple(w.working_set.base_gib_min, w.working_set.base_gib_max);
          },
          [](sim::WorkloadMix& w, std::pair<double, double> r) {
            w.working_set.base_gib_min = r.first;
            w.working_set.base_gib_max = r.second;
          })
      .def_property(
          "lfc_per_core_gib",
          [](const sim::WorkloadMix& w) {
            return py::make_tuple(w.working_set.per_core_gib_min, w.working_set.per_core_gib_max);
          },
          [](sim::WorkloadMix& w, std::pair<double, double> r) {
            w.working_set.per_core_gib_min = r.first;
            w.working_set.per_core_gib_max = r.second;
          });

  py::class_<sim::Trace, std::shared_ptr<sim::Trace>>(m, "Trace", "Recorded workloads.")
      .def_static(
          "read_csv", [](const std::string& path) { return Value(sim::ReadTraceCsv(path)); },
          py::arg("path"))
      .def_static(
          "parse_csv",
          [](const std::string& text, const std::string& source) {
            return Value(sim::ParseTraceCsv(text, source));
          },
          py::arg("text"), py::arg("source") = "trace")
      .def_static("from_arrays", &TraceFromArrays, py::arg("time_s"), py::arg("vm"),
                  py::arg("cpu_cores"), py::arg("memory_mib"),
                  py::arg("lfc_working_set_mib") = py::none(), py::arg("source") = "arrays",
                  "Sample i is (time_s[i], vm[i], cpu_cores[i], memory_mib[i]).")
      .def_property_readonly("vm_names",
                             [](const sim::Trace& t) {
                               std::vector<std::string> names;
                               for (const auto& vm : t.vms) names.push_back(vm.name);
                               return names;
                             })
      .def_property_readonly("end_s", [](const sim::Trace& t) { return Seconds(t.end); })
      .def("__len__", [](const sim::Trace& t) { return t.vms.size(); });

  // --- the simulation ---
  py::class_<sim::Latencies> lat(m, "Latencies");
  lat.def(py::init<>())
      .def_readwrite("migration_bytes_per_second", &sim::Latencies::migration_bytes_per_second)
      .def_readwrite("jitter", &sim::Latencies::jitter);
  DurationProperty(lat, "scheduler", &sim::Latencies::scheduler);
  DurationProperty(lat, "monitor", &sim::Latencies::monitor);
  DurationProperty(lat, "resize", &sim::Latencies::resize);
  DurationProperty(lat, "per_vcpu", &sim::Latencies::per_vcpu);
  DurationProperty(lat, "per_gib", &sim::Latencies::per_gib);
  DurationProperty(lat, "migration_setup", &sim::Latencies::migration_setup);

  py::class_<sim::FailureRates>(m, "FailureRates")
      .def(py::init<>())
      .def_readwrite("scheduler", &sim::FailureRates::scheduler)
      .def_readwrite("vm_resize", &sim::FailureRates::vm_resize)
      .def_readwrite("monitor", &sim::FailureRates::monitor)
      .def_readwrite("migration", &sim::FailureRates::migration);

  py::class_<sim::SimConfig> sc(m, "SimConfig", "A simulation's fleet, policy and recording.");
  sc.def(py::init<>())
      .def("validate", [](const sim::SimConfig& c) { Check(sim::ValidateSimConfig(c)); })
      .def_readwrite("seed", &sim::SimConfig::seed)
      .def_readwrite("threads", &sim::SimConfig::threads)
      .def_readwrite("step_every_vm", &sim::SimConfig::step_every_vm)
      .def_readwrite("nodes", &sim::SimConfig::nodes)
      .def_readwrite("node_capacity", &sim::SimConfig::node_capacity)
      .def_readwrite("watermark", &sim::SimConfig::watermark)
      .def_property(
          "placement",
          [](const sim::SimConfig& c) {
            return c.placement == sim::InitialPlacement::kSpread ? "spread" : "ledger";
          },
          [](sim::SimConfig& c, const std::string& p) {
            if (p == "ledger") {
              c.placement = sim::InitialPlacement::kLedger;
            } else if (p == "spread") {
              c.placement = sim::InitialPlacement::kSpread;
            } else {
              throw py::value_error("placement: \"" + p + "\" is not ledger or spread");
            }
          })
      .def_readwrite("compute_unit", &sim::SimConfig::compute_unit)
      .def_readwrite("bounds", &sim::SimConfig::bounds)
      .def_readwrite("scaling", &sim::SimConfig::scaling)
      .def_readwrite("timings", &sim::SimConfig::timings)
      .def_readwrite("lfc_new_page_share", &sim::SimConfig::lfc_new_page_share)
      .def_readwrite("latencies", &sim::SimConfig::latencies)
      .def_readwrite("failures", &sim::SimConfig::failures)
      .def_readwrite("series_vms", &sim::SimConfig::series_vms)
      .def_readwrite("check_invariants", &sim::SimConfig::check_invariants);
  DurationProperty(sc, "duration", &sim::SimConfig::duration);
  DurationProperty(sc, "step", &sim::SimConfig::step);
  DurationProperty(sc, "metrics_interval", &sim::SimConfig::metrics_interval);
  DurationProperty(sc, "migration_check_interval", &sim::SimConfig::migration_check_interval);
  DurationProperty(sc, "lfc_metrics_interval", &sim::SimConfig::lfc_metrics_interval);
  DurationProperty(sc, "node_series_interval", &sim::SimConfig::node_series_interval);

  py::class_<PyResults>(m, "Results",
                        "A run's results. Arrays of recorded VMs' series are read-only views "
                        "into these results (no copy).")
      .def(
          "summary",
          [](const PyResults& r, const std::string& label) {
            return SummaryDict(r.results, label);
          },
          py::arg("label") = "run", "The fleet's totals (the JSON of --summary_json) as a dict.")
      .def_property_readonly(
          "vms", [](const PyResults& r) { return VmColumns(r.results); },
          "Per-VM figures: a dict of columns.")
      .def_property_readonly(
          "reaction_times", [](const PyResults& r) { return ReactionTimes(r.results); },
          "(seconds, vm index) of every reaction: grow wished -> grown.")
      .def_property_readonly("fleet_series",
                             [](const PyResults& r) { return NodeSeries(r.results, true); })
      .def_property_readonly("node_series",
                             [](const PyResults& r) { return NodeSeries(r.results, false); })
      .def_property_readonly("vm_series",
                             [](py::object self) {
                               const PyResults& r = self.cast<const PyResults&>();
                               py::list out;
                               for (const auto& s : r.results.vm_series) {
                                 out.append(VmSeriesDict(s, self));
                               }
                               return out;
                             })
      .def_property_readonly("node_names", [](const PyResults& r) { return r.results.node_names; })
      .def_property_readonly("agent_asks", [](const PyResults& r) { return r.results.agent_asks; })
      .def_property_readonly("vm_steps", [](const PyResults& r) { return r.results.vm_steps; })
      .def("vm_csv", [](const PyResults& r) { return sim::VmCsv(r.results); })
      .def("series_csv", [](const PyResults& r) { return sim::SeriesCsv(r.results); })
      .def(
          "summary_json",
          [](const PyResults& r, const std::string& label) {
            return sim::SummaryJson({{label, sim::Summarize(r.results)}});
          },
          py::arg("label") = "run");

  m.def(
      "html_report",
      [](const std::vector<std::pair<std::string, const PyResults*>>& runs) {
        std::vector<sim::ReportRun> rr;
        for (const auto& [label, r] : runs) {
          if (r == nullptr) throw py::value_error("html_report: a run has no results");
          rr.push_back({.label = label, .results = &r->results});
        }
        return sim::HtmlReport(rr);
      },
      py::arg("runs"), "The HTML report of [(label, results), ...].");

  py::class_<PySimulation>(m, "Simulation",
                           "Simulation(config, trace=..., vms=0) or Simulation(config, "
                           "mix=WorkloadMix(...), vms=N); run(), then results().")
      .def(py::init<const sim::SimConfig&, TracePtr, std::optional<sim::WorkloadMix>, int>(),
           py::arg("config"), py::arg("trace") = nullptr, py::arg("mix") = py::none(),
           py::arg("vms") = 0)
      .def("run", &PySimulation::Run, "Runs to config.duration (releases the GIL).")
      .def("run_until", &PySimulation::RunUntil, py::arg("t"))
      .def_property_readonly("now", &PySimulation::now)
      .def("__len__", &PySimulation::vm_count)
      .def("results", &PySimulation::Results, "The results up to now; ends the simulation.");
}

}  // namespace
}  // namespace autoscale::python

PYBIND11_MODULE(autoscale, m) { autoscale::python::Define(m); }
