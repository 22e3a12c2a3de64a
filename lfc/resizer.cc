#include "lfc/resizer.h"

#include "glog/logging.h"

namespace autoscale::lfc {

CallbackResizer::CallbackResizer(Callback callback) : callback_(std::move(callback)) {
  CHECK(callback_) << "CallbackResizer needs a callback";
}

}  // namespace autoscale::lfc
