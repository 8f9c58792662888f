// Linux: the descriptor tables are read from /proc in TypeScript; the one
// fact /proc does not give is whether two descriptors share one open file
// description (made by dup() or inherited through fork()) or are two opens of
// the same file. kcmp(KCMP_FILE) answers exactly that.
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../args.h"
#include "../syscalls.h"

namespace realfork {
namespace {

// kcmp(pid1, pid2, fd1, fd2): 0 when both name the same open file description.
Napi::Value Kcmp(const Napi::CallbackInfo& info) {
  int pid1, pid2, fd1, fd2;
  if (!ArgInt(info, 0, &pid1) || !ArgInt(info, 1, &pid2) || !ArgInt(info, 2, &fd1) || !ArgInt(info, 3, &fd2))
    return {};
  long r = syscall(SYS_kcmp, pid1, pid2, KCMP_FILE, fd1, fd2);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), static_cast<double>(r));
}

}  // namespace

void InitFdTable(Napi::Env env, Napi::Object exports) {
  exports.Set("kcmp", Napi::Function::New(env, Kcmp, "kcmp"));
  exports.Set("platform", "linux");
}

}  // namespace realfork
