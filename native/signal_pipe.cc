// A pipe that becomes readable when a signal arrives (the self-pipe trick),
// for code that waits in a synchronous poll(2) and so cannot run a
// JavaScript signal handler: the fork-split client's reader waits for its
// socket and this pipe together, and stops cleanly on SIGTERM or SIGINT.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

int g_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  int saved = errno;
  unsigned char b = static_cast<unsigned char>(sig);
  ssize_t ignored = write(g_pipe[1], &b, 1);  // full pipe: the reader already has one to read
  (void)ignored;
  errno = saved;
}

// signalPipe(signals[]): the read end of the pipe (each signal writes its
// number as one byte); the handlers replace those of the given signals. A
// forked child gets default handlers back (native fork).
Napi::Value SignalPipe(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsArray()) {
    Napi::TypeError::New(info.Env(), "signalPipe(signals) takes an array of signal numbers")
        .ThrowAsJavaScriptException();
    return {};
  }
  if (g_pipe[0] < 0) {
    if (pipe(g_pipe) != 0) return Errno(info.Env(), errno);
    for (int fd : g_pipe) {
      fcntl(fd, F_SETFD, FD_CLOEXEC);
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
  }
  Napi::Array sigs = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < sigs.Length(); i++) {
    Napi::Value v = sigs.Get(i);
    if (!v.IsNumber()) return Errno(info.Env(), EINVAL);
    struct sigaction sa = {};
    sa.sa_handler = OnSignal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(v.As<Napi::Number>().Int32Value(), &sa, nullptr) != 0) return Errno(info.Env(), errno);
  }
  // A handler installed outside Node: the next fork() must look again at which
  // signals its child resets.
  ForgetSignalHandlers();
  return Napi::Number::New(info.Env(), g_pipe[0]);
}

}  // namespace

void InitSignalPipe(Napi::Env env, Napi::Object exports) {
  exports.Set("signalPipe", Napi::Function::New(env, SignalPipe, "signalPipe"));
}

}  // namespace realfork
