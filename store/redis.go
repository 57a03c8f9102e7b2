package store

// Redis is the store's part of a binary's configuration: embed it in the
// binary's config struct, which server.Main reads from the environment.
type Redis struct {
	// RedisURL is the Redis server, with Dial's options in its query.
	// Default is redis://127.0.0.1:6379/0.
	RedisURL string `envconfig:"REDIS_URL" default:"redis://127.0.0.1:6379/0" desc:"the Redis server (options of store.Dial in its query)"`
}

// OpenStore is Open of RedisURL.
func (e Redis) OpenStore(opts Options) (*Store, func() error, error) { return Open(e.RedisURL, opts) }
