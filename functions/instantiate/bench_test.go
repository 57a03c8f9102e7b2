package instantiate_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/kmep-io/kmep/local/testenv"
	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar/csartest"
	"github.com/kmep-io/kmep/store/kit/kube"
)

// BenchmarkInstantiateToDeployed measures POST instantiate → the instance
// INSTANTIATED with its Helm release "deployed", for the five-object chart,
// against a real API server (etcd + kube-apiserver) and MinIO.
func BenchmarkInstantiateToDeployed(b *testing.B) {
	mio := testenv.NeedMinIO(b)
	k := testenv.NeedKube(b)
	e := newEnv(b, blob.Config{Endpoint: mio.Endpoint, AccessKey: mio.AccessKey, SecretKey: mio.SecretKey}, kube.New(kube.Options{}))
	e.publish(b, "pkg-1", csartest.CSAR(csartest.Options{}), "127.0.0.1", k.Kubeconfig)
	var total time.Duration
	var worst time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		app := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		if w := call(e.h, "POST", instPath(app)+"/instantiate", instantiateBody("pkg-1", "127.0.0.1")); w.Code != http.StatusAccepted {
			b.Fatalf("instantiate: %d %s", w.Code, w.Body)
		}
		e.deliver(b)
		took := time.Since(start)
		total += took
		worst = max(worst, took)
		b.StopTimer()
		if v := view(b, e, app); v.State != store.InstanceInstantiated || v.Release == nil || v.Release.Release != "deployed" {
			b.Fatalf("not deployed: %+v", v.Instance)
		}
		call(e.h, "POST", instPath(app)+"/terminate", `{"gracefulTimeout":0}`)
		e.deliver(b)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s-to-deployed")
	b.ReportMetric(worst.Seconds(), "s-worst")
}
