// The Go contender of the benchmark: runc's SendFd/RecvFd pattern
// (libcontainer/utils), one name and one fd per message with
// golang.org/x/sys/unix Sendmsg/Recvmsg, over the AF_UNIX stream socket
// inherited as fd 3. Same protocol and output as bench/c/fdbench.c:
//
//	fdbench-go send COUNT           send COUNT messages: "/dev/ptmx" + one fd
//	fdbench-go recv COUNT WARMUP    receive them as *os.File, close each; prints JSON
//
// Built by bench/run.mjs in GOPATH mode against Debian's
// golang-golang-x-sys-dev (/usr/share/gocode), with no download.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// As runc: names shorter than 4096 bytes, room for exactly one fd.
const maxNameLen = 4096

var oobSpace = unix.CmsgSpace(4)

func sendFd(socket *os.File, name string, fd uintptr) error {
	if len(name) >= maxNameLen {
		return fmt.Errorf("sendfd: name too long: %s", name)
	}
	oob := unix.UnixRights(int(fd))
	return unix.Sendmsg(int(socket.Fd()), []byte(name), oob, nil, 0)
}

func recvFd(socket *os.File) (*os.File, error) {
	name := make([]byte, maxNameLen)
	oob := make([]byte, oobSpace)
	n, oobn, _, _, err := unix.Recvmsg(int(socket.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if n >= maxNameLen || oobn != oobSpace {
		return nil, fmt.Errorf("recvfd: incorrect number of bytes read (n=%d oobn=%d)", n, oobn)
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if len(scms) != 1 {
		return nil, fmt.Errorf("recvfd: number of SCMs is not 1: %d", len(scms))
	}
	fds, err := unix.ParseUnixRights(&scms[0])
	if err != nil {
		return nil, err
	}
	if len(fds) != 1 {
		return nil, fmt.Errorf("recvfd: number of fds is not 1: %d", len(fds))
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}

func die(err error) {
	fmt.Fprintf(os.Stderr, "fdbench-go: %v\n", err)
	os.Exit(1)
}

func arg(i int) int {
	v, err := strconv.Atoi(os.Args[i])
	if err != nil {
		die(err)
	}
	return v
}

func main() {
	// Fd() puts the socket in blocking mode, as runc's callers have it.
	socket := os.NewFile(3, "socket")
	if len(os.Args) == 3 && os.Args[1] == "send" {
		count := arg(2)
		payload, err := os.Open("/dev/null")
		if err != nil {
			die(err)
		}
		for i := 0; i < count; i++ {
			if err := sendFd(socket, "/dev/ptmx", payload.Fd()); err != nil {
				die(err)
			}
		}
		return
	}
	if len(os.Args) == 4 && os.Args[1] == "recv" {
		count, warmup := arg(2), arg(3)
		start := time.Now()
		for i := 0; i < count; i++ {
			if i == warmup {
				start = time.Now()
			}
			f, err := recvFd(socket)
			if err != nil {
				die(fmt.Errorf("message %d: %w", i, err))
			}
			f.Close()
		}
		fmt.Printf("{\"messages\":%d,\"seconds\":%.6f}\n", count-warmup, time.Since(start).Seconds())
		return
	}
	fmt.Fprintln(os.Stderr, "usage: fdbench-go send COUNT | recv COUNT WARMUP")
	os.Exit(2)
}
