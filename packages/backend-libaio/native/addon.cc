// Module entry: each concept registers its own functions/classes.
//   guest_memory.cc   allocGuestMemory, mapFd, addressOf
//   fd_util.cc        eventfd, eventfdWrite, eventfdRead, closeFd
//   thread_affinity.cc setThreadAffinity, getThreadAffinity, gettid, schedYield
//   block_file.cc     openBlockFile
//   poller.cc         Poller (epoll)
//   engine.cc         NativeEngine (core + N-API), io_uring_engine.cc, aio_engine.cc
//   common.cc         probeIoUring, probeLibaio, shared helpers
#include "common.h"

namespace vblk {

void InitUnixSocket(Napi::Env env, Napi::Object exports);  // unix_socket.cc (vhost-user)

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  InitCommon(env, exports);
  InitGuestMemory(env, exports);
  InitFdUtil(env, exports);
  InitThreadAffinity(env, exports);
  InitBlockFile(env, exports);
  InitPoller(env, exports);
  InitEngine(env, exports);
  InitUnixSocket(env, exports);
  exports.Set("SQ_STRIDE", Napi::Number::New(env, 8));
  exports.Set("IOV_STRIDE", Napi::Number::New(env, 3));
  return exports;
}

}  // namespace vblk

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return vblk::Init(env, exports); }

NODE_API_MODULE(vblk_native, InitModule)
