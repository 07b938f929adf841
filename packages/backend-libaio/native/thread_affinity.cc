// Per-thread CPU affinity (sched_setaffinity with pid 0 acts on the calling
// thread only, so this pins the worker_thread that calls it), gettid, and
// sched_yield for threads that spin (so kernel workers queued on their CPU
// run at once instead of after a scheduler tick).
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "common.h"

namespace vblk {
namespace {

Napi::Value SetThreadAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArray()) ThrowType(env, "setThreadAffinity: cpus must be an array of CPU numbers");
  Napi::Array arr = info[0].As<Napi::Array>();
  if (arr.Length() == 0) ThrowRange(env, "setThreadAffinity: cpus must not be empty");
  cpu_set_t set;
  CPU_ZERO(&set);
  for (uint32_t i = 0; i < arr.Length(); i++) {
    int64_t cpu = ArgInt(arr.Get(i), "setThreadAffinity: cpu", 0, CPU_SETSIZE - 1);
    CPU_SET(static_cast<int>(cpu), &set);
  }
  if (::sched_setaffinity(0, sizeof set, &set) < 0) {
    std::string list;
    for (uint32_t i = 0; i < arr.Length(); i++) {
      if (i) list += ",";
      list += std::to_string(arr.Get(i).As<Napi::Number>().Int64Value());
    }
    ThrowErrno(env, "setThreadAffinity([" + list + "])", errno);
  }
  return env.Undefined();
}

Napi::Value GetThreadAffinity(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) < 0) ThrowErrno(env, "getThreadAffinity", errno);
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (int c = 0; c < CPU_SETSIZE; c++) {
    if (CPU_ISSET(c, &set)) out.Set(n++, Napi::Number::New(env, c));
  }
  return out;
}

Napi::Value Gettid(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(::syscall(SYS_gettid)));
}

Napi::Value SchedYield(const Napi::CallbackInfo& info) {
  ::sched_yield();
  return info.Env().Undefined();
}

}  // namespace

void InitThreadAffinity(Napi::Env env, Napi::Object exports) {
  exports.Set("setThreadAffinity", Napi::Function::New(env, SetThreadAffinity, "setThreadAffinity"));
  exports.Set("getThreadAffinity", Napi::Function::New(env, GetThreadAffinity, "getThreadAffinity"));
  exports.Set("gettid", Napi::Function::New(env, Gettid, "gettid"));
  exports.Set("schedYield", Napi::Function::New(env, SchedYield, "schedYield"));
}

}  // namespace vblk
