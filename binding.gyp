{
  "targets": [
    {
      "target_name": "fdpass",
      "sources": [
        "native/fdpass.c",
        "native/args.c",
        "native/sock.c",
        "native/msg.c",
        "native/watcher.c"
      ],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-O2"],
      "cflags!": ["-fno-exceptions"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
