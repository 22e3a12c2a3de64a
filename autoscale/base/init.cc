#include "autoscale/base/init.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "autoscale/base/version.h"
#include "glog/logging.h"

ABSL_FLAG(std::string, log_format, "text",
          "How log lines are written to stderr: text (glog's) or json (one object per line: ts, "
          "level, caller, msg).");

namespace autoscale {
namespace internal {
std::optional<int> VerbosityFlag();  // verbosity_flag.cc
}  // namespace internal

namespace {

// --log_format=json: each message as one JSON object on stderr, in the field names of the
// reference's logs (zap's: ts, level, caller, msg).
class JsonLogSink : public google::LogSink {
 public:
  void send(google::LogSeverity severity, const char*, const char* base_filename, int line,
            const google::LogMessageTime& time, const char* message, size_t length) override {
    static constexpr const char* kLevels[] = {"info", "warning", "error", "fatal"};
    std::tm utc;
    const time_t seconds = time.timestamp();
    gmtime_r(&seconds, &utc);
    char ts[40];
    const size_t n = std::strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &utc);
    std::snprintf(ts + n, sizeof(ts) - n, ".%06dZ", static_cast<int>(time.usec()));
    std::string out = absl::StrCat("{\"ts\":\"", ts, "\",\"level\":\"",
                                   kLevels[severity >= 0 && severity < 4 ? severity : 3],
                                   "\",\"caller\":\"", Escaped(base_filename), ":", line,
                                   "\",\"msg\":\"", Escaped({message, length}), "\"}\n");
    std::fwrite(out.data(), 1, out.size(), stderr);
    // glog would next write "*** Check failure stack trace: ***" and the trace as plain text;
    // aborting here hands the report to the failure signal handler, whose writer is JSON too.
    if (severity == google::GLOG_FATAL) {
      std::fflush(stderr);
      std::abort();
    }
  }

 private:
  // JSON string contents: quotes, backslashes and control bytes escaped; valid UTF-8 kept; any
  // other byte (a message may quote a peer's or a file's bytes) escaped as the code point of its
  // value, so every line stays valid JSON.
  static std::string Escaped(absl::string_view s) {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      const unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '"' || c == '\\') {
        out += '\\';
        out += static_cast<char>(c);
        ++i;
        continue;
      }
      const size_t n = Utf8Length(s.substr(i));
      if (c >= 0x20 && n > 0) {
        out.append(s.data() + i, n);
        i += n;
        continue;
      }
      char u[8];
      std::snprintf(u, sizeof(u), "\\u%04x", c);
      out += u;
      ++i;
    }
    return out;
  }

  // The length of the valid UTF-8 sequence `s` starts with (1 for ASCII), or 0.
  static size_t Utf8Length(absl::string_view s) {
    const unsigned char c = static_cast<unsigned char>(s[0]);
    if (c < 0x80) return 1;
    size_t n = 0;
    if (c >= 0xC2 && c <= 0xDF)
      n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
      n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
      n = 4;
    if (n == 0 || s.size() < n) return 0;
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[k]) & 0xC0) != 0x80) return 0;
    }
    return n;
  }
};

// --log_format=json: the failure signal handler's report (signal, PC, stack frames; a line per
// call) as JSON lines. It runs in a signal handler: no allocation, no locks, no stdio.
void JsonFailureWriter(const char* data, size_t size) {
  static char out[2048];
  size_t n = 0;
  // Whole pieces or nothing (an escape is never cut), keeping room for the closing "}\n.
  auto put = [&](const char* s, size_t len) {
    if (n + len > sizeof(out) - 3) return;
    std::memcpy(out + n, s, len);
    n += len;
  };
  auto put_str = [&](const char* s) { put(s, std::strlen(s)); };
  auto put_num = [&](int64_t v, int width) {
    char digits[24];
    int k = 0;
    do {
      digits[k++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v > 0 || k < width);
    while (k > 0) put(&digits[--k], 1);
  };
  // The UTC date of the current second (days to civil date: Howard Hinnant's algorithm).
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  const int64_t days = now.tv_sec / 86400, secs = now.tv_sec % 86400;
  const int64_t z = days + 719468, era = z / 146097, doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
  const int64_t day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
  put_str("{\"ts\":\"");
  put_num(yoe + era * 400 + (month <= 2), 4);
  put_str("-");
  put_num(month, 2);
  put_str("-");
  put_num(day, 2);
  put_str("T");
  put_num(secs / 3600, 2);
  put_str(":");
  put_num(secs / 60 % 60, 2);
  put_str(":");
  put_num(secs % 60, 2);
  put_str(".");
  put_num(now.tv_nsec / 1000, 6);
  put_str("Z\",\"level\":\"fatal\",\"caller\":\"failure_signal_handler\",\"msg\":\"");
  for (size_t i = 0; i < size; ++i) {
    const unsigned char c = static_cast<unsigned char>(data[i]);
    if (c == '\n' && i + 1 == size) break;
    if (c == '"' || c == '\\') {
      put("\\", 1);
      put(&data[i], 1);
    } else if (c < 0x20 || c >= 0x80) {  // the handler writes ASCII; anything else escaped
      static constexpr char kHex[] = "0123456789abcdef";
      const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 15]};
      put(u, 6);
    } else {
      put(&data[i], 1);
    }
  }
  out[n++] = '"';
  out[n++] = '}';
  out[n++] = '\n';
  for (size_t done = 0; done < n;) {
    const ssize_t w = ::write(STDERR_FILENO, out + done, n - done);
    if (w <= 0) return;
    done += static_cast<size_t>(w);
  }
}

// Whether a flag defined in `file` is this project's. Bazel compiles our sources with paths
// relative to the workspace ("examples/agent/main.cc"); the system libraries' flags carry other
// paths (Debian's Abseil: "./absl/flags/parse.cc").
bool IsProjectFile(absl::string_view file) {
  return !file.empty() && file[0] != '.' && file[0] != '/' && !absl::StartsWith(file, "external/");
}

std::string ProgramName(const char* argv0) {
  absl::string_view name = argv0;
  const size_t slash = name.rfind('/');
  return std::string(slash == absl::string_view::npos ? name : name.substr(slash + 1));
}

}  // namespace

std::vector<char*> InitProgram(int argc, char** argv, const char* usage) {
  // Debian's Abseil is built without NDEBUG, so absl::Mutex would run its deadlock detector (a
  // global graph behind a global lock) on every lock, in our code and in gRPC. Tests keep it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // By default --help lists only the flags of a file named after the program (main.cc is not),
  // and --version prints the build mode.
  absl::FlagsUsageConfig config;
  config.contains_help_flags = IsProjectFile;
  config.contains_helpshort_flags = IsProjectFile;
  config.version_string = [program = ProgramName(argv[0])] {
    return absl::StrCat(program, " ", Version(), "\n");
  };
  absl::SetFlagsUsageConfig(config);
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  // GLOG_v in the environment sets glog's verbosity already; --v overrides it.
  if (std::optional<int> v = internal::VerbosityFlag()) FLAGS_v = *v;
  const std::string format = absl::GetFlag(FLAGS_log_format);
  if (format != "text" && format != "json") {
    std::fprintf(stderr, "%s: --log_format must be text or json, got '%s'\n", argv[0],
                 format.c_str());
    std::exit(2);
  }
  google::InitGoogleLogging(argv[0]);
  if (format == "json") {
    // No glog text on stderr and no log files: the sink writes every line.
    FLAGS_logtostderr = false;
    google::SetStderrLogging(google::NUM_SEVERITIES);
    for (int severity = 0; severity < google::NUM_SEVERITIES; ++severity) {
      google::SetLogDestination(severity, "");
    }
    static JsonLogSink* const sink = new JsonLogSink;
    google::AddLogSink(sink);
    google::InstallFailureWriter(&JsonFailureWriter);
  } else {
    FLAGS_logtostderr = true;
  }
  google::InstallFailureSignalHandler();
  return args;
}

}  // namespace autoscale
