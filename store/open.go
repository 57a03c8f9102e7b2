package store

// Open dials url with Dial and returns a Store over the client with opts
// (whose Client it sets), and the function that closes the client: what a
// binary's main does once. On an error nothing is left open.
func Open(url string, opts Options) (*Store, func() error, error) {
	rdb, err := Dial(url)
	if err != nil {
		return nil, nil, err
	}
	opts.Client = rdb
	st, err := New(opts)
	if err != nil {
		_ = rdb.Close()
		return nil, nil, err
	}
	return st, rdb.Close, nil
}
