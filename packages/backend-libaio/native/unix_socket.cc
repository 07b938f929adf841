// Unix domain sockets with file-descriptor passing (SCM_RIGHTS), for the
// vhost-user control channel: Node's `net` module cannot send or receive fds.
//
//   unixListen(path, backlog)   socket + bind + listen; non-blocking, CLOEXEC.
//                               A stale *socket* at path is unlinked first;
//                               any other kind of file there is an error.
//   unixAccept(listenFd)        accept4 (non-blocking, CLOEXEC); -1 = nobody waiting
//   unixConnect(path)           connect (then non-blocking); for test front-ends
//   unixSocketpair()            [fd, fd], non-blocking, CLOEXEC
//   recvMsg(fd, view, maxFds)   one recvmsg: { bytes, fds, truncated };
//                               bytes -1 = would block, 0 = peer closed
//   sendMsg(fd, view, fds, ms)  sendmsg until everything is written (fds ride
//                               with the first byte); waits for POLLOUT up to ms
//   FdWatcher(fd, cb)           readiness callbacks from Node's own event loop
//                               (a libuv uv_poll_t): no thread, no timer, no
//                               blocking call on the main thread
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <vector>

#include "common.h"

namespace vblk {
namespace {

constexpr int kMaxFds = 253;  // SCM_MAX_FD

sockaddr_un MakeAddr(Napi::Env env, const std::string& path, socklen_t* len) {
  sockaddr_un a = {};
  a.sun_family = AF_UNIX;
  if (path.empty()) ThrowRange(env, "unix socket path must not be empty");
  if (path.size() >= sizeof a.sun_path) {
    ThrowRange(env, "unix socket path too long (" + std::to_string(path.size()) + " bytes, max " +
                        std::to_string(sizeof a.sun_path - 1) + "): " + path);
  }
  std::memcpy(a.sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

std::string ArgPath(const Napi::CallbackInfo& info, const char* what) {
  if (!info[0].IsString()) ThrowType(info.Env(), std::string(what) + ": path must be a string");
  return info[0].As<Napi::String>().Utf8Value();
}

int SetNonblock(int fd) {
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) return -errno;
  if (!(fl & O_NONBLOCK) && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -errno;
  return 0;
}

// unixListen(path, backlog = 16) -> fd
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgPath(info, "unixListen");
  int backlog = info.Length() > 1 && !info[1].IsUndefined() ? static_cast<int>(ArgInt(info[1], "backlog", 1, 4096)) : 16;
  socklen_t len;
  sockaddr_un addr = MakeAddr(env, path, &len);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      ThrowErrno(env, "unixListen(" + path + "): path exists and is not a socket", EEXIST);
    }
    // A socket file left behind by an earlier server: nobody can be listening
    // on it (or bind below would fail with EADDRINUSE after unlink anyway).
    if (::unlink(path.c_str()) < 0 && errno != ENOENT) ThrowErrno(env, "unixListen: unlink stale " + path, errno);
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) ThrowErrno(env, "unixListen: socket", errno);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    int e = errno;
    ::close(fd);
    ThrowErrno(env, "unixListen: bind(" + path + ")", e);
  }
  if (::listen(fd, backlog) < 0) {
    int e = errno;
    ::close(fd);
    ::unlink(path.c_str());
    ThrowErrno(env, "unixListen: listen(" + path + ")", e);
  }
  return Napi::Number::New(env, fd);
}

// unixAccept(listenFd) -> fd, or -1 when no connection is pending
Napi::Value UnixAccept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int lfd = static_cast<int>(ArgInt(info[0], "listenFd", 0, INT32_MAX));
  for (;;) {
    int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return Napi::Number::New(env, fd);
    if (errno == EINTR) continue;
    // ECONNABORTED: the client went away before we took it; nothing to accept.
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ECONNABORTED) return Napi::Number::New(env, -1);
    ThrowErrno(env, "unixAccept(fd " + std::to_string(lfd) + ")", errno);
  }
}

// unixConnect(path) -> fd (connected, then made non-blocking)
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgPath(info, "unixConnect");
  socklen_t len;
  sockaddr_un addr = MakeAddr(env, path, &len);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "unixConnect: socket", errno);
  int r;
  do r = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int e = errno;
    ::close(fd);
    ThrowErrno(env, "unixConnect(" + path + ")", e);
  }
  r = SetNonblock(fd);
  if (r < 0) {
    ::close(fd);
    ThrowErrno(env, "unixConnect: O_NONBLOCK", -r);
  }
  return Napi::Number::New(env, fd);
}

// unixSocketpair() -> [fd, fd]
Napi::Value UnixSocketpair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
    ThrowErrno(env, "unixSocketpair", errno);
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, sv[0]));
  a.Set(1u, Napi::Number::New(env, sv[1]));
  return a;
}

// recvMsg(fd, view, maxFds = 8) -> { bytes, fds, truncated }
// bytes: > 0 read, 0 peer closed (EOF), -1 nothing to read now (EAGAIN).
// Received fds are CLOEXEC and owned by the caller. `truncated` means the
// sender attached more fds than maxFds (the kernel closed the extra ones) or
// the control data did not fit: the message cannot be trusted.
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
  ViewMemory buf = GetViewMemory(env, info[1], "recvMsg: buffer");
  int maxFds = info.Length() > 2 && !info[2].IsUndefined() ? static_cast<int>(ArgInt(info[2], "maxFds", 0, kMaxFds)) : 8;
  if (buf.length == 0) ThrowRange(env, "recvMsg: buffer must not be empty");
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (maxFds > 0 ? maxFds : 1)));
  iovec iov = {buf.data, buf.length};
  msghdr mh = {};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  ssize_t n;
  do n = ::recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  Napi::Object out = Napi::Object::New(env);
  Napi::Array fds = Napi::Array::New(env);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "recvMsg(fd " + std::to_string(fd) + ")", errno);
    out.Set("bytes", Napi::Number::New(env, -1));
    out.Set("fds", fds);
    out.Set("truncated", Napi::Boolean::New(env, false));
    return out;
  }
  uint32_t nfds = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* p = CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      int got;
      std::memcpy(&got, p + i * sizeof(int), sizeof got);
      fds.Set(nfds++, Napi::Number::New(env, got));
    }
  }
  out.Set("bytes", Napi::Number::New(env, static_cast<double>(n)));
  out.Set("fds", fds);
  out.Set("truncated", Napi::Boolean::New(env, (mh.msg_flags & MSG_CTRUNC) != 0));
  return out;
}

// sendMsg(fd, view, fds = [], timeoutMs = 5000) -> bytes written (all of them)
// The fds go with the first sendmsg. MSG_NOSIGNAL: a closed peer is EPIPE, not
// SIGPIPE. When the socket buffer is full it waits (poll) for room, at most
// timeoutMs in total, then throws ETIMEDOUT: a peer that stops reading must
// not hang the caller.
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
  ViewMemory buf = GetViewMemory(env, info[1], "sendMsg: buffer");
  std::vector<int> fds;
  if (info.Length() > 2 && !info[2].IsUndefined() && !info[2].IsNull()) {
    if (!info[2].IsArray()) ThrowType(env, "sendMsg: fds must be an array");
    Napi::Array a = info[2].As<Napi::Array>();
    if (a.Length() > static_cast<uint32_t>(kMaxFds)) ThrowRange(env, "sendMsg: too many fds");
    for (uint32_t i = 0; i < a.Length(); i++) fds.push_back(static_cast<int>(ArgInt(a.Get(i), "sendMsg: fd", 0, INT32_MAX)));
  }
  double timeoutMs = 5000;
  if (info.Length() > 3 && info[3].IsNumber()) timeoutMs = info[3].As<Napi::Number>().DoubleValue();
  if (buf.length == 0 && !fds.empty()) ThrowRange(env, "sendMsg: fds need at least one byte of data");
  int64_t deadline = NowNs() + static_cast<int64_t>(timeoutMs * 1e6);
  size_t done = 0;
  std::vector<char> control;
  while (done < buf.length) {
    iovec iov = {buf.data + done, buf.length - done};
    msghdr mh = {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (done == 0 && !fds.empty()) {
      control.assign(CMSG_SPACE(sizeof(int) * fds.size()), 0);
      mh.msg_control = control.data();
      mh.msg_controllen = control.size();
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    ssize_t n = ::sendmsg(fd, &mh, MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) ThrowErrno(env, "sendMsg(fd " + std::to_string(fd) + ")", errno);
    int64_t left = deadline - NowNs();
    if (left <= 0) ThrowErrno(env, "sendMsg(fd " + std::to_string(fd) + "): peer is not reading", ETIMEDOUT);
    pollfd p = {fd, POLLOUT, 0};
    int ms = static_cast<int>((left + 999999) / 1000000);
    int r = ::poll(&p, 1, ms);
    if (r < 0 && errno != EINTR) ThrowErrno(env, "sendMsg: poll", errno);
  }
  return Napi::Number::New(env, static_cast<double>(done));
}

// FdWatcher: calls back from Node's event loop when an fd is readable (and/or
// writable). Level-triggered, like epoll: read until -1 (EAGAIN) or you will
// be called again at once. Stop or close it before closing the fd. An active
// watcher keeps the process alive unless unref()'d.
class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdWatcher",
                       {
                           InstanceMethod<&FdWatcher::Start>("start"),
                           InstanceMethod<&FdWatcher::Stop>("stop"),
                           InstanceMethod<&FdWatcher::Close>("close"),
                           InstanceMethod<&FdWatcher::JsRef>("ref"),
                           InstanceMethod<&FdWatcher::JsUnref>("unref"),
                       });
  }

  // new FdWatcher(fd, callback(status, events))
  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    fd_ = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
    if (!info[1].IsFunction()) ThrowType(env, "FdWatcher: callback must be a function");
    cb_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) ThrowError(env, "FdWatcher: no event loop");
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd_);
    if (r < 0) {
      delete handle_;
      handle_ = nullptr;
      ThrowError(env, std::string("FdWatcher: uv_poll_init(fd ") + std::to_string(fd_) + "): " + uv_strerror(r));
    }
    handle_->data = this;
    ctx_ = std::make_unique<Napi::AsyncContext>(env, "vblk:FdWatcher");
    napi_add_env_cleanup_hook(env, CleanupHook, this);
    hooked_ = true;
  }

  ~FdWatcher() override {
    if (hooked_) napi_remove_env_cleanup_hook(Env(), CleanupHook, this);
    hooked_ = false;
    CloseHandle();
  }

 private:
  static void CleanupHook(void* arg) {
    auto* self = static_cast<FdWatcher*>(arg);
    self->hooked_ = false;
    self->CloseHandle();
  }

  // uv_close is asynchronous: the handle memory is freed in its close callback.
  void CloseHandle() {
    if (handle_ == nullptr) return;
    uv_poll_stop(handle_);
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  static void OnPoll(uv_poll_t* h, int status, int events) {
    auto* self = static_cast<FdWatcher*>(h->data);
    if (self == nullptr) return;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    try {
      self->cb_.MakeCallback(self->Value(), {Napi::Number::New(env, status), Napi::Number::New(env, events)},
                             *self->ctx_);
    } catch (const Napi::Error& e) {
      // Nobody up the stack can catch it: report it like any uncaught exception.
      napi_fatal_exception(env, e.Value());
    }
  }

  // start(events = 1): 1 readable, 2 writable, 3 both
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (handle_ == nullptr) ThrowError(env, "FdWatcher closed");
    int ev = info.Length() > 0 && !info[0].IsUndefined() ? static_cast<int>(ArgInt(info[0], "events", 1, 3)) : 1;
    int flags = ((ev & 1) ? UV_READABLE : 0) | ((ev & 2) ? UV_WRITABLE : 0) | UV_DISCONNECT;
    int r = uv_poll_start(handle_, flags, OnPoll);
    if (r < 0) ThrowError(env, std::string("FdWatcher.start: ") + uv_strerror(r));
    if (!active_) {
      active_ = true;
      Napi::ObjectWrap<FdWatcher>::Ref();  // stay alive while the loop may call us
    }
    return env.Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_poll_stop(handle_);
    Deactivate();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    CloseHandle();
    Deactivate();
    return info.Env().Undefined();
  }

  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    if (handle_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
    return info.Env().Undefined();
  }

  void Deactivate() {
    if (active_) {
      active_ = false;
      Napi::ObjectWrap<FdWatcher>::Unref();
    }
  }

  int fd_ = -1;
  uv_poll_t* handle_ = nullptr;
  bool active_ = false;
  bool hooked_ = false;
  Napi::FunctionReference cb_;
  std::unique_ptr<Napi::AsyncContext> ctx_;
};

}  // namespace

void InitUnixSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixAccept", Napi::Function::New(env, UnixAccept, "unixAccept"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("unixSocketpair", Napi::Function::New(env, UnixSocketpair, "unixSocketpair"));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg, "recvMsg"));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg, "sendMsg"));
  exports.Set("FdWatcher", FdWatcher::Define(env));
}

}  // namespace vblk
