#pragma once

#include <napi.h>
#include <uv.h>

namespace realfork {

// One function per syscall; each returns its result or a negative errno.
void InitSockets(Napi::Env env, Napi::Object exports);
void InitIo(Napi::Env env, Napi::Object exports);
void InitProcess(Napi::Env env, Napi::Object exports);
void InitFdTable(Napi::Env env, Napi::Object exports);
void InitWatcher(Napi::Env env, Napi::Object exports);
void InitExec(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);
void InitSignalPipe(Napi::Env env, Napi::Object exports);
void InitSignals(Napi::Env env, Napi::Object exports);
void InitLoopFork(Napi::Env env, Napi::Object exports);

// Prepares the address space so that the child of fork() gets all of it
// (Linux: undo V8's MADV_DONTFORK). Defined per OS.
void PrepareMappingsForFork();

// The signals that have a handler, found in the parent (again only after
// signalHandlersChanged()); reset to SIG_DFL in the child (signals.cc).
void NoteSignalHandlers();
void ResetSignalHandlersInChild();
// A signal handler was installed or removed: the next fork looks again.
void ForgetSignalHandlers();
// In the child of fork({ eventLoop: true }), before any JS or libuv call:
// gives the child a loop of its own (native/loopfork.cc).
void PrepareLoopInChild(uv_loop_t* loop);
uv_loop_t* EventLoop(Napi::Env env);
// Holds every V8 platform worker thread in a task of ours until
// ReleasePlatformWorkers(), so that none is inside the platform's condition
// variable or V8 work at fork() (native/platform_park.cc). False when they
// did not all arrive within timeout_ms (then release them and fail).
bool ParkPlatformWorkers(int timeout_ms);
void ReleasePlatformWorkers();
void ForgetParkInChild();

}  // namespace realfork
