//go:build linux

package readwait

import (
	"io"
	"net"
	"os"
	"reflect"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// runtime_pollWait waits until the runtime poll descriptor ctx is ready
// for mode ('r'), its deadline passed or it is being closed; it returns
// one of the poll codes below.
//
//go:linkname runtime_pollWait internal/poll.runtime_pollWait
func runtime_pollWait(ctx uintptr, mode int) int

// runtime_pollReset reports, as runtime_pollWait does, a descriptor
// being closed or past its deadline, and else forgets its readiness for
// mode: what net does before each read.
//
//go:linkname runtime_pollReset internal/poll.runtime_pollReset
func runtime_pollReset(ctx uintptr, mode int) int

// The runtime's answers to runtime_pollWait and runtime_pollReset
// (runtime/netpoll.go).
const (
	pollNoError        = 0
	pollErrClosing     = 1
	pollErrTimeout     = 2
	pollErrNotPollable = 3
)

// layout locates a net.TCPConn's runtime poll descriptor: the *netFD at
// fd in the TCPConn, and in the netFD its poll.FD's descriptor number
// (pfd.Sysfd, at sysfd, which Wrap compares with the one RawConn gives, a
// check that the offsets are right) and pollDesc (pfd.pd.runtimeCtx, at
// ctx).
var layout = findLayout()

type offsets struct {
	ok         bool
	fd         uintptr
	sysfd, ctx uintptr
}

func findLayout() offsets {
	conn := reflect.TypeFor[net.TCPConn]()
	fd, ok := conn.FieldByName("fd")
	if !ok || fd.Type.Kind() != reflect.Pointer || fd.Type.Elem().Kind() != reflect.Struct {
		return offsets{}
	}
	// fd is promoted from an embedded struct: its offset is the sum of
	// the offsets along its index path.
	var fdOff uintptr
	for i := range fd.Index {
		fdOff += conn.FieldByIndex(fd.Index[:i+1]).Offset
	}
	sysfd, ok := fieldPath(fd.Type.Elem(), reflect.Int, "pfd", "Sysfd")
	if !ok {
		return offsets{}
	}
	ctx, ok := fieldPath(fd.Type.Elem(), reflect.Uintptr, "pfd", "pd", "runtimeCtx")
	if !ok {
		return offsets{}
	}
	return offsets{ok: true, fd: fdOff, sysfd: sysfd, ctx: ctx}
}

// fieldPath returns the offset in t of the field reached through the
// named (not embedded) fields, which must end at one of kind.
func fieldPath(t reflect.Type, kind reflect.Kind, names ...string) (uintptr, bool) {
	var off uintptr
	for _, name := range names {
		if t.Kind() != reflect.Struct {
			return 0, false
		}
		f, ok := t.FieldByName(name)
		if !ok || len(f.Index) != 1 {
			return 0, false
		}
		off += f.Offset
		t = f.Type
	}
	return off, t.Kind() == kind
}

// netFD returns the address of c's *netFD.
func netFD(c *net.TCPConn) unsafe.Pointer {
	return *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(c), layout.fd))
}

// cmsgSpace holds one control message with an int: the header (length,
// level, type) and the int, padded.
const cmsgSpace = syscall.SizeofCmsghdr + 8

// Conn is a TCP connection whose reads wait for readiness instead of
// reading when the last read left nothing in the socket. Its other
// methods are the TCPConn's. Reads are not safe for concurrent use (no
// reader of a stream reads it concurrently).
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	// pending says the socket may hold bytes or an end of stream: read
	// before waiting. True until a read says otherwise.
	pending bool
	read    func(uintptr) // c.readFD, made once
	recvs   int           // read system calls made, for tests

	// One Read's arguments and results, for readFD.
	p    []byte
	n    int
	err  error
	msg  syscall.Msghdr
	iov  syscall.Iovec
	cmsg [cmsgSpace]byte
}

// Wrap returns c as a *Conn when it is a TCP connection that can be read
// this way, else c itself.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok || !layout.ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	usable := false
	if err := rc.Control(func(fd uintptr) {
		usable = *(*int)(unsafe.Add(netFD(tc), layout.sysfd)) == int(fd) &&
			unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_INQ, 1) == nil
	}); err != nil || !usable {
		return c
	}
	w := &Conn{TCPConn: tc, rc: rc, pending: true}
	w.read = w.readFD
	return w
}

// Read reads up to len(p) bytes. Its errors are those of net's reads: a
// *net.OpError around net.ErrClosed, os.ErrDeadlineExceeded or the system
// call's error, or io.EOF.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.p, c.n, c.err = p, 0, nil
	if err := c.rc.Control(c.read); err != nil {
		c.p = nil
		return 0, c.opError(net.ErrClosed) // Control fails only once closed
	}
	n, err := c.n, c.err
	c.p, c.err = nil, nil
	return n, err
}

// WriteTo copies the connection to w with the TCPConn's own reads
// (splice where w allows). Those reset the readiness a wait relies on, so
// a Read after it reads first.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.pending = true
	return c.TCPConn.WriteTo(w)
}

// readFD runs under Control, which keeps the descriptor (and with it the
// poll descriptor) from being released while it waits: a Close wakes the
// wait with pollErrClosing instead.
func (c *Conn) readFD(fd uintptr) {
	for {
		// A read checks the deadline and closing first, as net's do; one
		// that must wait does so first.
		check := runtime_pollReset
		if !c.pending {
			check = runtime_pollWait
		}
		switch c.poll(check) {
		case pollNoError, pollErrNotPollable:
		case pollErrClosing:
			c.err = c.opError(net.ErrClosed)
			return
		case pollErrTimeout:
			c.err = c.opError(os.ErrDeadlineExceeded)
			return
		}
		n, inq, errno := c.recv(fd)
		switch {
		case errno == syscall.EINTR:
			continue
		case errno == syscall.EAGAIN:
			// Nothing yet (a wake can be for bytes an earlier read
			// took): wait.
			c.pending = false
			continue
		case errno != 0:
			c.pending = true
			c.err = c.opError(os.NewSyscallError("read", errno))
		case n == 0:
			c.pending = true
			c.err = io.EOF
		default:
			c.pending = inq != 0
			c.n = n
		}
		return
	}
}

// poll calls f (runtime_pollWait or runtime_pollReset) with the
// connection's poll descriptor.
func (c *Conn) poll(f func(ctx uintptr, mode int) int) int {
	ctx := *(*uintptr)(unsafe.Add(netFD(c.TCPConn), layout.ctx))
	if ctx == 0 {
		return pollErrNotPollable
	}
	return f(ctx, 'r')
}

// recv reads into c.p with recvmsg and returns the bytes read and what
// TCP_INQ says is left (1 when the control message is missing, so that
// the next Read reads first).
func (c *Conn) recv(fd uintptr) (int, int, syscall.Errno) {
	c.iov.Base = &c.p[0]
	c.iov.SetLen(len(c.p))
	c.msg.Iov = &c.iov
	c.msg.Iovlen = 1
	c.msg.Control = &c.cmsg[0]
	c.msg.SetControllen(len(c.cmsg))
	c.recvs++
	n, _, errno := syscall.Syscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.msg)), 0)
	c.iov.Base = nil
	if errno != 0 {
		return 0, 0, errno
	}
	inq := 1
	if c.msg.Controllen >= syscall.SizeofCmsghdr+4 {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&c.cmsg[0]))
		if h.Level == syscall.IPPROTO_TCP && h.Type == unix.TCP_CM_INQ {
			inq = int(*(*int32)(unsafe.Pointer(&c.cmsg[syscall.SizeofCmsghdr])))
		}
	}
	return int(n), inq, 0
}

func (c *Conn) opError(err error) error {
	return &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
