package devstack

// WithHostReady returns opts with a function a real node runs once it holds
// the machine's lock and before it changes the host (see Options.hostReady).
func WithHostReady(opts Options, f func()) Options {
	opts.hostReady = f
	return opts
}
