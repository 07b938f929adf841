// Guest RAM as a real SharedArrayBuffer over a memfd mapping.
//
// A SharedArrayBuffer made by JS is not page aligned (Node 20 puts its data
// 16 bytes into a page), so O_DIRECT reads into it fail. Here the memory is a
// memfd mapped MAP_SHARED: page aligned, shareable with another process (pass
// the fd), and wrapped as a SharedArrayBuffer through V8's backing-store API so
// that it can be handed to worker threads and used with Atomics. The mapping
// is unmapped by the backing store's deleter when the last SharedArrayBuffer
// (in any thread) and the last native holder let go of it.
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "common.h"

namespace vblk {
namespace {

struct Mapping {
  void* base;
  size_t length;
};

void MunmapDeleter(void* /*data*/, size_t /*length*/, void* deleterData) {
  auto* m = static_cast<Mapping*>(deleterData);
  ::munmap(m->base, m->length);
  delete m;
}

size_t PageSize() {
  static const size_t ps = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return ps;
}

// Wraps [data, data+length) (inside the mapping `m`) as a SharedArrayBuffer;
// ownership of `m` passes to the backing store.
Napi::Value WrapMapping(Napi::Env env, Mapping* m, void* data, size_t length) {
  v8::Isolate* iso = v8::Isolate::GetCurrent();
  std::unique_ptr<v8::BackingStore> bs = v8::SharedArrayBuffer::NewBackingStore(data, length, MunmapDeleter, m);
  v8::Local<v8::SharedArrayBuffer> sab = v8::SharedArrayBuffer::New(iso, std::move(bs));
  return Napi::Value(env, FromV8(sab));
}

// allocGuestMemory(size, name) -> { buffer: SharedArrayBuffer, fd }
Napi::Value AllocGuestMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t size = ArgSize(info[0], "size");
  if (size == 0) ThrowRange(env, "allocGuestMemory: size must be > 0");
  std::string name = "vblk-guest-ram";
  if (info.Length() > 1 && info[1].IsString()) name = info[1].As<Napi::String>().Utf8Value();
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "allocGuestMemory: memfd_create(" + name + ")", errno);
  if (::ftruncate(fd, static_cast<off_t>(size)) < 0) {
    int e = errno;
    ::close(fd);
    ThrowErrno(env, "allocGuestMemory: ftruncate(" + std::to_string(size) + ")", e);
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    ::close(fd);
    ThrowErrno(env, "allocGuestMemory: mmap(" + std::to_string(size) + " bytes)", e);
  }
  auto* m = new Mapping{p, static_cast<size_t>(size)};
  Napi::Value sab;
  try {
    sab = WrapMapping(env, m, p, size);
  } catch (...) {
    ::munmap(p, size);
    delete m;
    ::close(fd);
    throw;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("buffer", sab);
  out.Set("fd", Napi::Number::New(env, fd));
  return out;
}

// mapFd(fd, size, offset, readOnly) -> SharedArrayBuffer
Napi::Value MapFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = static_cast<int>(ArgInt(info[0], "fd", 0, INT32_MAX));
  uint64_t size = ArgSize(info[1], "size");
  uint64_t offset = info.Length() > 2 && !info[2].IsUndefined() ? ArgSize(info[2], "offset") : 0;
  bool readOnly = info.Length() > 3 && ArgBool(info[3], false);
  if (size == 0) ThrowRange(env, "mapFd: size must be > 0");
  // mmap wants a page-aligned file offset: map from the page below and point
  // the buffer at the requested byte.
  uint64_t aligned = offset & ~static_cast<uint64_t>(PageSize() - 1);
  size_t delta = static_cast<size_t>(offset - aligned);
  size_t mapLen = static_cast<size_t>(size) + delta;
  int prot = PROT_READ | (readOnly ? 0 : PROT_WRITE);
  void* p = ::mmap(nullptr, mapLen, prot, MAP_SHARED, fd, static_cast<off_t>(aligned));
  if (p == MAP_FAILED) {
    ThrowErrno(env,
               "mapFd: mmap(fd " + std::to_string(fd) + ", " + std::to_string(size) + " bytes at offset " +
                   std::to_string(offset) + ")",
               errno);
  }
  auto* m = new Mapping{p, mapLen};
  try {
    return WrapMapping(env, m, static_cast<uint8_t*>(p) + delta, static_cast<size_t>(size));
  } catch (...) {
    ::munmap(p, mapLen);
    delete m;
    throw;
  }
}

// addressOf(view) -> bigint
Napi::Value AddressOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Value v = info[0];
  void* data = nullptr;
  if (v.IsTypedArray()) {
    napi_typedarray_type type;
    size_t length;
    napi_value ab;
    size_t byteOffset;
    NAPI_THROW_IF_FAILED(env, napi_get_typedarray_info(env, v, &type, &length, &data, &ab, &byteOffset),
                         Napi::Value());
  } else if (v.IsDataView()) {
    size_t length;
    napi_value ab;
    size_t byteOffset;
    NAPI_THROW_IF_FAILED(env, napi_get_dataview_info(env, v, &length, &data, &ab, &byteOffset), Napi::Value());
  } else {
    ThrowType(env, "addressOf: expected a TypedArray or DataView");
  }
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data)));
}

}  // namespace

void InitGuestMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("allocGuestMemory", Napi::Function::New(env, AllocGuestMemory, "allocGuestMemory"));
  exports.Set("mapFd", Napi::Function::New(env, MapFd, "mapFd"));
  exports.Set("addressOf", Napi::Function::New(env, AddressOf, "addressOf"));
  exports.Set("pageSize", Napi::Number::New(env, static_cast<double>(PageSize())));
}

}  // namespace vblk
