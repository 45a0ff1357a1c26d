{
  "targets": [
    {
      "target_name": "fdpass",
      "sources": [
        "native/fdpass.c",
        "native/sock.c",
        "native/msg.c",
        "native/watcher.c",
        "native/pidfd.c",
        "native/seccomp.c",
        "native/tty.c",
        "native/inet.c",
        "native/proc.c",
        "native/shm.c",
        "native/watcher_thread.c"
      ],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-O2"],
      "cflags!": ["-fno-exceptions"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
