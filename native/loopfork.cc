// A forked child with an event loop of its own (fork({ eventLoop: true })).
// Right after fork() the child's libuv loop is a copy of the parent's: same
// epoll set, same eventfd, same signal pipe, the parent's finished threadpool
// work waiting to be collected. PrepareLoopInChild makes it the child's own
// before any JavaScript or libuv call runs in the child. It leans on libuv's
// private loop fields (wq, wq_mutex, child_watcher, active_reqs): written for
// libuv 1.46 (Node 20), checked by test/event-loop*.test.ts.
#include <pthread.h>
#include <unistd.h>
#include <uv.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

#include <memory>

// struct uv__queue and the loop fields used below are libuv 1.46's.
#if UV_VERSION_HEX < 0x012E00
#error "realfork needs libuv 1.46 or later (Node.js 20.5 or later): upgrade Node.js"
#endif

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

size_t QueueLength(const struct uv__queue* q) {
  size_t n = 0;
  for (const struct uv__queue* p = q->next; p != q; p = p->next) n++;
  return n;
}

// Requests the parent's streams still have in flight (writes, connect,
// shutdown): they complete in the child too, when the child closes those
// handles (with ECANCELED). Every other active request is threadpool work.
void CountStreamReqs(uv_handle_t* h, void* arg) {
  auto* n = static_cast<unsigned*>(arg);
  switch (h->type) {
    case UV_TCP:
    case UV_NAMED_PIPE:
    case UV_TTY: {
      auto* s = reinterpret_cast<uv_stream_t*>(h);
      *n += (s->connect_req != nullptr) + (s->shutdown_req != nullptr);
      *n += QueueLength(&s->write_queue) + QueueLength(&s->write_completed_queue);
      break;
    }
    case UV_UDP: {
      auto* u = reinterpret_cast<uv_udp_t*>(h);
      *n += QueueLength(&u->write_queue) + QueueLength(&u->write_completed_queue);
      break;
    }
    default:
      break;
  }
}

unsigned StreamReqs(uv_loop_t* loop) {
  unsigned n = 0;
  uv_walk(loop, CountStreamReqs, &n);
  return n;
}

uv_loop_t* LoopOf(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

// Threadpool requests queued or running: the active requests that are
// neither stream requests nor finished work waiting in loop->wq. While one
// runs, its pool thread may hold a lock (OpenSSL's, the resolver's) that a
// child would wait on for ever (seen once: a child forked during pbkdf2
// hung in randomFill); a batch of finished work being delivered has left
// loop->wq and counts here too (the rest of the batch would run in a child).
Napi::Value ThreadpoolRunning(const Napi::CallbackInfo& info) {
  uv_loop_t* loop = LoopOf(info.Env());
  unsigned all = loop->active_reqs.count;
  // Stream and threadpool requests stay in active_reqs until their done
  // callback has run: with none there, there is nothing to walk or lock for
  // (the usual case, once per fork).
  unsigned streams = 0, finished = 0;
  if (all > 0) {
    streams = StreamReqs(loop);
    uv_mutex_lock(&loop->wq_mutex);
    finished = QueueLength(&loop->wq);
    uv_mutex_unlock(&loop->wq_mutex);
  }
  unsigned idle = streams + finished;
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("running", all > idle ? all - idle : 0);
  out.Set("finished", finished);
  return out;
}

// The child's end: a ref'd prepare handle that keeps Node's own exit path
// (which waits for V8 worker tasks no thread will run) from ever starting.
// Each turn, before the loop would block, it looks whether anything but
// itself is alive; if not, JS emits 'beforeExit'; if still nothing, JS
// emits 'exit' and calls _exit.
struct LoopGuard {
  uv_prepare_t handle;
  Napi::FunctionReference on_idle;
  Napi::FunctionReference on_drained;
  std::unique_ptr<Napi::AsyncContext> context;
  napi_env env;
};

bool NothingElseAlive(uv_loop_t* loop) {
  return loop->active_handles <= 1 && loop->active_reqs.count == 0 && loop->closing_handles == nullptr;
}

void OnPrepare(uv_prepare_t* h) {
  auto* g = static_cast<LoopGuard*>(h->data);
  if (!NothingElseAlive(h->loop)) return;
  Napi::Env env(g->env);
  Napi::HandleScope scope(env);
  g->on_idle.MakeCallback(env.Global(), {}, *g->context);
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
  if (!NothingElseAlive(h->loop)) return;
  g->on_drained.MakeCallback(env.Global(), {}, *g->context);
  if (env.IsExceptionPending()) napi_fatal_exception(env, env.GetAndClearPendingException().Value());
}

Napi::Value StartLoopGuard(const Napi::CallbackInfo& info) {
  if (info.Length() < 2 || !info[0].IsFunction() || !info[1].IsFunction()) {
    Napi::TypeError::New(info.Env(), "startLoopGuard(onIdle, onDrained) needs two functions")
        .ThrowAsJavaScriptException();
    return {};
  }
  auto* g = new LoopGuard();  // lives as long as the child
  g->env = info.Env();
  g->on_idle = Napi::Persistent(info[0].As<Napi::Function>());
  g->on_drained = Napi::Persistent(info[1].As<Napi::Function>());
  g->context = std::make_unique<Napi::AsyncContext>(info.Env(), "realfork.LoopGuard");
  uv_prepare_init(LoopOf(info.Env()), &g->handle);
  g->handle.data = g;
  uv_prepare_start(&g->handle, OnPrepare);
  return info.Env().Undefined();
}

// What a registry of handles turned on now could not have seen: handles a
// stream, process or watcher of Node's holds (stdio only while it reads),
// Node's timer handle while a timer is due, its idle handle while an
// immediate waits. Signal handles are left out (the child removes signal
// listeners, which closes them), and FdWatchers (closed by closeFdWatchers).
void CountExisting(uv_handle_t* h, void* arg) {
  auto* n = static_cast<unsigned*>(arg);
  if (uv_is_closing(h)) return;
  switch (h->type) {
    case UV_TCP:
    case UV_NAMED_PIPE:
    case UV_TTY: {
      uv_os_fd_t fd = -1;
      bool stdio = uv_fileno(h, &fd) == 0 && fd <= 2;
      if (!stdio || uv_is_active(h)) (*n)++;
      break;
    }
    case UV_UDP:
    case UV_PROCESS:
    case UV_FS_EVENT:
    case UV_FS_POLL:
      (*n)++;
      break;
    case UV_TIMER:
    case UV_IDLE:
      if (uv_is_active(h)) (*n)++;
      break;
    default:
      break;
  }
}

Napi::Value ExistingHandles(const Napi::CallbackInfo& info) {
  unsigned n = 0;
  uv_walk(LoopOf(info.Env()), CountExisting, &n);
  return Napi::Number::New(info.Env(), n);
}

// True on the process's main thread. fork() from another thread (a Worker's)
// makes a child whose only thread is that one: the main thread and its loop
// are gone there.
Napi::Value IsMainThread(const Napi::CallbackInfo& info) {
#ifdef __linux__
  bool main = syscall(SYS_gettid) == getpid();
#else
  bool main = pthread_main_np() != 0;
#endif
  return Napi::Boolean::New(info.Env(), main);
}

}  // namespace

void PrepareLoopInChild(uv_loop_t* loop) {
  // A pool thread may have held this mutex at fork(); it does not exist here.
  uv_mutex_init(&loop->wq_mutex);
  // Work the parent's pool finished but the parent had not collected: its
  // callbacks are the parent's (seen: they ran in the child, EBADF).
  loop->wq.next = loop->wq.prev = &loop->wq;
  // New epoll set, eventfd and signal pipe; the parent's epoll is never
  // touched (an epoll_ctl(DEL) on it would remove the parent's watches).
  uv_loop_fork(loop);
  // libuv starts its SIGCHLD watcher once; the child's dispositions were
  // reset, so a stale watcher would never see a child_process exit.
  uv_signal_stop(&loop->child_watcher);
  // The parent's threadpool requests will never complete here (no thread
  // runs them): stop counting them, or the child's loop never drains.
  loop->active_reqs.count = StreamReqs(loop);
}

uv_loop_t* EventLoop(Napi::Env env) { return LoopOf(env); }

void InitLoopFork(Napi::Env env, Napi::Object exports) {
  exports.Set("threadpoolWork", Napi::Function::New(env, ThreadpoolRunning, "threadpoolWork"));
  exports.Set("startLoopGuard", Napi::Function::New(env, StartLoopGuard, "startLoopGuard"));
  exports.Set("existingHandles", Napi::Function::New(env, ExistingHandles, "existingHandles"));
  exports.Set("isMainThread", Napi::Function::New(env, IsMainThread, "isMainThread"));
}

}  // namespace realfork
