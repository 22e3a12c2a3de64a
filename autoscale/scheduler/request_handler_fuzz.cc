// Fuzzes the scheduler's request handler: the input is a sequence of calls (raw protobuf bytes
// or values picked from the input) against a small ledger. After every call the ledger's
// invariants must hold; at the end its log must rebuild the same ledger. Any crash, sanitizer
// report or broken invariant is a failure.
#include <cstddef>
#include <cstdint>
#include <string>

#include "autoscale/base/units.h"
#include "autoscale/ledger/ledger.h"
#include "autoscale/ledger/memory_store.h"
#include "autoscale/scheduler/request_handler.h"
#include "glog/logging.h"

namespace {

using namespace autoscale;  // NOLINT: a fuzz driver

const char* const kNodes[] = {"n0", "n1", "n2", ""};
const char* const kVms[] = {"a", "b", "c", "d", "e", "f", ""};

class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool empty() const { return p_ == end_; }
  uint8_t Byte() { return p_ == end_ ? 0 : *p_++; }
  int64_t Signed() { return static_cast<int8_t>(Byte()); }
  std::string Bytes(size_t n) {
    n = std::min<size_t>(n, end_ - p_);
    std::string s(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return s;
  }
  template <size_t N>
  const char* Pick(const char* const (&names)[N]) {
    return names[Byte() % N];
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

api::v1::ProtocolVersion Version(Input& in) {
  const uint8_t b = in.Byte();
  return static_cast<api::v1::ProtocolVersion>(b % 8 == 0 ? b / 8 : 1);
}

// An amount near whole CUs: mostly valid, sometimes off by a little, sometimes negative.
api::v1::Resources Amount(Input& in) {
  api::v1::Resources r;
  const int64_t cpu = in.Signed(), mem = in.Signed(), odd = in.Byte();
  r.set_milli_cpu(cpu * 250 + (odd % 5 == 0 ? odd : 0));
  r.set_memory_bytes(mem * kGiB + (odd % 7 == 0 ? odd : 0));
  return r;
}

void Setup(ledger::Ledger& ledger) {
  for (int i = 0; i < 3; ++i) {
    CHECK(ledger
              .RegisterNode({.name = kNodes[i],
                             .total = {4000, 16 * kGiB},
                             .watermark = 0.5,
                             .agent_address = std::string(kNodes[i]) + ":1"})
              .ok());
  }
  for (int i = 0; i < 4; ++i) {
    CHECK(ledger
              .PlaceVm({.name = kVms[i],
                        .bounds = {1, 8},
                        .compute_unit = {250, kGiB},
                        .initial = {250 * (i + 1), kGiB * (i + 1)},
                        .migratable = i % 2 == 0})
              .ok());
  }
}

void Step(scheduler::RequestHandler& h, Input& in) {
  switch (in.Byte() % 13) {
    case 0: {
      api::v1::PermitRequest r;
      if (r.ParseFromString(in.Bytes(in.Byte()))) (void)h.Request(r);
      break;
    }
    case 1: {
      api::v1::PermitRequest r;
      r.set_protocol_version(Version(in));
      r.set_node(in.Pick(kNodes));
      r.set_vm(in.Pick(kVms));
      const uint8_t cu = in.Byte();
      r.mutable_compute_unit()->set_milli_cpu(cu % 4 == 0 ? 500 : 250);
      r.mutable_compute_unit()->set_memory_bytes(cu % 9 == 0 ? 0 : kGiB);
      *r.mutable_resources() = Amount(in);
      if (in.Byte() % 2) *r.mutable_last_permit() = Amount(in);
      (void)h.Request(r);
      break;
    }
    case 2: {
      api::v1::PlaceVmRequest r;
      r.set_protocol_version(Version(in));
      r.set_vm(in.Pick(kVms));
      r.mutable_bounds()->set_min_cu(in.Byte() % 4);
      r.mutable_bounds()->set_max_cu(in.Byte() % 12);
      *r.mutable_initial() = Amount(in);
      r.set_cpu_overcommit_milli(in.Byte() * 16);
      r.set_memory_overcommit_milli(in.Byte() * 16);
      r.set_migratable(in.Byte() % 2);
      if (in.Byte() % 2) r.set_node(in.Pick(kNodes));
      (void)h.PlaceVm(r);
      break;
    }
    case 3: {
      api::v1::ReleaseVmRequest r;
      r.set_protocol_version(Version(in));
      r.set_vm(in.Pick(kVms));
      (void)h.ReleaseVm(r);
      break;
    }
    case 4: {
      api::v1::MigrationOrdersRequest r;
      r.set_protocol_version(Version(in));
      r.set_node(in.Pick(kNodes));
      (void)h.GetMigrationOrders(r);
      break;
    }
    case 5: {
      api::v1::MigrationResult r;
      r.set_protocol_version(Version(in));
      r.set_order_id(in.Byte() % 8);
      r.set_vm(in.Pick(kVms));
      r.set_succeeded(in.Byte() % 2);
      (void)h.ReportMigration(r);
      break;
    }
    case 6: {
      api::v1::RegisterNodeRequest r;
      r.set_protocol_version(Version(in));
      r.set_node(in.Pick(kNodes));
      *r.mutable_total() = Amount(in);
      r.set_watermark(in.Byte() / 200.0);
      (void)h.RegisterNode(r);
      break;
    }
    case 7: {
      api::v1::UpdateNodeRequest r;
      r.set_protocol_version(Version(in));
      r.set_node(in.Pick(kNodes));
      if (in.Byte() % 2) *r.mutable_total() = Amount(in);
      r.set_watermark(in.Byte() / 200.0);
      (void)h.UpdateNode(r);
      break;
    }
    case 8: {
      api::v1::CordonNodeRequest r;
      r.set_protocol_version(Version(in));
      r.set_node(in.Pick(kNodes));
      r.set_cordon(in.Byte() % 2);
      (void)h.CordonNode(r);
      break;
    }
    case 9: {
      api::v1::DrainNodeRequest r;
      r.set_protocol_version(Version(in));
      r.set_node(in.Pick(kNodes));
      (void)h.DrainNode(r);
      break;
    }
    case 10: {
      api::v1::RemoveNodeRequest r;
      r.set_protocol_version(Version(in));
      r.set_node(in.Pick(kNodes));
      r.set_force(in.Byte() % 2);
      (void)h.RemoveNode(r);
      break;
    }
    case 11: {
      api::v1::UpdateVmBoundsRequest r;
      r.set_protocol_version(Version(in));
      r.set_vm(in.Pick(kVms));
      if (in.Byte() % 2) r.set_node(in.Pick(kNodes));
      r.mutable_bounds()->set_min_cu(in.Byte() % 4);
      r.mutable_bounds()->set_max_cu(in.Byte() % 12);
      (void)h.UpdateVmBounds(r);
      break;
    }
    default: {
      api::v1::PlaceVmRequest r;
      if (r.ParseFromString(in.Bytes(in.Byte()))) (void)h.PlaceVm(r);
      break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FLAGS_minloglevel = 2;
  auto store = std::make_unique<ledger::MemoryStore>();
  ledger::MemoryStore* log = store.get();
  std::unique_ptr<ledger::Ledger> ledger =
      *ledger::Ledger::Open({.placement = {.randomize = false}}, std::move(store));
  Setup(*ledger);
  scheduler::RequestHandler handler(*ledger, {250, kGiB});
  Input in(data, size);
  for (int i = 0; i < 64 && !in.empty(); ++i) {
    Step(handler, in);
    const absl::Status s = ledger->CheckInvariants();
    CHECK(s.ok()) << s;
    if (in.Byte() == 0xff) CHECK(ledger->Snapshot().ok());
  }
  auto rebuilt = ledger::Ledger::Open({}, std::make_unique<ledger::MemoryStore>(log->Contents()));
  CHECK(rebuilt.ok()) << rebuilt.status();
  const std::vector<ledger::VmInfo> want = ledger->ListVms(), got = (*rebuilt)->ListVms();
  if (got != want) {
    std::string diff;
    for (const auto& v : want) diff += "\n live:    " + scheduler::ToProto(v).ShortDebugString();
    for (const auto& v : got) diff += "\n rebuilt: " + scheduler::ToProto(v).ShortDebugString();
    LOG(FATAL) << "the log rebuilds another ledger:" << diff;
  }
  return 0;
}
