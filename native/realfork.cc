#include <napi.h>

#include "syscalls.h"

namespace realfork {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitSockets(env, exports);
  InitIo(env, exports);
  InitProcess(env, exports);
  InitFdTable(env, exports);
  InitWatcher(env, exports);
  InitExec(env, exports);
  InitMemory(env, exports);
  InitSignalPipe(env, exports);
  InitSignals(env, exports);
  InitLoopFork(env, exports);
  return exports;
}

}  // namespace realfork

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return realfork::Init(env, exports); }

NODE_API_MODULE(realfork, InitModule)
