package tap

// SetPrincipal sets the sidecar's own SPIFFE ID, shown as its end's
// principal on events of mTLS hops. Call it before serving.
func (h *Hub) SetPrincipal(p string) {
	if h == nil {
		return
	}
	h.principal.Store(&p)
}

// Principals fills the principals of an event that Ends has filled: the
// peer's from its verified certificate (peer, "" when the hop was not
// mTLS) and the sidecar's own. Without a peer certificate both stay
// Unknown: principals come from certificates, never from headers.
func (h *Hub) Principals(e *Event, inbound bool, peer string) {
	if h == nil || peer == "" || e.Source == nil || e.Destination == nil {
		return
	}
	local := Unknown
	if p := h.principal.Load(); p != nil && *p != "" {
		local = *p
	}
	if inbound {
		e.Source.Principal, e.Destination.Principal = peer, local
		return
	}
	e.Source.Principal, e.Destination.Principal = local, peer
}
