#include <napi.h>
#include <node_version.h>

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
  // The Node this addon was compiled against. fork() calls V8's and Node's
  // C++ API (platform_park.cc), whose layout changes with every major, so
  // src/lib/native.ts refuses to go on under another one.
  Napi::Object built = Napi::Object::New(env);
  built.Set("node", NODE_VERSION_STRING);
  built.Set("modules", NODE_MODULE_VERSION);
  built.Set("uv", UV_VERSION_MAJOR * 10000 + UV_VERSION_MINOR * 100 + UV_VERSION_PATCH);
  exports.Set("builtFor", built);
  return exports;
}

}  // namespace realfork

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return realfork::Init(env, exports); }

NODE_API_MODULE(realfork, InitModule)
