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
void InitLoopFork(Napi::Env env, Napi::Object exports);

// Prepares the address space so that the child of fork() gets all of it
// (Linux: undo V8's MADV_DONTFORK). Defined per OS.
void PrepareMappingsForFork();

// In the child of fork({ eventLoop: true }), before any JS or libuv call:
// gives the child a loop of its own (native/loopfork.cc).
void PrepareLoopInChild(uv_loop_t* loop);
uv_loop_t* EventLoop(Napi::Env env);

}  // namespace realfork
