// The child of fork() starts with the parent's signal handlers, and Node's
// handlers write into the parent's libuv signal pipe: a SIGTERM sent to the
// child would run the parent's process.on('SIGTERM'). The child gets default
// dispositions, the way exec() would: handlers reset, ignored signals stay
// ignored (Node ignores SIGPIPE, so a write to a closed peer is EPIPE in the
// child, as it is in the parent).
//
// Finding the handlers takes a sigaction() query per signal, 62 system calls
// (~35-50 us on the project's VM). The parent makes them once and keeps the
// set; the child resets just those (7 in a serve parent). The set is taken
// again after JavaScript adds or removes a signal listener (fork.ts tells us:
// that is how Node installs handlers after start-up). SIGCHLD is asked every
// time: libuv installs its handler at the first child_process.spawn(), with no
// JavaScript listener to tell us. Otherwise the set stays exact unless native
// code outside Node installs a handler after the first fork.
#include <signal.h>

#include <cstdint>

#include <cerrno>

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

uint64_t handled = 0;  // bit (sig - 1): a handler is installed
bool handled_known = false;

bool HasHandler(int sig) {
  struct sigaction sa;
  if (sigaction(sig, nullptr, &sa) != 0) return false;
  if (sa.sa_flags & SA_SIGINFO) return true;
  return sa.sa_handler != SIG_IGN && sa.sa_handler != SIG_DFL;
}

Napi::Value SignalHandlersChanged(const Napi::CallbackInfo& info) {
  ForgetSignalHandlers();
  return info.Env().Undefined();
}

// ignoreSignal(sig): sigaction(SIG_IGN); 0 or -errno. For a process on its
// way out that has no JavaScript listener left for the signal (Node put the
// default action back with the last one).
Napi::Value IgnoreSignal(const Napi::CallbackInfo& info) {
  int sig;
  if (!ArgInt(info, 0, &sig)) return {};
  struct sigaction ign = {};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  if (sigaction(sig, &ign, nullptr) != 0) return Errno(info.Env(), errno);
  ForgetSignalHandlers();
  return Napi::Number::New(info.Env(), 0);
}

}  // namespace

void ForgetSignalHandlers() {
  handled_known = false;
}

void NoteSignalHandlers() {
  if (handled_known) {
    const uint64_t chld = uint64_t{1} << (SIGCHLD - 1);
    handled = HasHandler(SIGCHLD) ? handled | chld : handled & ~chld;
    return;
  }
  handled = 0;
  for (int sig = 1; sig < NSIG && sig <= 64; sig++) {
    if (sig != SIGKILL && sig != SIGSTOP && HasHandler(sig)) handled |= uint64_t{1} << (sig - 1);
  }
  handled_known = true;
}

void ResetSignalHandlersInChild() {
  struct sigaction def = {};
  def.sa_handler = SIG_DFL;
  sigemptyset(&def.sa_mask);
  for (int sig = 1; sig < NSIG && sig <= 64; sig++) {
    if (handled & (uint64_t{1} << (sig - 1))) sigaction(sig, &def, nullptr);
  }
}

void InitSignals(Napi::Env env, Napi::Object exports) {
  exports.Set("signalHandlersChanged", Napi::Function::New(env, SignalHandlersChanged, "signalHandlersChanged"));
  exports.Set("ignoreSignal", Napi::Function::New(env, IgnoreSignal, "ignoreSignal"));
}

}  // namespace realfork
