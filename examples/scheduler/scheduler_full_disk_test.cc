// A full disk, for real: the scheduler daemon's data directory on a small tmpfs that this test
// mounts (as root) and fills. The daemon must not exit or crash-loop: once its log finds the disk
// full it frees its reserve, refuses growth with UNAVAILABLE saying why, still records decreases
// and answers reads; it restarts on the full disk; and once there is room again it grants growth
// again without a restart.
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "autoscale/base/units.h"
#include "autoscale/rpc/scheduler/grpc_client.h"
#include "autoscale/testing/daemon.h"
#include "autoscale/testing/skip.h"
#include "autoscale/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace autoscale {
namespace {

std::string g_scheduler;  // the daemon binary (argv[1])

constexpr int64_t kCuCpu = 250, kCuMem = kGiB;

// A tmpfs of `size` at `path`, unmounted when destroyed (also when the test fails).
class Tmpfs {
 public:
  static std::string Mount(const std::string& path, const std::string& size) {
    ::mkdir(path.c_str(), 0755);
    if (::mount("tmpfs", path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
      return absl::StrCat("mounting a tmpfs at ", path, ": ", std::strerror(errno));
    }
    return "";
  }
  explicit Tmpfs(std::string path) : path_(std::move(path)) {}
  ~Tmpfs() { ::umount2(path_.c_str(), MNT_DETACH); }

 private:
  const std::string path_;
};

api::v1::Resources Cus(int64_t n) {
  api::v1::Resources r;
  r.set_milli_cpu(kCuCpu * n);
  r.set_memory_bytes(kCuMem * n);
  return r;
}

class FullDiskTest : public ::testing::Test {
 protected:
  void Start() {
    absl::StatusOr<std::unique_ptr<testing::Daemon>> daemon = testing::Daemon::Start(
        {.argv = {g_scheduler, "--data_dir=" + mnt_ + "/data", "--listen=" + address(),
                  "--insecure", "--metrics_port=-1", "--recovery_grace=1s",
                  "--balance_interval=100ms", "--snapshot_every=1000000", "--disk_reserve=524288"},
         .log = dir_.path() + "/scheduler.log",
         .ready_file = dir_.path() + "/scheduler.ready"});
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    client_ = *rpc::scheduler::NewGrpcClient(address(), absl::Seconds(10));
  }
  std::string address() const { return "unix:" + dir_.path() + "/s.sock"; }

  absl::StatusOr<api::v1::PermitResponse> Ask(int64_t cus) {
    api::v1::PermitRequest r;
    r.set_node("n");
    r.set_vm("vm");
    r.mutable_compute_unit()->set_milli_cpu(kCuCpu);
    r.mutable_compute_unit()->set_memory_bytes(kCuMem);
    *r.mutable_resources() = Cus(cus);
    return client_->Request(r);
  }
  api::v1::StatusResponse Status() { return *client_->GetStatus(api::v1::StatusRequest()); }

  // Fills the file system with a file of zeros until it is full.
  void Fill() {
    std::ofstream f(mnt_ + "/filler", std::ios::binary);
    const std::string chunk(64 << 10, '\0');
    while (f.write(chunk.data(), chunk.size())) {
    }
    std::ofstream tail(mnt_ + "/filler.tail", std::ios::binary);
    while (tail.put('\0') && tail.flush()) {
    }
  }

  testing::TempDir dir_{"fulldisk"};
  const std::string mnt_ = dir_.path() + "/mnt";
  std::unique_ptr<Tmpfs> tmpfs_;
  std::unique_ptr<testing::Daemon> daemon_;
  std::unique_ptr<rpc::scheduler::SchedulerService> client_;
};

TEST_F(FullDiskTest, GrowthStopsWhileTheDiskIsFullAndResumesWithoutARestart) {
  AUTOSCALE_REQUIRE_ROOT();
  AUTOSCALE_REQUIRE(Tmpfs::Mount(mnt_, "4m"));
  tmpfs_ = std::make_unique<Tmpfs>(mnt_);
  ASSERT_NO_FATAL_FAILURE(Start());

  api::v1::RegisterNodeRequest node;
  node.set_node("n");
  *node.mutable_total() = Cus(64);
  ASSERT_TRUE(client_->RegisterNode(node).ok());
  api::v1::PlaceVmRequest place;
  place.set_vm("vm");
  place.set_node("n");
  place.mutable_bounds()->set_min_cu(1);
  place.mutable_bounds()->set_max_cu(64);
  ASSERT_TRUE(client_->PlaceVm(place).ok());
  ASSERT_TRUE(Ask(2).ok());

  Fill();
  // The log writes into what is left of its last page, then finds the disk full, frees its
  // reserve and goes on; from then on growth is refused.
  absl::Status refused;
  int64_t size = 2;
  for (int i = 0; i < 500 && refused.ok(); ++i) {
    absl::StatusOr<api::v1::PermitResponse> p = Ask(size % 2 == 0 ? size + 1 : size - 1);
    if (p.ok()) {
      size = p->permit().milli_cpu() / kCuCpu;
    } else {
      refused = p.status();
    }
  }
  ASSERT_EQ(refused.code(), absl::StatusCode::kUnavailable) << refused;
  EXPECT_NE(refused.message().find("is full"), std::string::npos) << refused;
  if (size % 2 == 0) {
    ASSERT_TRUE(Ask(size - 1).ok());  // the next step down
    --size;
  }
  EXPECT_TRUE(Status().low_space());
  EXPECT_TRUE(Status().store_error().empty()) << Status().store_error();
  // Decreases are still recorded, and reads answered.
  absl::StatusOr<api::v1::PermitResponse> down = Ask(1);
  ASSERT_TRUE(down.ok()) << down.status();
  EXPECT_EQ(down->permit().milli_cpu(), kCuCpu);
  absl::StatusOr<api::v1::ListNodesResponse> nodes = client_->ListNodes(api::v1::ListRequest());
  ASSERT_TRUE(nodes.ok()) << nodes.status();
  EXPECT_EQ(nodes->nodes(0).reserved().milli_cpu(), kCuCpu);
  EXPECT_TRUE(daemon_->Running()) << "the daemon stays up";

  // A restart on the full disk: it starts (no crash loop), with the decrease kept.
  EXPECT_EQ(daemon_->Stop(), 0) << daemon_->LogTail();
  ASSERT_NO_FATAL_FAILURE(Start());
  absl::StatusOr<api::v1::ListVmsResponse> vms = client_->ListVms(api::v1::ListRequest());
  ASSERT_TRUE(vms.ok()) << vms.status();
  EXPECT_EQ(vms->vms(0).permit().milli_cpu(), kCuCpu) << "the decrease was durable";
  EXPECT_TRUE(Status().low_space());
  absl::SleepFor(absl::Seconds(1.2));  // the recovery grace: growth would be granted now
  EXPECT_EQ(Ask(3).status().code(), absl::StatusCode::kUnavailable);

  // Room again: the reserve is allocated anew (checked every 5 s) and growth is granted.
  ASSERT_EQ(::unlink((mnt_ + "/filler").c_str()), 0);
  absl::StatusOr<api::v1::PermitResponse> grown;
  for (int i = 0; i < 300; ++i) {
    grown = Ask(3);
    if (grown.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(grown.ok()) << grown.status() << "\n" << daemon_->LogTail();
  EXPECT_EQ(grown->permit().milli_cpu(), 3 * kCuCpu);
  EXPECT_FALSE(Status().low_space());
  EXPECT_EQ(daemon_->Stop(), 0) << daemon_->LogTail();
  // The way it went, as the daemon logged it.
  std::ifstream f(dir_.path() + "/scheduler.log");
  const std::string log((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t full = log.find("No space left on device); freed the reserve");
  const size_t room = log.find("has room again; reserve allocated");
  EXPECT_NE(full, std::string::npos) << log;
  EXPECT_NE(room, std::string::npos) << log;
  EXPECT_LT(full, room);
}

}  // namespace
}  // namespace autoscale

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s SCHEDULER_BINARY\n", argv[0]);
    return 2;
  }
  autoscale::g_scheduler = argv[1];
  return RUN_ALL_TESTS();
}
