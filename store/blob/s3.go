package blob

// S3 is the bucket's part of a binary's configuration: embed it in the
// binary's config struct, which server.Main reads from the environment.
type S3 struct {
	// S3Endpoint is Config.Endpoint. Required.
	S3Endpoint string `envconfig:"S3_ENDPOINT" required:"true" desc:"the S3 server's URL, e.g. http://minio:9000"`
	// S3Bucket is Config.Bucket. Default is kmep-packages.
	S3Bucket string `envconfig:"S3_BUCKET" default:"kmep-packages" desc:"the packages' bucket (created when missing)"`
	// S3AccessKey and S3SecretKey are the credentials. Required.
	S3AccessKey string `envconfig:"S3_ACCESS_KEY" required:"true" desc:"the S3 access key"`
	S3SecretKey string `envconfig:"S3_SECRET_KEY" required:"true" desc:"the S3 secret key"`
	// S3Region is Config.Region. Default is us-east-1.
	S3Region string `envconfig:"S3_REGION" default:"us-east-1" desc:"the S3 region"`
}

// Blob is the Config of e.
func (e S3) Blob() Config {
	return Config{Endpoint: e.S3Endpoint, Bucket: e.S3Bucket, AccessKey: e.S3AccessKey, SecretKey: e.S3SecretKey, Region: e.S3Region}
}
