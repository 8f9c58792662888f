// macOS: there is no /proc. libproc gives each process's descriptor list and,
// per descriptor, what it refers to. These two calls hand the kernel's structs
// to TypeScript as the kernel filled them; src/inspect/fdtable/libproc.ts
// reads them at the offsets asserted below, so a layout that differs in the
// SDK fails the build (npm run build:macos-check compiles this in CI). libproc
// does not say whether two descriptors share one open file description: the
// TypeScript side reports that fact as unavailable on macOS.
#include <libproc.h>
#include <sys/proc_info.h>
#include <sys/socket.h>

#include <cstddef>

#include "../args.h"
#include "../syscalls.h"

namespace realfork {
namespace {

// What src/inspect/fdtable/libproc.ts reads (LAYOUT there), arm64 and x86_64 alike.
static_assert(PROC_PIDLISTFDS == 1 && PROC_PIDFDVNODEPATHINFO == 2 && PROC_PIDFDSOCKETINFO == 3 &&
              PROC_PIDFDPIPEINFO == 6);
static_assert(PROX_FDTYPE_VNODE == 1 && PROX_FDTYPE_SOCKET == 2 && PROX_FDTYPE_KQUEUE == 5 &&
              PROX_FDTYPE_PIPE == 6);
static_assert(SOCKINFO_TCP == 2 && AF_UNIX == 1 && INI_IPV4 == 1 && TSI_S_TIME_WAIT == 10);
static_assert(sizeof(proc_fdinfo) == 8 && offsetof(proc_fdinfo, proc_fd) == 0 &&
              offsetof(proc_fdinfo, proc_fdtype) == 4);
static_assert(sizeof(socket_fdinfo) == 792 && offsetof(socket_fdinfo, psi.soi_so) == 160 &&
              offsetof(socket_fdinfo, psi.soi_family) == 184 && offsetof(socket_fdinfo, psi.soi_kind) == 256);
static_assert(offsetof(socket_fdinfo, psi.soi_proto.pri_tcp.tcpsi_ini.insi_fport) == 264 &&
              offsetof(socket_fdinfo, psi.soi_proto.pri_tcp.tcpsi_ini.insi_lport) == 268 &&
              offsetof(socket_fdinfo, psi.soi_proto.pri_tcp.tcpsi_ini.insi_vflag) == 288 &&
              offsetof(socket_fdinfo, psi.soi_proto.pri_tcp.tcpsi_ini.insi_faddr) == 296 &&
              offsetof(socket_fdinfo, psi.soi_proto.pri_tcp.tcpsi_ini.insi_laddr) == 312 &&
              offsetof(in4in6_addr, i46a_addr4) == 12 &&
              offsetof(socket_fdinfo, psi.soi_proto.pri_tcp.tcpsi_state) == 344);
static_assert(sizeof(pipe_fdinfo) == 184 && offsetof(pipe_fdinfo, pipeinfo.pipe_handle) == 160);
static_assert(sizeof(vnode_fdinfowithpath) == 1200 && offsetof(vnode_fdinfowithpath, pvip.vip_path) == 176);

// proc_pidinfo(pid, flavor, arg, buffer): the bytes it filled (with an empty
// buffer: the bytes it would fill), or -errno.
Napi::Value ProcPidInfo(const Napi::CallbackInfo& info) {
  int pid, flavor;
  int64_t arg;
  uint8_t* data;
  size_t size;
  if (!ArgInt(info, 0, &pid) || !ArgInt(info, 1, &flavor) || !ArgInt(info, 2, &arg) ||
      !ArgBytes(info, 3, &data, &size))
    return {};
  errno = 0;
  int r = proc_pidinfo(pid, flavor, static_cast<uint64_t>(arg), size > 0 ? data : nullptr, static_cast<int>(size));
  return r <= 0 ? Errno(info.Env(), errno ? errno : ESRCH) : Napi::Number::New(info.Env(), r);
}

// proc_pidfdinfo(pid, fd, flavor, buffer): the bytes it filled, or -errno.
Napi::Value ProcPidFdInfo(const Napi::CallbackInfo& info) {
  int pid, fd, flavor;
  uint8_t* data;
  size_t size;
  if (!ArgInt(info, 0, &pid) || !ArgInt(info, 1, &fd) || !ArgInt(info, 2, &flavor) ||
      !ArgBytes(info, 3, &data, &size))
    return {};
  errno = 0;
  int r = proc_pidfdinfo(pid, fd, flavor, data, static_cast<int>(size));
  return r <= 0 ? Errno(info.Env(), errno ? errno : EBADF) : Napi::Number::New(info.Env(), r);
}

}  // namespace

void InitFdTable(Napi::Env env, Napi::Object exports) {
  exports.Set("procPidInfo", Napi::Function::New(env, ProcPidInfo, "procPidInfo"));
  exports.Set("procPidFdInfo", Napi::Function::New(env, ProcPidFdInfo, "procPidFdInfo"));
  exports.Set("platform", "darwin");
}

}  // namespace realfork
