// The test guest's serial console: a shell without prompt or echo on the VM's serial socket
// (launcher::Vm::serial_path), driven with begin and end markers around each command.
//
//   ASSIGN_OR_RETURN(std::unique_ptr<GuestConsole> console,
//   GuestConsole::Connect(vm->serial_path())); RETURN_IF_ERROR(vm->Resume());
//   RETURN_IF_ERROR(console->WaitFor(kReadyMarker, absl::Seconds(60)));
//   ASSIGN_OR_RETURN(std::string n, console->Run("nproc"));     // "1"
//
// QEMU drops serial output while no client is connected: connect before resuming the VM. One
// console per VM at a time; not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace autoscale::neonvm::guest {

class GuestConsole {
 public:
  static absl::StatusOr<std::unique_ptr<GuestConsole>> Connect(const std::string& serial_path);
  ~GuestConsole();
  GuestConsole(const GuestConsole&) = delete;
  GuestConsole& operator=(const GuestConsole&) = delete;

  // Reads until `text` has arrived; consumes the output up to and including it.
  absl::Status WaitFor(std::string_view text, absl::Duration timeout);

  // Runs `command` in the guest's shell and returns its output (stdout and stderr, '\r' removed,
  // without the final newline). An exit status other than 0 is an error with the output in it.
  absl::StatusOr<std::string> Run(std::string_view command,
                                  absl::Duration timeout = absl::Seconds(30));

  // Output received and not consumed yet (for error messages).
  const std::string& unread() const { return buffer_; }

 private:
  GuestConsole(int fd, std::string path);
  absl::Status ReadMore(absl::Time deadline);

  const int fd_;
  const std::string path_;
  const std::string tag_;  // Makes markers unique to this console.
  int next_command_ = 1;
  std::string buffer_;
};

}  // namespace autoscale::neonvm::guest
