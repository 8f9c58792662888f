#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <cstring>
#include <utility>

#include "args.h"
#include "syscalls.h"

namespace realfork {
namespace {

// Numeric addresses only (DNS is the caller's business, done before any fork).
bool ToSockaddr(const std::string& host, int port, sockaddr_storage* ss, socklen_t* len) {
  std::memset(ss, 0, sizeof(*ss));
  auto* in4 = reinterpret_cast<sockaddr_in*>(ss);
  if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in);
#ifdef __APPLE__
    in4->sin_len = sizeof(sockaddr_in);
#endif
    return true;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    *len = sizeof(sockaddr_in6);
#ifdef __APPLE__
    in6->sin6_len = sizeof(sockaddr_in6);
#endif
    return true;
  }
  return false;
}

// The address objects are made by JavaScript object literals (the factories
// src/lib/native.ts registers with setAddressFactories), which V8 builds in
// one step with a map it keeps. Four properties set from C++ cost a string
// table lookup and a map transition each: that was most of accept()'s user
// time, the largest single part of a prefork worker's per-connection work.
struct Makers {
  napi_ref address = nullptr, accepted = nullptr;
};

Napi::Value FromSockaddr(const Napi::CallbackInfo& info, const sockaddr_storage& ss, int fd = -1) {
  Napi::Env env = info.Env();
  char text[INET6_ADDRSTRLEN] = "";
  const char* family = ss.ss_family == AF_UNIX ? "unix" : "other";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
    family = "IPv4";
    port = ntohs(in4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    family = "IPv6";
    port = ntohs(in6->sin6_port);
  }
  napi_value args[4];
  napi_create_string_latin1(env, family, NAPI_AUTO_LENGTH, &args[0]);
  napi_create_int32(env, port, &args[1]);
  napi_create_string_latin1(env, text, NAPI_AUTO_LENGTH, &args[2]);
  // Not FunctionReference::Call: the handle scope it opens is a malloc in Node.
  const auto* makers = static_cast<const Makers*>(info.Data());
  napi_ref ref = fd < 0 ? makers->address : makers->accepted;
  if (ref == nullptr) {
    Napi::Error::New(env, "realfork: setAddressFactories() was not called").ThrowAsJavaScriptException();
    return {};
  }
  napi_value make, out;
  napi_get_reference_value(env, ref, &make);
  if (fd >= 0) napi_create_int32(env, fd, &args[3]);
  if (napi_call_function(env, env.Undefined(), make, fd < 0 ? 3 : 4, args, &out) != napi_ok) return {};
  return Napi::Value(env, out);
}

// Every descriptor made here is close-on-exec, as Node's own are: a program
// the server spawns must not hold its listener or a client's connection
// (fork() ignores the flag; setCloseOnExec() clears it on purpose). Linux
// sets it atomically; elsewhere fcntl follows at once (a concurrent exec in
// another thread could still see the descriptor in between).
#ifdef SOCK_CLOEXEC
constexpr int kCloexecType = SOCK_CLOEXEC;
void MarkCloexec(int) {}
#else
constexpr int kCloexecType = 0;
void MarkCloexec(int fd) {
  int flags = fcntl(fd, F_GETFD);
  if (flags >= 0) fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
}
#endif

Napi::Value Socket(const Napi::CallbackInfo& info) {
  int domain, type, protocol;
  if (!ArgInt(info, 0, &domain) || !ArgInt(info, 1, &type) || !ArgInt(info, 2, &protocol)) return {};
  int fd = socket(domain, type | kCloexecType, protocol);
  if (fd < 0) return Errno(info.Env(), errno);
  MarkCloexec(fd);
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value Socketpair(const Napi::CallbackInfo& info) {
  int domain, type, protocol;
  if (!ArgInt(info, 0, &domain) || !ArgInt(info, 1, &type) || !ArgInt(info, 2, &protocol)) return {};
  int sv[2];
  if (socketpair(domain, type | kCloexecType, protocol, sv) != 0) return Errno(info.Env(), errno);
  MarkCloexec(sv[0]);
  MarkCloexec(sv[1]);
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, sv[0]);
  out.Set(1u, sv[1]);
  return out;
}

Napi::Value Setsockopt(const Napi::CallbackInfo& info) {
  int fd, level, name, value;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &level) || !ArgInt(info, 2, &name) || !ArgInt(info, 3, &value))
    return {};
  int r = setsockopt(fd, level, name, &value, sizeof(value));
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

Napi::Value Getsockopt(const Napi::CallbackInfo& info) {
  int fd, level, name;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &level) || !ArgInt(info, 2, &name)) return {};
  int value = 0;
  socklen_t len = sizeof(value);
  int r = getsockopt(fd, level, name, &value, &len);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), value);
}

Napi::Value Bind(const Napi::CallbackInfo& info) {
  int fd, port;
  std::string host;
  if (!ArgInt(info, 0, &fd) || !ArgString(info, 1, &host) || !ArgInt(info, 2, &port)) return {};
  sockaddr_storage ss;
  socklen_t len;
  if (!ToSockaddr(host, port, &ss, &len)) return Errno(info.Env(), EINVAL);
  int r = bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

Napi::Value Listen(const Napi::CallbackInfo& info) {
  int fd, backlog;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &backlog)) return {};
  int r = listen(fd, backlog);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

Napi::Value Accept(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return {};
  sockaddr_storage ss;
  int conn;
  do {
    socklen_t len = sizeof(ss);
#ifdef SOCK_CLOEXEC
    conn = accept4(fd, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
#else
    conn = accept(fd, reinterpret_cast<sockaddr*>(&ss), &len);
#endif
  } while (conn < 0 && errno == EINTR);
  if (conn < 0) return Errno(info.Env(), errno);
  MarkCloexec(conn);
#ifdef __APPLE__
  // BSD accept() copies O_NONBLOCK from the listener; Linux does not. The
  // echo loop wants a blocking socket, as in C, on both.
  int flags = fcntl(conn, F_GETFL);
  if (flags >= 0) fcntl(conn, F_SETFL, flags & ~O_NONBLOCK);
#endif
  Napi::Value out = FromSockaddr(info, ss, conn);
  // No object, no owner: the connection would stay open for ever.
  if (out.IsEmpty()) close(conn);
  return out;
}

Napi::Value Connect(const Napi::CallbackInfo& info) {
  int fd, port;
  std::string host;
  if (!ArgInt(info, 0, &fd) || !ArgString(info, 1, &host) || !ArgInt(info, 2, &port)) return {};
  sockaddr_storage ss;
  socklen_t len;
  if (!ToSockaddr(host, port, &ss, &len)) return Errno(info.Env(), EINVAL);
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) return Napi::Number::New(info.Env(), 0);
  if (errno != EINTR) return Errno(info.Env(), errno);
  // An interrupted connect() goes on in the background; calling it again
  // would give EALREADY. Wait for it to finish and read its outcome.
  pollfd p = {fd, POLLOUT, 0};
  int r;
  do {
    r = poll(&p, 1, -1);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return Errno(info.Env(), errno);
  int err = 0;
  socklen_t errlen = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0) return Errno(info.Env(), errno);
  return err ? Errno(info.Env(), err) : Napi::Number::New(info.Env(), 0);
}

Napi::Value Shutdown(const Napi::CallbackInfo& info) {
  int fd, how;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &how)) return {};
  int r = shutdown(fd, how);
  return r < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), 0);
}

template <int (*Get)(int, sockaddr*, socklen_t*)>
Napi::Value SockName(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return {};
  sockaddr_storage ss;
  socklen_t len = sizeof(ss);
  std::memset(&ss, 0, sizeof(ss));
  if (Get(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return Errno(info.Env(), errno);
  return FromSockaddr(info, ss);
}

int GetSockName(int fd, sockaddr* sa, socklen_t* len) { return getsockname(fd, sa, len); }
int GetPeerName(int fd, sockaddr* sa, socklen_t* len) { return getpeername(fd, sa, len); }

// setAddressFactories(address, accepted): the functions that make
// getsockname/getpeername's {family, port, address} and accept's
// {family, port, address, fd}; kept for the life of the environment.
Napi::Value SetAddressFactories(const Napi::CallbackInfo& info) {
  auto* makers = static_cast<Makers*>(info.Data());
  if (!info[0].IsFunction() || !info[1].IsFunction()) {
    Napi::TypeError::New(info.Env(), "setAddressFactories(address, accepted) takes two functions")
        .ThrowAsJavaScriptException();
    return {};
  }
  for (auto [slot, fn] : {std::pair{&makers->address, info[0]}, std::pair{&makers->accepted, info[1]}}) {
    if (*slot) napi_delete_reference(info.Env(), *slot);
    napi_create_reference(info.Env(), fn, 1, slot);
  }
  return info.Env().Undefined();
}

// ipFamily(text): 4 or 6 when inet_pton(3) reads text as that family's
// numeric address (what bind() and connect() here accept), else 0.
Napi::Value IpFamily(const Napi::CallbackInfo& info) {
  std::string text;
  if (!ArgString(info, 0, &text)) return {};
  in6_addr addr;
  int family = inet_pton(AF_INET, text.c_str(), &addr) == 1 ? 4 : inet_pton(AF_INET6, text.c_str(), &addr) == 1 ? 6 : 0;
  return Napi::Number::New(info.Env(), family);
}

}  // namespace

void InitSockets(Napi::Env env, Napi::Object exports) {
  auto* makers = new Makers{};
  env.AddCleanupHook([env, makers] {
    if (makers->address) napi_delete_reference(env, makers->address);
    if (makers->accepted) napi_delete_reference(env, makers->accepted);
    delete makers;
  });
  exports.Set("setAddressFactories", Napi::Function::New(env, SetAddressFactories, "setAddressFactories", makers));
  exports.Set("socket", Napi::Function::New(env, Socket, "socket"));
  exports.Set("socketpair", Napi::Function::New(env, Socketpair, "socketpair"));
  exports.Set("setsockopt", Napi::Function::New(env, Setsockopt, "setsockopt"));
  exports.Set("getsockopt", Napi::Function::New(env, Getsockopt, "getsockopt"));
  exports.Set("bind", Napi::Function::New(env, Bind, "bind"));
  exports.Set("listen", Napi::Function::New(env, Listen, "listen"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept", makers));
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("getsockname", Napi::Function::New(env, SockName<GetSockName>, "getsockname", makers));
  exports.Set("getpeername", Napi::Function::New(env, SockName<GetPeerName>, "getpeername", makers));
  exports.Set("ipFamily", Napi::Function::New(env, IpFamily, "ipFamily"));

  Napi::Object c = Napi::Object::New(env);
  REALFORK_CONSTANT(c, AF_UNIX);
  REALFORK_CONSTANT(c, AF_INET);
  REALFORK_CONSTANT(c, AF_INET6);
  REALFORK_CONSTANT(c, SOCK_STREAM);
  REALFORK_CONSTANT(c, SOL_SOCKET);
  REALFORK_CONSTANT(c, SO_REUSEADDR);
  REALFORK_CONSTANT(c, SO_KEEPALIVE);
  REALFORK_CONSTANT(c, SO_RCVBUF);
  REALFORK_CONSTANT(c, SO_SNDBUF);
  REALFORK_CONSTANT(c, SO_ERROR);
  REALFORK_CONSTANT(c, SO_TYPE);
  REALFORK_CONSTANT(c, IPPROTO_TCP);
  REALFORK_CONSTANT(c, TCP_NODELAY);
  REALFORK_CONSTANT(c, SHUT_RD);
  REALFORK_CONSTANT(c, SHUT_WR);
  REALFORK_CONSTANT(c, SHUT_RDWR);
  REALFORK_CONSTANT(c, POLLIN);
  REALFORK_CONSTANT(c, POLLOUT);
  REALFORK_CONSTANT(c, POLLERR);
  REALFORK_CONSTANT(c, POLLHUP);
  REALFORK_CONSTANT(c, POLLNVAL);
  exports.Set("constants", c);
}

}  // namespace realfork
