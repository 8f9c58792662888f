#include <pthread.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

// How long fork() waits for V8's worker threads to finish what they run.
constexpr int kParkTimeoutMs = 2000;

// fork(eventLoop): with eventLoop true, the child's libuv loop is made its
// own before anything else runs in it (native/loopfork.cc). V8's workers stay
// parked after fork() in the parent, for the forks that follow, until
// releasePlatformWorkers() (src/lib/fork.ts says when).
Napi::Value Fork(const Napi::CallbackInfo& info) {
  bool own_loop = info.Length() > 0 && info[0].ToBoolean();
  uv_loop_t* loop = own_loop ? EventLoop(info.Env()) : nullptr;
  if (!ParkPlatformWorkers(kParkTimeoutMs)) {
    ReleasePlatformWorkers();
    return Errno(info.Env(), EBUSY);
  }
  // All signals stay blocked across fork() so that no handler runs in the
  // child before its dispositions are its own (node-pty does the same).
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  PrepareMappingsForFork();
  NoteSignalHandlers();
  pid_t pid = fork();
  int err = errno;
  if (pid == 0) ResetSignalHandlersInChild();
  if (pid == 0) ForgetParkInChild();
  if (pid == 0 && loop != nullptr) PrepareLoopInChild(loop);
  if (pid < 0) ReleasePlatformWorkers();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return pid < 0 ? Errno(info.Env(), err) : Napi::Number::New(info.Env(), pid);
}

// waitpid(pid, options): [pid, kind, value] with kind 0 = nothing yet (WNOHANG),
// 1 = exited (value = code), 2 = killed by a signal (value = signal),
// 3 = stopped (value = signal), 4 = continued.
Napi::Value Waitpid(const Napi::CallbackInfo& info) {
  int pid, options;
  if (!ArgInt(info, 0, &pid) || !ArgInt(info, 1, &options)) return {};
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid, &status, options);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Errno(info.Env(), errno);
  Napi::Array out = Napi::Array::New(info.Env(), 3);
  int kind = 0, value = 0;
  if (r > 0) {
    if (WIFEXITED(status)) {
      kind = 1;
      value = WEXITSTATUS(status);
    } else if (WIFSIGNALED(status)) {
      kind = 2;
      value = WTERMSIG(status);
    } else if (WIFSTOPPED(status)) {
      kind = 3;
      value = WSTOPSIG(status);
    } else if (WIFCONTINUED(status)) {
      kind = 4;
    }
  }
  out.Set(0u, r);
  out.Set(1u, kind);
  out.Set(2u, value);
  return out;
}

Napi::Value Exit(const Napi::CallbackInfo& info) {
  int code;
  if (!ArgInt(info, 0, &code)) return {};
  _exit(code);
}

// prctl(PR_SET_PDEATHSIG, sig): the signal this process gets when its parent
// dies (Linux). macOS has no such call: -ENOSYS.
Napi::Value ParentDeathSignal(const Napi::CallbackInfo& info) {
  int sig;
  if (!ArgInt(info, 0, &sig)) return {};
#ifdef __linux__
  int r = prctl(PR_SET_PDEATHSIG, static_cast<unsigned long>(sig));
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
#else
  return Errno(info.Env(), ENOSYS);
#endif
}

Napi::Value ReleaseWorkers(const Napi::CallbackInfo& info) {
  ReleasePlatformWorkers();
  return info.Env().Undefined();
}

Napi::Value Getpid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), getpid()); }
Napi::Value Getppid(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), getppid()); }

Napi::Value Strerror(const Napi::CallbackInfo& info) {
  int err;
  if (!ArgInt(info, 0, &err)) return {};
  return Napi::String::New(info.Env(), strerror(err));
}

Napi::Value Kill(const Napi::CallbackInfo& info) {
  int pid, sig;
  if (!ArgInt(info, 0, &pid) || !ArgInt(info, 1, &sig)) return {};
  int r = kill(pid, sig);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

}  // namespace

void InitProcess(Napi::Env env, Napi::Object exports) {
  exports.Set("fork", Napi::Function::New(env, Fork, "fork"));
  exports.Set("waitpid", Napi::Function::New(env, Waitpid, "waitpid"));
  exports.Set("_exit", Napi::Function::New(env, Exit, "_exit"));
  exports.Set("parentDeathSignal", Napi::Function::New(env, ParentDeathSignal, "parentDeathSignal"));
  exports.Set("releasePlatformWorkers", Napi::Function::New(env, ReleaseWorkers, "releasePlatformWorkers"));
  exports.Set("getpid", Napi::Function::New(env, Getpid, "getpid"));
  exports.Set("getppid", Napi::Function::New(env, Getppid, "getppid"));
  exports.Set("kill", Napi::Function::New(env, Kill, "kill"));
  exports.Set("strerror", Napi::Function::New(env, Strerror, "strerror"));
  Napi::Object c = exports.Get("constants").As<Napi::Object>();
  REALFORK_CONSTANT(c, WNOHANG);
  REALFORK_CONSTANT(c, WUNTRACED);
  // fork() gives -EBUSY when V8's workers did not all park within this.
  exports.Set("parkTimeoutMs", kParkTimeoutMs);
}

}  // namespace realfork
