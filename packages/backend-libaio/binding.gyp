{
  "targets": [
    {
      "target_name": "vblk_native",
      "sources": [
        "native/addon.cc",
        "native/common.cc",
        "native/guest_memory.cc",
        "native/fd_util.cc",
        "native/thread_affinity.cc",
        "native/block_file.cc",
        "native/poller.cc",
        "native/engine.cc",
        "native/io_uring_engine.cc",
        "native/aio_engine.cc",
        "native/unix_socket.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "_GNU_SOURCE"],
      "cflags!": ["-fno-exceptions", "-O3"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-O3"],
      "cflags": ["-O2", "-fexceptions"],
      "cflags_cc": ["-std=c++17", "-O2", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags_cc!": ["-O3"],
          "cflags": ["-O2"],
          "cflags_cc": ["-O2"]
        }
      }
    }
  ]
}
