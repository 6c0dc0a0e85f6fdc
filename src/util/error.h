#pragma once
// The exception types every user-facing failure is thrown as, and the exit
// code each one maps to. The CLI (src/cli/main.cc) prints what() and exits
// with exit_code(); messages name the file, line or field at fault.
//
// Exit-code contract (README "Exit codes"; tests/test_exit_codes.cc):
//   0    success
//   1    the user's input is at fault: a bad flag, file, line, field or path
//        (Error, and std::filesystem errors on the user's paths)
//   2    internal bug: any other exception (a std::logic_error, bad_alloc, ...)
//   3    training stopped by the non-finite guard (NonFiniteStop)
//   130  interrupted by SIGINT, 143 by SIGTERM, 129 by SIGHUP (128 + signal number; see
//        util/signals.h), after temporary outputs were removed
#include <stdexcept>
#include <string>

namespace bertune {

enum ExitCode : int {
  kExitOk = 0,
  kExitUserError = 1,
  kExitInternalError = 2,
  kExitNonFinite = 3,
  kExitSigint = 130,   // 128 + SIGINT
  kExitSigterm = 143,  // 128 + SIGTERM
  kExitSighup = 129,   // 128 + SIGHUP (the terminal closed)
};

// A problem with the user's input: exit 1.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
  virtual int exit_code() const noexcept { return kExitUserError; }
};

// Training stopped because loss or gradients stayed non-finite: exit 3. The
// message should name the step and the last good checkpoint.
struct NonFiniteStop : Error {
  using Error::Error;
  int exit_code() const noexcept override { return kExitNonFinite; }
};

// A command stopped at a safe point after SIGINT/SIGTERM (thrown by
// util::throw_if_stop_requested): exit 128 + signal.
struct Interrupted : Error {
  Interrupted(const std::string& what, int signal_number) : Error(what), signal(signal_number) {}
  int exit_code() const noexcept override { return 128 + signal; }
  int signal;
};

// Cuts text quoted from user input (a data line, a JSON value) to at most
// max_bytes, never inside a UTF-8 sequence, adding "... (N bytes)" when cut,
// so a 5 MB line never lands whole in an error message.
inline std::string quote_excerpt(const std::string& text, size_t max_bytes = 80) {
  if (text.size() <= max_bytes) return text;
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
  return text.substr(0, cut) + "... (" + std::to_string(text.size()) + " bytes)";
}

}  // namespace bertune
