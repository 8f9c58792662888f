// FdWatcher: tells JavaScript when a descriptor is readable or writable,
// through the event loop (uv_poll). The server's parent uses it on the
// listening socket so that it waits for connections without blocking: signals
// (SIGCHLD for reaping, SIGTERM for shutdown) are handled while it is idle.
#include <uv.h>

#include <memory>
#include <unordered_set>

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {InstanceMethod("start", &FdWatcher::Start), InstanceMethod("stop", &FdWatcher::Stop),
                        InstanceMethod("close", &FdWatcher::Close)});
  }

  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    int fd;
    if (!ArgInt(info, 0, &fd)) return;
    if (info.Length() < 2 || !info[1].IsFunction()) {
      Napi::TypeError::New(info.Env(), "FdWatcher(fd, callback) needs a function").ThrowAsJavaScriptException();
      return;
    }
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(info.Env(), &loop);
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      Napi::Error e = Napi::Error::New(info.Env(), std::string("uv_poll_init: ") + uv_strerror(r));
      e.Set("errno", Napi::Number::New(info.Env(), r));
      e.ThrowAsJavaScriptException();
      return;
    }
    handle_->data = this;
    live_.insert(this);
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(info.Env(), "realfork.FdWatcher");
  }

  ~FdWatcher() override {
    if (handle_ != nullptr) CloseHandle();
  }

  // In a child of fork({ eventLoop: true }): the parent's watchers are in the
  // child's new loop too, and would call the parent's callbacks there.
  static void CloseAll() {
    for (FdWatcher* w : std::unordered_set<FdWatcher*>(live_)) {
      w->StopHandle();
      w->CloseHandle();
    }
  }

 private:
  // start([events]): events is UV_READABLE (1, the default), UV_WRITABLE (2) or both.
  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (handle_ == nullptr) return Errno(info.Env(), EBADF);
    int events = UV_READABLE;
    if (info.Length() > 0 && !info[0].IsUndefined() && !ArgInt(info, 0, &events)) return {};
    if ((events & ~(UV_READABLE | UV_WRITABLE)) != 0 || events == 0) return Errno(info.Env(), EINVAL);
    int r = uv_poll_start(handle_, events, OnReady);
    if (r != 0) return Napi::Number::New(info.Env(), r);
    if (!active_) Ref();  // keep this object alive while the loop can call it
    active_ = true;
    return Napi::Number::New(info.Env(), 0);
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopHandle();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopHandle();
    if (handle_ != nullptr) CloseHandle();
    return info.Env().Undefined();
  }

  void StopHandle() {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    if (active_) Unref();
    active_ = false;
  }

  void CloseHandle() {
    live_.erase(this);
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  static void OnReady(uv_poll_t* handle, int status, int events) {
    auto* self = static_cast<FdWatcher*>(handle->data);
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // MakeCallback, not Call: it runs process.nextTick and microtasks when the
    // callback returns, which is where a forked child's escape guard fires
    // before libuv can dispatch any other (the parent's) event in the child.
    self->callback_.MakeCallback(env.Global(), {Napi::Number::New(env, status), Napi::Number::New(env, events)},
                                 *self->context_);
    if (env.IsExceptionPending()) {
      Napi::Error err = env.GetAndClearPendingException();
      napi_fatal_exception(env, err.Value());
    }
  }

  static inline std::unordered_set<FdWatcher*> live_;
  uv_poll_t* handle_ = nullptr;
  bool active_ = false;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
};

// The descriptors uv_async_send() writes to. V8 may post a task from a forked
// child (GC scheduling does), and libuv abort()s if that write fails: a child
// that closes the runtime's descriptors must keep these valid.
Napi::Value LoopWakeupFds(const Napi::CallbackInfo& info) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(info.Env(), &loop);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, loop != nullptr ? loop->async_io_watcher.fd : -1);
  out.Set(1u, loop != nullptr ? loop->async_wfd : -1);
  return out;
}

Napi::Value CloseFdWatchers(const Napi::CallbackInfo& info) {
  FdWatcher::CloseAll();
  return info.Env().Undefined();
}

}  // namespace

void InitWatcher(Napi::Env env, Napi::Object exports) {
  exports.Set("FdWatcher", FdWatcher::Define(env));
  exports.Set("closeFdWatchers", Napi::Function::New(env, CloseFdWatchers, "closeFdWatchers"));
  exports.Set("loopWakeupFds", Napi::Function::New(env, LoopWakeupFds, "loopWakeupFds"));
}

}  // namespace realfork
