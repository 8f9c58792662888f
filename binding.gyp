{
  "targets": [
    {
      # The one file that calls V8's and Node's C++ API (to park V8's worker
      # threads across fork): V8 14's headers (Node 26) need C++20; the rest
      # of the addon is C++17 against N-API only.
      "target_name": "realfork_platform",
      "type": "static_library",
      "sources": ["native/platform_park.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fPIC"],
      "xcode_settings": {
        "CLANG_CXX_LANGUAGE_STANDARD": "c++20",
        "MACOSX_DEPLOYMENT_TARGET": "11.0",
        "GCC_ENABLE_CPP_EXCEPTIONS": "NO"
      }
    },
    {
      "target_name": "realfork",
      "dependencies": ["realfork_platform"],
      "sources": [
        "native/realfork.cc",
        "native/sockets.cc",
        "native/io.cc",
        "native/process.cc",
        "native/watcher.cc",
        "native/exec.cc",
        "native/memory.cc",
        "native/signal_pipe.cc",
        "native/signals.cc",
        "native/loopfork.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/linux/mappings.cc", "native/linux/fdtable.cc"],
          "ldflags": ["-Wl,-z,now"]
        }],
        ["OS=='mac'", {
          "sources": ["native/darwin/mappings.cc", "native/darwin/fdtable.cc"],
          "xcode_settings": {
            "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
            "MACOSX_DEPLOYMENT_TARGET": "11.0",
            "GCC_ENABLE_CPP_EXCEPTIONS": "NO",
            "OTHER_CPLUSPLUSFLAGS": ["-Wall", "-Wextra", "-Wno-unused-parameter"]
          }
        }]
      ]
    }
  ],
  "conditions": [
    ["OS=='linux'", {
      "targets": [
        {
          "target_name": "realfork_packed_heap",
          "type": "shared_library",
          "product_prefix": "",
          "product_extension": "so",
          "sources": ["native/linux/packed_heap.c", "native/linux/large_text.c"],
          "cflags": ["-Wall", "-Wextra"],
          "libraries": ["-ldl", "-lpthread"]
        }
      ]
    }]
  ]
}
