// malloc_trim(3): hands the malloc heap's free pages back to the kernel.
// Called once before a server starts forking: every 4 KiB page still mapped
// in the parent is a page-table entry that each fork() copies and each
// child's exit tears down. glibc only; elsewhere -ENOSYS.
#include <cerrno>  // first: defines __GLIBC__ with glibc
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <dlfcn.h>

#include "syscalls.h"

namespace realfork {
namespace {

// mallocTrim(): 1 when memory was released, 0 when there was none to release.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
#ifdef __GLIBC__
  return Napi::Number::New(info.Env(), malloc_trim(0));
#else
  return Napi::Number::New(info.Env(), -ENOSYS);
#endif
}

// packedHeap(): whether native/linux/packed_heap.c was preloaded into this
// process (the packed-heap opt-in). Always false on macOS.
Napi::Value PackedHeap(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), dlsym(RTLD_DEFAULT, "realfork_packed_heap_loaded") != nullptr);
}

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
  exports.Set("packedHeap", Napi::Function::New(env, PackedHeap, "packedHeap"));
}

}  // namespace realfork
