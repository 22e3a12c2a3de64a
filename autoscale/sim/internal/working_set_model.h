// The pages a simulated VM touches through its Local File Cache, minute by minute, and the 60
// working-set windows its LFC metrics report (what lfc::WorkingSetEstimator would count on the
// same page stream, exactly: working_set_model_test holds the two together).
//
// In minute m the VM touches W_m distinct pages (its Demand::lfc_working_set_bytes at the
// minute's first step, in 8 KiB pages), all at the start of the minute: `1 - new_share` of them
// are the lowest-numbered pages of one hot set that it keeps revisiting (so a larger hot part
// covers a smaller one), the rest pages it never touched before. The distinct pages of minutes
// k-i..k are then the largest hot part among them plus the sum of their new parts, with no
// sketch and no error; an estimator asked in minute k about the last i+1 minutes sees exactly
// these minutes (their pages were touched at their starts).
//
//   WorkingSetModel model(/*new_share=*/0.05);
//   model.Touch(/*minute=*/0, /*pages=*/100000);
//   model.Touch(1, 120000);
//   model.Windows(1, &windows);   // windows[0]: 120000; windows[1]: 114000 + 5000 + 6000
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <vector>

namespace autoscale::sim {

class WorkingSetModel {
 public:
  static constexpr int kMinutes = 60;
  // Fresh pages are numbered from here up, apart from any hot page (a hot set of 2^40 pages
  // would be 8 PiB, beyond the simulator's limits).
  static constexpr uint64_t kFreshBase = uint64_t{1} << 40;

  explicit WorkingSetModel(double new_share) : new_share_(new_share) {}

  // The VM touches `pages` distinct pages in `minute` (minutes in increasing order; a minute
  // without a call touched nothing).
  void Touch(int64_t minute, int64_t pages) {
    Minute& e = ring_[static_cast<size_t>(minute % kMinutes)];
    e.minute = minute;
    e.fresh = static_cast<int64_t>(std::llround(static_cast<double>(pages) * new_share_));
    e.hot = pages - e.fresh;
    e.fresh_begin = fresh_next_;
    fresh_next_ += static_cast<uint64_t>(e.fresh);
  }

  // out[i]: the distinct pages of minutes minute-i..minute, for i in [0, 60).
  void Windows(int64_t minute, std::vector<double>* out) const {
    out->resize(kMinutes);
    int64_t hot = 0, fresh = 0;
    for (int i = 0; i < kMinutes; ++i) {
      const int64_t m = minute - i;
      if (m >= 0) {
        const Minute& e = ring_[static_cast<size_t>(m % kMinutes)];
        if (e.minute == m) {
          hot = std::max(hot, e.hot);
          fresh += e.fresh;
        }
      }
      (*out)[static_cast<size_t>(i)] = static_cast<double>(hot + fresh);
    }
  }

  // Calls fn(page) for every page touched in `minute` (one of the last 60 recorded): the page
  // stream the windows count.
  template <typename Fn>
  void ForEachPage(int64_t minute, Fn fn) const {
    const Minute& e = ring_[static_cast<size_t>(minute % kMinutes)];
    if (e.minute != minute) return;
    for (int64_t p = 0; p < e.hot; ++p) fn(static_cast<uint64_t>(p));
    for (int64_t p = 0; p < e.fresh; ++p) fn(kFreshBase + e.fresh_begin + static_cast<uint64_t>(p));
  }

 private:
  struct Minute {
    int64_t minute = -1;
    int64_t hot = 0;
    int64_t fresh = 0;
    uint64_t fresh_begin = 0;
  };

  double new_share_;
  std::array<Minute, kMinutes> ring_{};
  uint64_t fresh_next_ = 0;
};

}  // namespace autoscale::sim
