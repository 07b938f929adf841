// eventfd and plain fd helpers (kick / call notifiers, closing fds handed out
// by other functions of this addon).
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "common.h"

namespace vblk {
namespace {

// eventfd(initval = 0, nonblock = true) -> fd (always EFD_CLOEXEC)
Napi::Value Eventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  unsigned init = 0;
  if (info.Length() > 0 && !info[0].IsUndefined()) init = static_cast<unsigned>(ArgInt(info[0], "initval", 0, UINT32_MAX));
  bool nonblock = info.Length() > 1 ? ArgBool(info[1], true) : true;
  int fd = ::eventfd(init, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
  if (fd < 0) ThrowErrno(env, "eventfd", errno);
  return Napi::Number::New(env, fd);
}

// eventfdWrite(fd, value = 1)
Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
  uint64_t value = 1;
  if (info.Length() > 1 && !info[1].IsUndefined()) value = ArgSize(info[1], "value");
  if (value == 0) return env.Undefined();
  int r = EventfdSignal(fd, value);
  if (r < 0) ThrowErrno(env, "eventfdWrite(fd " + std::to_string(fd) + ")", -r);
  return env.Undefined();
}

// eventfdRead(fd) -> counter value, 0 when nothing is pending (never blocks,
// even on an eventfd opened without EFD_NONBLOCK: it polls first).
Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
  int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0) ThrowErrno(env, "eventfdRead(fd " + std::to_string(fd) + ")", errno);
  if (!(fl & O_NONBLOCK)) {
    struct pollfd p = {fd, POLLIN, 0};
    int r;
    do r = ::poll(&p, 1, 0);
    while (r < 0 && errno == EINTR);
    if (r <= 0 || !(p.revents & POLLIN)) return Napi::Number::New(env, 0);
  }
  uint64_t v = 0;
  int r = EventfdDrain(fd, &v);
  if (r < 0) ThrowErrno(env, "eventfdRead(fd " + std::to_string(fd) + ")", -r);
  return Napi::Number::New(env, static_cast<double>(v));
}

// closeFd(fd)
Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
  if (::close(fd) < 0 && errno != EINTR) ThrowErrno(env, "closeFd(" + std::to_string(fd) + ")", errno);
  return env.Undefined();
}

}  // namespace

void InitFdUtil(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfd", Napi::Function::New(env, Eventfd, "eventfd"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite, "eventfdWrite"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead, "eventfdRead"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
}

}  // namespace vblk
