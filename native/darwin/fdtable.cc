// macOS: there is no /proc. libproc gives each process's descriptor list and,
// per socket, its addresses and TCP state. It does not say whether two
// descriptors share one open file description: the TypeScript side reports
// that fact as unavailable on macOS.
#include <arpa/inet.h>
#include <libproc.h>
#include <sys/proc_info.h>

#include <vector>

#include "../args.h"
#include "../syscalls.h"

namespace realfork {
namespace {

const char* TcpState(int s) {
  switch (s) {
    case TSI_S_CLOSED: return "CLOSE";
    case TSI_S_LISTEN: return "LISTEN";
    case TSI_S_SYN_SENT: return "SYN_SENT";
    case TSI_S_SYN_RECEIVED: return "SYN_RECV";
    case TSI_S_ESTABLISHED: return "ESTABLISHED";
    case TSI_S__CLOSE_WAIT: return "CLOSE_WAIT";
    case TSI_S_FIN_WAIT_1: return "FIN_WAIT1";
    case TSI_S_CLOSING: return "CLOSING";
    case TSI_S_LAST_ACK: return "LAST_ACK";
    case TSI_S_FIN_WAIT_2: return "FIN_WAIT2";
    case TSI_S_TIME_WAIT: return "TIME_WAIT";
    default: return "UNKNOWN";
  }
}

std::string Endpoint(const in_sockinfo& ini, bool local) {
  char text[INET6_ADDRSTRLEN] = "";
  int port = ntohs(static_cast<uint16_t>(local ? ini.insi_lport : ini.insi_fport));
  if (ini.insi_vflag & INI_IPV4) {
    const in_addr& a = local ? ini.insi_laddr.ina_46.i46a_addr4 : ini.insi_faddr.ina_46.i46a_addr4;
    inet_ntop(AF_INET, &a, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(port);
  }
  const in6_addr& a = local ? ini.insi_laddr.ina_6 : ini.insi_faddr.ina_6;
  inet_ntop(AF_INET6, &a, text, sizeof(text));
  return "[" + std::string(text) + "]:" + std::to_string(port);
}

// listFds(pid): [{fd, type, id?, local?, remote?, state?, path?}] or -errno.
Napi::Value ListFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int pid;
  if (!ArgInt(info, 0, &pid)) return {};
  int bytes = proc_pidinfo(pid, PROC_PIDLISTFDS, 0, nullptr, 0);
  if (bytes <= 0) return Errno(env, errno ? errno : ESRCH);
  std::vector<proc_fdinfo> fds(static_cast<size_t>(bytes) / sizeof(proc_fdinfo) + 16);
  bytes = proc_pidinfo(pid, PROC_PIDLISTFDS, 0, fds.data(), static_cast<int>(fds.size() * sizeof(proc_fdinfo)));
  if (bytes <= 0) return Errno(env, errno ? errno : ESRCH);
  size_t count = static_cast<size_t>(bytes) / sizeof(proc_fdinfo);
  Napi::Array out = Napi::Array::New(env, count);
  for (size_t i = 0; i < count; i++) {
    const proc_fdinfo& f = fds[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("fd", f.proc_fd);
    switch (f.proc_fdtype) {
      case PROX_FDTYPE_SOCKET: {
        socket_fdinfo si;
        o.Set("type", "socket");
        if (proc_pidfdinfo(pid, f.proc_fd, PROC_PIDFDSOCKETINFO, &si, sizeof(si)) == sizeof(si)) {
          o.Set("id", Napi::Number::New(env, static_cast<double>(si.psi.soi_so & 0x1fffffffffffffULL)));
          if (si.psi.soi_kind == SOCKINFO_TCP) {
            const in_sockinfo& ini = si.psi.soi_proto.pri_tcp.tcpsi_ini;
            o.Set("type", "tcp");
            o.Set("local", Endpoint(ini, true));
            o.Set("remote", ini.insi_fport != 0 ? Napi::Value(Napi::String::New(env, Endpoint(ini, false)))
                                                  : env.Null());
            o.Set("state", TcpState(si.psi.soi_proto.pri_tcp.tcpsi_state));
          } else if (si.psi.soi_family == AF_UNIX) {
            o.Set("type", "unix");
          }
        }
        break;
      }
      case PROX_FDTYPE_PIPE: {
        pipe_fdinfo pi;
        o.Set("type", "pipe");
        if (proc_pidfdinfo(pid, f.proc_fd, PROC_PIDFDPIPEINFO, &pi, sizeof(pi)) == sizeof(pi))
          o.Set("id", Napi::Number::New(env, static_cast<double>(pi.pipeinfo.pipe_handle & 0x1fffffffffffffULL)));
        break;
      }
      case PROX_FDTYPE_VNODE: {
        vnode_fdinfowithpath vi;
        o.Set("type", "file");
        if (proc_pidfdinfo(pid, f.proc_fd, PROC_PIDFDVNODEPATHINFO, &vi, sizeof(vi)) == sizeof(vi))
          o.Set("path", vi.pvip.vip_path);
        break;
      }
      case PROX_FDTYPE_KQUEUE:
        o.Set("type", "kqueue");
        break;
      default:
        o.Set("type", "other");
    }
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

}  // namespace

void InitFdTable(Napi::Env env, Napi::Object exports) {
  exports.Set("listFds", Napi::Function::New(env, ListFds, "listFds"));
  exports.Set("platform", "darwin");
}

}  // namespace realfork
