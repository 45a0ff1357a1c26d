#!/usr/bin/env python3
"""A D-Bus client not written in JavaScript (libdbus through python3-dbus) for
the fdpass/usocket tests: passes an open file to ReadFile(h), takes the fd
that Inhibit(s) returns, writes to it and closes it. Prints a JSON summary.
Needs no main loop: method calls block.
"""
import json
import os
import sys

import dbus

address, path, service = sys.argv[1], sys.argv[2], sys.argv[3]
bus = dbus.bus.BusConnection(address)
fds_before = set(os.listdir("/proc/self/fd"))
iface = dbus.Interface(bus.get_object(service, "/org/fdpass/Test"), "org.fdpass.Test")
with open(path, "rb") as f:
    text = iface.ReadFile(dbus.types.UnixFd(f))
fd = iface.Inhibit("sleep").take()
os.write(fd, b"from python")
os.close(fd)
leaked = sorted(set(os.listdir("/proc/self/fd")) - fds_before)
bus.close()
print(json.dumps({"text": str(text), "leaked": leaked}))
