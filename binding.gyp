{
  "targets": [
    {
      "target_name": "tsbpf_native",
      "sources": [
        "runtime/native/addon.cc",
        "runtime/native/errors.cc",
        "runtime/native/object.cc",
        "runtime/native/programs.cc",
        "runtime/native/maps.cc",
        "runtime/native/netns.cc",
        "runtime/native/tc.cc",
        "runtime/native/xdp.cc",
        "runtime/native/testrun.cc",
        "runtime/native/ringbuf.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "cflags": ["<!@(pkg-config --cflags libbpf)"],
      "libraries": ["<!@(pkg-config --libs libbpf)", "-lelf", "-lz"]
    }
  ]
}
