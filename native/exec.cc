// execve(2): this process becomes another program, same pid. The realfork
// command uses it to restart node with the flags a forking process needs
// (--single-threaded) when it was started without them.
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

bool StringArray(const Napi::CallbackInfo& info, size_t i, std::vector<std::string>* out) {
  if (i >= info.Length() || !info[i].IsArray()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be an array of strings")
        .ThrowAsJavaScriptException();
    return false;
  }
  Napi::Array a = info[i].As<Napi::Array>();
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value v = a.Get(k);
    if (!v.IsString()) {
      Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be an array of strings")
          .ThrowAsJavaScriptException();
      return false;
    }
    out->push_back(v.As<Napi::String>().Utf8Value());
  }
  return true;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> p;
  for (auto& s : strings) p.push_back(s.data());
  p.push_back(nullptr);
  return p;
}

// execve(path, argv, env): returns only on failure, with -errno.
Napi::Value Execve(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(info.Env(), "execve(path, argv, env) needs a path").ThrowAsJavaScriptException();
    return {};
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::vector<std::string> argv, env;
  if (!StringArray(info, 1, &argv) || !StringArray(info, 2, &env)) return {};
  std::vector<char*> argvp = Pointers(argv), envp = Pointers(env);
  execve(path.c_str(), argvp.data(), envp.data());
  return Errno(info.Env(), errno);
}

// cloexec(fd, on): sets or clears FD_CLOEXEC (fcntl F_SETFD). Node marks even
// stdin, stdout and stderr close-on-exec; a program exec'd in its place
// would start without them.
Napi::Value Cloexec(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return {};
  bool on = info.Length() > 1 && info[1].ToBoolean().Value();
  int flags = fcntl(fd, F_GETFD);
  if (flags < 0) return Errno(info.Env(), errno);
  int r = fcntl(fd, F_SETFD, on ? (flags | FD_CLOEXEC) : (flags & ~FD_CLOEXEC));
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), (flags & FD_CLOEXEC) ? 1 : 0);
}

}  // namespace

void InitExec(Napi::Env env, Napi::Object exports) {
  exports.Set("execve", Napi::Function::New(env, Execve, "execve"));
  exports.Set("cloexec", Napi::Function::New(env, Cloexec, "cloexec"));
}

}  // namespace realfork
