#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>

#include <cstring>

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

Napi::Value FromSockaddr(Napi::Env env, const sockaddr_storage& ss) {
  Napi::Object out = Napi::Object::New(env);
  char text[INET6_ADDRSTRLEN] = "";
  if (ss.ss_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in4->sin_addr, text, sizeof(text));
    out.Set("family", "IPv4");
    out.Set("port", ntohs(in4->sin_port));
  } else if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
    out.Set("family", "IPv6");
    out.Set("port", ntohs(in6->sin6_port));
  } else {
    out.Set("family", ss.ss_family == AF_UNIX ? "unix" : "other");
    out.Set("port", 0);
  }
  out.Set("address", text);
  return out;
}

Napi::Value Socket(const Napi::CallbackInfo& info) {
  int domain, type, protocol;
  if (!ArgInt(info, 0, &domain) || !ArgInt(info, 1, &type) || !ArgInt(info, 2, &protocol)) return {};
  int fd = socket(domain, type, protocol);
  return fd < 0 ? Errno(info.Env(), errno) : Napi::Number::New(info.Env(), fd);
}

Napi::Value Socketpair(const Napi::CallbackInfo& info) {
  int domain, type, protocol;
  if (!ArgInt(info, 0, &domain) || !ArgInt(info, 1, &type) || !ArgInt(info, 2, &protocol)) return {};
  int sv[2];
  if (socketpair(domain, type, protocol, sv) != 0) return Errno(info.Env(), errno);
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
    conn = accept(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  } while (conn < 0 && errno == EINTR);
  if (conn < 0) return Errno(info.Env(), errno);
#ifdef __APPLE__
  // BSD accept() copies O_NONBLOCK from the listener; Linux does not. The
  // echo loop wants a blocking socket, as in C, on both.
  int flags = fcntl(conn, F_GETFL);
  if (flags >= 0) fcntl(conn, F_SETFL, flags & ~O_NONBLOCK);
#endif
  Napi::Object out = FromSockaddr(info.Env(), ss).As<Napi::Object>();
  out.Set("fd", conn);
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
  return FromSockaddr(info.Env(), ss);
}

int GetSockName(int fd, sockaddr* sa, socklen_t* len) { return getsockname(fd, sa, len); }
int GetPeerName(int fd, sockaddr* sa, socklen_t* len) { return getpeername(fd, sa, len); }

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
  exports.Set("socket", Napi::Function::New(env, Socket, "socket"));
  exports.Set("socketpair", Napi::Function::New(env, Socketpair, "socketpair"));
  exports.Set("setsockopt", Napi::Function::New(env, Setsockopt, "setsockopt"));
  exports.Set("getsockopt", Napi::Function::New(env, Getsockopt, "getsockopt"));
  exports.Set("bind", Napi::Function::New(env, Bind, "bind"));
  exports.Set("listen", Napi::Function::New(env, Listen, "listen"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("shutdown", Napi::Function::New(env, Shutdown, "shutdown"));
  exports.Set("getsockname", Napi::Function::New(env, SockName<GetSockName>, "getsockname"));
  exports.Set("ipFamily", Napi::Function::New(env, IpFamily, "ipFamily"));
  exports.Set("getpeername", Napi::Function::New(env, SockName<GetPeerName>, "getpeername"));

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
