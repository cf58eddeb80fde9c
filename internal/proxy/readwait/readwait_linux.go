//go:build linux

package readwait

import (
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
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
	pollNoError    = 0
	pollErrClosing = 1
	pollErrTimeout = 2
	// 3, pollErrNotPollable: the poller refused the descriptor.
)

// errNotPollable is the error of a read whose descriptor the poller
// refuses, as net's.
var errNotPollable = errors.New("not pollable")

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
// reading when they can tell that the socket holds nothing. Its other
// methods are the TCPConn's.
type Conn struct {
	*net.TCPConn
	rc syscall.RawConn
	mu sync.Mutex // serialises Reads, as net's read lock does

	// Under mu:
	// pending says the socket may hold bytes or an end of stream: read
	// before waiting. True until a read says otherwise.
	pending bool
	// mark is writes after the last successful read: a Write numbered
	// above it began after that read.
	mark  uint64
	read  func(uintptr) // c.readFD, made once
	recvs int           // read system calls made, for tests
	// One Read's arguments and results, for readFD.
	p    []byte
	n    int
	err  error
	msg  syscall.Msghdr
	iov  syscall.Iovec
	cmsg [cmsgSpace]byte

	// writes numbers Writes as they begin; wrote is the highest number
	// of one that succeeded.
	writes, wrote atomic.Uint64
	// foreign is set when something read the socket past the Conn (its
	// WriteTo, a RawConn's Read): that reset the readiness, so the next
	// Read reads first.
	foreign atomic.Bool
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
			*(*uintptr)(unsafe.Add(netFD(tc), layout.ctx)) != 0 &&
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
	c.mu.Lock()
	defer c.mu.Unlock()
	c.p, c.n, c.err = p, 0, nil
	if err := c.rc.Control(c.read); err != nil {
		c.p = nil
		return 0, c.opError(net.ErrClosed) // Control fails only once closed
	}
	n, err := c.n, c.err
	c.p, c.err = nil, nil
	return n, err
}

// Unread reports whether the socket may hold bytes or an end of stream
// that no Read has taken: the last read left some (TCP_INQ said so, or
// it ended in an error or end of stream), or something read the socket
// past the Conn since. False means the last read emptied the socket;
// what arrived after it is not seen (no system call is made).
func (c *Conn) Unread() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending || c.foreign.Load()
}

// Write writes b, numbering the write so that a Read can tell that it
// began after the last read (see readFD).
func (c *Conn) Write(b []byte) (int, error) {
	n := c.writes.Add(1)
	k, err := c.TCPConn.Write(b)
	if err == nil && len(b) > 0 { // an empty write proves nothing of the socket
		for {
			w := c.wrote.Load()
			if w >= n || c.wrote.CompareAndSwap(w, n) {
				break
			}
		}
	}
	return k, err
}

// WriteTo copies the connection to w with the TCPConn's own reads
// (splice where w allows). Those reset the readiness a wait relies on, so
// a Read after it reads first.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	c.foreign.Store(true)
	return c.TCPConn.WriteTo(w)
}

// SyscallConn returns the socket's RawConn. Its Read (net's sendfile
// attempt when a Conn is copied through an io.LimitedReader, the upstream
// pool's liveness peek) resets the readiness a wait relies on, so a Read
// after it reads first.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.TCPConn.SyscallConn()
	if err != nil {
		return nil, err
	}
	return rawConn{rc, c}, nil
}

type rawConn struct {
	syscall.RawConn
	c *Conn
}

func (r rawConn) Read(f func(uintptr) bool) error {
	r.c.foreign.Store(true)
	return r.RawConn.Read(f)
}

// readFD runs under Control, which keeps the descriptor (and with it the
// poll descriptor) from being released while it waits: a Close wakes the
// wait with pollErrClosing instead.
//
// A Read waits before it reads only when nothing can be in the socket
// without a readiness edge still to come. The last read's TCP_INQ said
// that it left no bytes and no end of stream. But an error (a reset)
// that came with the last bytes, under the edge that read took, is not
// counted there, and the kernel reports it only to the next read or
// write. A write that began after the last read and succeeded rules that
// out: a write fails once the socket holds an error, and an error after
// it raises an edge of its own. So a Read after a request or response was
// written waits first, and a Read after a read reads first, as net's do.
// After a read that finds nothing, a wait is always safe: nothing that
// arrived before it was missed, and what arrives later raises an edge.
func (c *Conn) readFD(fd uintptr) {
	if len(c.p) == 0 {
		return
	}
	if c.foreign.Load() && c.foreign.Swap(false) {
		c.pending = true
	}
	wait := !c.pending && c.wrote.Load() > c.mark
	for {
		// A read checks the deadline and closing first, as net's do; one
		// that waits does so first.
		check := runtime_pollReset
		if wait {
			check = runtime_pollWait
		}
		switch c.poll(check) {
		case pollNoError:
		case pollErrClosing:
			c.err = c.opError(net.ErrClosed)
			return
		case pollErrTimeout:
			c.err = c.opError(os.ErrDeadlineExceeded)
			return
		default: // not pollable
			c.err = c.opError(errNotPollable)
			return
		}
		n, inq, errno := c.recv(fd)
		switch {
		case errno == syscall.EINTR:
			wait = false
			continue
		case errno == syscall.EAGAIN:
			// Nothing yet (a wake can be for bytes an earlier read
			// took): wait.
			wait = true
			continue
		case errno != 0:
			c.pending = true
			c.err = c.opError(os.NewSyscallError("read", errno))
		case n == 0:
			c.pending = true
			c.err = io.EOF
		default:
			c.pending = inq != 0
			c.mark = c.writes.Load()
			c.n = n
		}
		return
	}
}

// poll calls f (runtime_pollWait or runtime_pollReset) with the
// connection's poll descriptor, which Wrap saw set.
func (c *Conn) poll(f func(ctx uintptr, mode int) int) int {
	return f(*(*uintptr)(unsafe.Add(netFD(c.TCPConn), layout.ctx)), 'r')
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
