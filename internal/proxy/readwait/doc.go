// Package readwait reads TCP connections without the reads that find
// nothing.
//
// Go's net package reads a connection by trying the read system call
// first and waiting for the poller only when it fails with EAGAIN. A proxy
// that has just answered a request, or sent one upstream, reads again at
// once: nearly always too early, so a request costs each sidecar about
// 1.8 reads that fail (measured; docs/performance.md). A Conn reads with
// recvmsg and the socket option TCP_INQ, which makes the kernel say with
// each read how many bytes are left in the socket, and counts an end of
// stream already received as one. When nothing is left, and the
// connection was written to since (a request sent upstream, a response
// sent downstream), the next Read waits for the poller before it reads.
// The write is what rules out an error (a reset) that came with the last
// bytes read: TCP_INQ does not count one, the readiness edge it raised
// was taken by that read, and the kernel reports it only to the next read
// or write. A write that succeeded after the read shows that none was
// there; one that comes later raises its own edge. A Read that follows a
// read reads first, as net's do.
//
// The wait must not lose a readiness edge that came after the last read.
// net's own reads reset the descriptor's readiness before reading (they
// read anyway), so a Conn makes its reads itself, inside RawConn.Control
// (which holds the descriptor open), and waits on the runtime's poll
// descriptor, which keeps an edge until a wait takes it. That descriptor
// is not exported: the package finds it by the names of the fields that
// hold it, checked once with reflection, and waits with the runtime's
// entry point for internal/poll. Where the fields are not found (another
// Go release), or the kernel refuses TCP_INQ, Wrap returns the connection
// as it is, to be read as net reads it.
//
// A read of the socket that is not the Conn's resets the readiness that a
// wait relies on: after one through the Conn's WriteTo or its RawConn's
// Read, the Conn reads first; the underlying TCPConn must not be read
// directly. Writes that do not go through the Conn's Write (its promoted
// ReadFrom: splice, sendfile) are not counted, which costs a Read that
// follows only the wait it could have skipped.
package readwait
