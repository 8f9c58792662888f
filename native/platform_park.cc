// Parking V8's platform worker threads across fork().
//
// Node's platform threads wait for work on one condition variable. glibc
// keeps its waiters in two groups inside the variable itself, and fork()
// copies that bookkeeping into a child that has none of the threads: the
// child's first few posts (V8 14's scavenger posts a job at every minor GC,
// --single-threaded or not) "wake" phantom waiters, and the next post waits
// for those phantoms to leave their group, for ever (Node 26, 4 workers:
// 6 of 6 children hung; gdb: __condvar_quiesce_and_switch_g1). A worker
// running a V8 job at fork() is a phantom too: the child's Join() waits for
// it. So, just before fork(), every worker is handed a task that holds it
// in our own wait: at fork() none waits on the platform's variable and none
// runs V8 work, and the child's posts only queue (V8 joins its jobs on the
// calling thread). The parent lets them go right after fork().
#include <node.h>
#include <v8-platform.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "syscalls.h"

namespace realfork {
namespace {

struct Park {
  std::mutex mutex;
  std::condition_variable changed;
  int arrived = 0;
  bool released = false;
};

class ParkTask final : public v8::Task {
 public:
  explicit ParkTask(std::shared_ptr<Park> park) : park_(std::move(park)) {}
  void Run() override {
    std::unique_lock<std::mutex> lock(park_->mutex);
    if (park_->released) return;  // a late task, after the fork it was for
    ++park_->arrived;
    park_->changed.notify_all();
    park_->changed.wait(lock, [this] { return park_->released; });
  }

 private:
  std::shared_ptr<Park> park_;
};

node::MultiIsolatePlatform* platform = nullptr;
std::shared_ptr<Park> current;

}  // namespace

// Node counts its delayed-task thread among NumberOfWorkerThreads() (node
// 20 to 26: src/node_platform.cc pushes it first into threads_); it never
// runs worker tasks, so it is not waited for.
int PlatformWorkers() {
  if (platform == nullptr) {
    v8::Isolate* isolate = v8::Isolate::GetCurrent();
    node::Environment* env = node::GetCurrentEnvironment(isolate->GetCurrentContext());
    platform = env == nullptr ? nullptr : node::GetMultiIsolatePlatform(env);
    if (platform == nullptr) return 0;
  }
  return platform->NumberOfWorkerThreads() - 1;
}

bool ParkPlatformWorkers(int timeout_ms) {
  if (current) return true;  // still held since a recent fork
  int workers = PlatformWorkers();
  if (workers <= 0) return true;
  current = std::make_shared<Park>();
  // Lowest priority: whatever V8 queued before runs first, so the child
  // inherits no half-done background work.
  for (int i = 0; i < workers; ++i)
    platform->CallLowPriorityTaskOnWorkerThread(std::make_unique<ParkTask>(current));
  std::unique_lock<std::mutex> lock(current->mutex);
  return current->changed.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                                   [&] { return current->arrived == workers; });
}

void ReleasePlatformWorkers() {
  if (!current) return;
  {
    std::lock_guard<std::mutex> lock(current->mutex);
    current->released = true;
  }
  current->changed.notify_all();
  current.reset();
}

// The child has none of the parked threads: its copy of the park must never
// be notified (glibc would wait for the phantom waiters) nor destroyed (the
// phantom tasks still count as owners, so dropping ours does not).
void ForgetParkInChild() { current.reset(); }

}  // namespace realfork
