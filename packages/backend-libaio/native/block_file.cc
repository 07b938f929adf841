// Opening a disk image or a raw block device, and finding its geometry.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "common.h"

namespace vblk {
namespace {

bool IsPow2(uint64_t v) { return v && !(v & (v - 1)); }

// With O_DIRECT a regular file needs buffers/offsets aligned to what the
// filesystem's device wants. Try a 512-aligned (but not 4096-aligned) read;
// if the kernel refuses it with EINVAL, the file needs 4096.
uint32_t ProbeDirectAlignment(int fd, uint64_t size) {
  if (size < 512) return 512;  // nothing to read: assume the common case
  void* mem = nullptr;
  if (posix_memalign(&mem, 8192, 8192) != 0) return 4096;
  uint32_t lbs = 512;
  ssize_t r;
  do r = ::pread(fd, static_cast<uint8_t*>(mem) + 512, 512, 0);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno == EINVAL) lbs = 4096;
  std::free(mem);
  return lbs;
}

// openBlockFile(path, direct, readOnly)
Napi::Value OpenBlockFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "openBlockFile: path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  bool direct = ArgBool(info[1], false);
  bool readOnly = ArgBool(info[2], false);

  int flags = O_CLOEXEC | (readOnly ? O_RDONLY : O_RDWR);
  int fd = ::open(path.c_str(), flags | (direct ? O_DIRECT : 0));
  bool directEffective = direct;
  std::string directNote;
  if (fd < 0 && direct && errno == EINVAL) {
    // The filesystem does not do O_DIRECT (older tmpfs, some FUSE): open
    // buffered and say so through `direct: false`.
    fd = ::open(path.c_str(), flags);
    directEffective = false;
    directNote = "O_DIRECT not supported by the filesystem; opened with the page cache";
  }
  if (fd < 0) {
    int e = errno;
    ThrowErrno(env,
               "openBlockFile: cannot open " + path + (readOnly ? " read-only" : " read-write") +
                   (direct ? " with O_DIRECT" : ""),
               e);
  }
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    int e = errno;
    ::close(fd);
    ThrowErrno(env, "openBlockFile: fstat " + path, e);
  }
  uint64_t size = 0;
  uint32_t lbs = 512, pbs = 512;
  bool isBlk = S_ISBLK(st.st_mode);
  if (isBlk) {
    uint64_t bytes = 0;
    int ssz = 0;
    unsigned int psz = 0;
    if (::ioctl(fd, BLKGETSIZE64, &bytes) < 0) {
      int e = errno;
      ::close(fd);
      ThrowErrno(env, "openBlockFile: BLKGETSIZE64 on " + path, e);
    }
    if (::ioctl(fd, BLKSSZGET, &ssz) < 0) {
      int e = errno;
      ::close(fd);
      ThrowErrno(env, "openBlockFile: BLKSSZGET on " + path, e);
    }
    if (::ioctl(fd, BLKPBSZGET, &psz) < 0) psz = static_cast<unsigned>(ssz);
    size = bytes;
    lbs = static_cast<uint32_t>(ssz > 0 ? ssz : 512);
    pbs = psz >= lbs ? psz : lbs;
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
    lbs = directEffective ? ProbeDirectAlignment(fd, size) : 512;
    uint64_t hint = static_cast<uint64_t>(st.st_blksize);
    pbs = (IsPow2(hint) && hint >= lbs && hint <= 65536) ? static_cast<uint32_t>(hint) : lbs;
  } else {
    ::close(fd);
    ThrowError(env, "openBlockFile: " + path + " is neither a regular file nor a block device");
  }
  if (size % lbs != 0) {
    ::close(fd);
    ThrowError(env, "openBlockFile: " + path + ": image size " + std::to_string(size) +
                        " bytes is not a multiple of the logical block size (" + std::to_string(lbs) +
                        " bytes); resize it (e.g. truncate -s) to a multiple of " + std::to_string(lbs));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", Napi::Number::New(env, fd));
  out.Set("sizeBytes", Napi::Number::New(env, static_cast<double>(size)));
  out.Set("logicalBlockSize", Napi::Number::New(env, lbs));
  out.Set("physicalBlockSize", Napi::Number::New(env, pbs));
  out.Set("isBlockDevice", Napi::Boolean::New(env, isBlk));
  out.Set("direct", Napi::Boolean::New(env, directEffective));
  if (!directNote.empty()) out.Set("note", Napi::String::New(env, directNote));
  return out;
}

}  // namespace

void InitBlockFile(Napi::Env env, Napi::Object exports) {
  exports.Set("openBlockFile", Napi::Function::New(env, OpenBlockFile, "openBlockFile"));
}

}  // namespace vblk
