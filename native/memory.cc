// malloc_trim(3): hands the malloc heap's free pages back to the kernel.
// Called once before a server starts forking: every 4 KiB page still mapped
// in the parent is a page-table entry that each fork() copies and each
// child's exit tears down. glibc only; elsewhere -ENOSYS.
#include <cerrno>  // first: defines __GLIBC__ with glibc
#ifdef __GLIBC__
#include <malloc.h>
#endif

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

}  // namespace

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
}

}  // namespace realfork
