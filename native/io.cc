#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

#include <chrono>
#include <vector>

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

// (fd, buf, offset, length) -> op(fd, buf + offset, length), retried on EINTR.
template <ssize_t (*Op)(int, uint8_t*, size_t)>
Napi::Value Transfer(const Napi::CallbackInfo& info) {
  int fd, offset, length;
  uint8_t* data;
  size_t size;
  if (!ArgInt(info, 0, &fd) || !ArgBytes(info, 1, &data, &size) || !ArgInt(info, 2, &offset) ||
      !ArgInt(info, 3, &length))
    return {};
  if (offset < 0 || length < 0 || static_cast<size_t>(offset) + static_cast<size_t>(length) > size)
    return Errno(info.Env(), EINVAL);
  ssize_t n;
  do {
    n = Op(fd, data + offset, static_cast<size_t>(length));
  } while (n < 0 && errno == EINTR);
  return n < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), static_cast<double>(n));
}

ssize_t ReadOp(int fd, uint8_t* p, size_t n) { return read(fd, p, n); }
ssize_t WriteOp(int fd, uint8_t* p, size_t n) { return write(fd, p, n); }

// Never retried on EINTR: on Linux the descriptor is already gone by then, and
// a retry could close a descriptor another thread has just been given.
Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return {};
  int r = close(fd);
  if (r < 0 && errno == EINTR) return Napi::Number::New(info.Env(), 0);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  std::string path;
  int flags;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &flags)) return {};
  int r;
  do {
    r = open(path.c_str(), flags, 0666);
  } while (r < 0 && errno == EINTR);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), r);
}

// mkfifo(3): serve --step waits on one (Node has no API for it).
Napi::Value MkFifo(const Napi::CallbackInfo& info) {
  std::string path;
  int mode;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &mode)) return {};
  int r = mkfifo(path.c_str(), static_cast<mode_t>(mode));
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

// close_range(2), Linux 5.9+: one call closes a whole span of descriptors,
// where walking /proc/self/fd in a forked child costs a readdir and a page
// fault per touched page of the runtime. Elsewhere it is -ENOSYS and the
// caller walks the descriptor list itself.
Napi::Value CloseRange(const Napi::CallbackInfo& info) {
  int first, last;
  if (!ArgInt(info, 0, &first) || !ArgInt(info, 1, &last)) return {};
  if (first < 0 || last < first) return Errno(info.Env(), EINVAL);
#if defined(__linux__) && defined(SYS_close_range)
  long r = syscall(SYS_close_range, static_cast<unsigned>(first), static_cast<unsigned>(last), 0u);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
#else
  return Errno(info.Env(), ENOSYS);
#endif
}

Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return {};
  int r = dup(fd);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), r);
}

Napi::Value Dup2(const Napi::CallbackInfo& info) {
  int fd, target;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &target)) return {};
  int r;
  do {
    r = dup2(fd, target);
  } while (r < 0 && (errno == EINTR || errno == EBUSY));
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), r);
}

// poll(fds: number[], events: number[], timeoutMs): revents[] (all 0 on timeout).
Napi::Value Poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsArray() || !info[1].IsArray()) {
    Napi::TypeError::New(env, "poll(fds, events, timeout) takes two arrays and a number")
        .ThrowAsJavaScriptException();
    return {};
  }
  int timeout;
  if (!ArgInt(info, 2, &timeout)) return {};
  Napi::Array fds = info[0].As<Napi::Array>();
  Napi::Array events = info[1].As<Napi::Array>();
  if (fds.Length() != events.Length() || fds.Length() > 4096) return Errno(env, EINVAL);
  std::vector<pollfd> p(fds.Length());
  for (uint32_t i = 0; i < fds.Length(); i++) {
    Napi::Value f = fds.Get(i), e = events.Get(i);
    if (!f.IsNumber() || !e.IsNumber()) return Errno(env, EINVAL);
    p[i].fd = f.As<Napi::Number>().Int32Value();
    p[i].events = static_cast<short>(e.As<Napi::Number>().Int32Value());
    p[i].revents = 0;
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout < 0 ? 0 : timeout);
  int r;
  for (;;) {
    r = poll(p.data(), static_cast<nfds_t>(p.size()), timeout);
    if (r >= 0 || errno != EINTR) break;
    if (timeout > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      timeout = left.count() > 0 ? static_cast<int>(left.count()) : 0;
    }
  }
  if (r < 0) return Errno(env, errno);
  Napi::Array out = Napi::Array::New(env, p.size());
  for (uint32_t i = 0; i < p.size(); i++) out.Set(i, p[i].revents);
  return out;
}

Napi::Value GetFl(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return {};
  int r = fcntl(fd, F_GETFL);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), r);
}

Napi::Value SetFl(const Napi::CallbackInfo& info) {
  int fd, flags;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &flags)) return {};
  int r = fcntl(fd, F_SETFL, flags);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  exports.Set("read", Napi::Function::New(env, Transfer<ReadOp>, "read"));
  exports.Set("write", Napi::Function::New(env, Transfer<WriteOp>, "write"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("open", Napi::Function::New(env, Open, "open"));
  exports.Set("mkfifo", Napi::Function::New(env, MkFifo, "mkfifo"));
  exports.Set("closeRange", Napi::Function::New(env, CloseRange, "closeRange"));
  exports.Set("dup", Napi::Function::New(env, Dup, "dup"));
  exports.Set("dup2", Napi::Function::New(env, Dup2, "dup2"));
  exports.Set("poll", Napi::Function::New(env, Poll, "poll"));
  exports.Set("getfl", Napi::Function::New(env, GetFl, "getfl"));
  exports.Set("setfl", Napi::Function::New(env, SetFl, "setfl"));
  Napi::Object c = exports.Get("constants").As<Napi::Object>();
  REALFORK_CONSTANT(c, O_NONBLOCK);
  REALFORK_CONSTANT(c, O_RDONLY);
  REALFORK_CONSTANT(c, O_WRONLY);
  REALFORK_CONSTANT(c, O_RDWR);
  REALFORK_CONSTANT(c, O_CLOEXEC);
#ifdef O_PATH
  REALFORK_CONSTANT(c, O_PATH);
#endif
}

}  // namespace realfork
