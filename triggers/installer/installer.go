// Package installer is the trigger that installs and removes the app
// instances the instantiate function records: it receives
// dev.kmep.instance.changed.v1 (store/events), which the relay publishes
// from the INSTANTIATE and TERMINATE changes the function writes in the
// same atomic step as the instance's record.
//
// INSTANTIATE: the instance's credentials are stored, its namespace
// created, its chart installed with Helm (release = the appInstanceId) and
// the APPD's rules applied, then the instance is recorded INSTANTIATED. A
// step that fails undoes the earlier ones and records FAILED with the
// reason. TERMINATE: the MEC termination flow (store/lifecycle.Terminate:
// notifications, the graceful wait, the purge of credentials, rules and
// services), helm uninstall, then the record is deleted; a step that fails
// leaves the instance TERMINATING with the reason.
//
// Every delivery is idempotent, so a redelivery resumes or finishes the
// work and two deliveries make one release. The record's state says what
// is left to do (an INSTANTIATE for an instance that is no longer
// INSTANTIATING does nothing), and Helm's own release record (its Secret)
// says whether the chart is installed: a deployed release whose values
// carry the instance's access key is this instance's and is not installed
// again; one of ours in any other state (a process killed mid-install
// leaves pending-install) is uninstalled and installed again; a release of
// that name that is not ours is never touched. Deliveries of one instance
// take turns through a store lease ("installer:<appInstanceId>", renewed
// while they work; a killed holder's lapses after LeaseTTL), so a
// TERMINATE that arrives during the install waits for it and then removes
// everything it made.
//
// End-to-end acknowledgment: an event is settled in the store once its
// work is done or has failed for good (the relay stops publishing it), and
// touched while it is worked on and whenever it is handed back for a retry
// (503: the store was unavailable, or the installer was stopping), so a
// delivery lost on the way is published again by the relay.
package installer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	"github.com/cloudevents/sdk-go/v2/protocol"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	oteltrace "go.opentelemetry.io/otel/trace"
	"helm.sh/helm/v3/pkg/chart"

	"github.com/kmep-io/kmep/store"
	"github.com/kmep-io/kmep/store/blob"
	"github.com/kmep-io/kmep/store/csar"
	"github.com/kmep-io/kmep/store/events"
	"github.com/kmep-io/kmep/store/kit/kube"
	"github.com/kmep-io/kmep/store/kit/trace"
	"github.com/kmep-io/kmep/store/lease"
	"github.com/kmep-io/kmep/store/lifecycle"
)

// Objects reads packages from the bucket (*blob.Store).
type Objects interface {
	ReaderAt(ctx context.Context, key string, size int64) io.ReaderAt
}

var _ Objects = (*blob.Store)(nil)

// Cluster installs and removes releases (*kube.Deployer).
type Cluster interface {
	EnsureNamespace(ctx context.Context, kubeconfig []byte, namespace string) error
	Install(ctx context.Context, kubeconfig []byte, namespace, name string, ch *chart.Chart, values map[string]any) error
	Uninstall(ctx context.Context, kubeconfig []byte, namespace, name string) error
	Release(ctx context.Context, kubeconfig []byte, namespace, name string) (kube.Release, error)
}

var _ Cluster = (*kube.Deployer)(nil)

// Deps are the installer's dependencies and settings.
type Deps struct {
	// Store is required, with the encryption key (install specs,
	// credentials and kubeconfigs are sealed).
	Store *store.Store
	// Objects and Cluster are required.
	Objects Objects
	Cluster Cluster
	// Log is the logger. Zero value: slog.Default().
	Log *slog.Logger
	// Timeout bounds the work of one delivery (an install or a removal,
	// the termination's graceful wait included). Zero value: 5 min.
	Timeout time.Duration
	// LeaseTTL is the time to live of an instance's lease, renewed every
	// third of it while a delivery works: how long a killed installer
	// blocks the next delivery of its instance. Zero value: 30 s.
	LeaseTTL time.Duration
	// LockWait is how long a delivery waits for another delivery of the
	// same instance to finish before it hands its event back (503).
	// Zero value: Timeout.
	LockWait time.Duration
	// TouchEvery is how often an event's pending activity is refreshed
	// while it is worked on or waits (below the relay's redelivery
	// timeout, 5 min by default). Zero value: 1 min.
	TouchEvery time.Duration
	// TracerProvider makes the span "install" of each event Handle is
	// given (events.Handle). Zero value: the global one.
	TracerProvider oteltrace.TracerProvider
}

// Installer handles instance events. Build it with New.
type Installer struct {
	d      Deps
	log    *slog.Logger
	tracer oteltrace.Tracer
}

// New returns an Installer.
func New(d Deps) (*Installer, error) {
	if d.Store == nil || d.Objects == nil || d.Cluster == nil {
		return nil, errors.New("installer: Store, Objects and Cluster are required")
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Timeout == 0 {
		d.Timeout = 5 * time.Minute
	}
	if d.LeaseTTL == 0 {
		d.LeaseTTL = 30 * time.Second
	}
	if d.LockWait == 0 {
		d.LockWait = d.Timeout
	}
	if d.TouchEvery == 0 {
		d.TouchEvery = time.Minute
	}
	return &Installer{d: d, log: d.Log, tracer: trace.Tracer(d.TracerProvider, "github.com/kmep-io/kmep/triggers/installer")}, nil
}

// LeaseName is the store lease that deliveries of app's events take turns
// through.
func LeaseName(app string) string { return "installer:" + app }

// errRetry marks work handed back for a later delivery.
var errRetry = errors.New("handed back for a retry")

// Handle does the work of one instance event. It answers nil (ACK) once the
// work is done or failed for good, 400 to an event it cannot use (settled:
// it can never succeed), and 503 when the work must be retried (the event
// is touched, not settled). It does so in a span "install", a child of
// the event's trace context (events.Handle), whose status is the result's.
func (in *Installer) Handle(ctx context.Context, e cloudevents.Event) protocol.Result {
	return events.Handle(ctx, in.tracer, "install", e, in.handle)
}

func (in *Installer) handle(ctx context.Context, e cloudevents.Event) protocol.Result {
	if e.Type() != events.TypeInstanceChanged {
		return in.refuse(ctx, e, fmt.Errorf("type %q is not %s", e.Type(), events.TypeInstanceChanged))
	}
	var d events.InstanceChanged
	if err := e.DataAs(&d); err != nil {
		return in.refuse(ctx, e, fmt.Errorf("data: %w", err))
	}
	if d.AppInstanceID == "" || (d.ChangeType != store.ChangeInstantiate && d.ChangeType != store.ChangeTerminate) {
		return in.refuse(ctx, e, fmt.Errorf("data names no appInstanceId or an unknown changeType %q", d.ChangeType))
	}
	log := in.log.With("event", e.ID(), "app", d.AppInstanceID, "change", d.ChangeType)
	err := in.locked(ctx, e.ID(), d.AppInstanceID, log, func(ctx context.Context) error {
		if d.ChangeType == store.ChangeInstantiate {
			return in.install(ctx, d.AppInstanceID, log)
		}
		return in.remove(ctx, d.AppInstanceID, time.Duration(d.GracefulTimeout)*time.Second, log)
	})
	if err != nil {
		log.Warn("handed back for a retry", "err", err)
		if terr := in.touch(context.WithoutCancel(ctx), e.ID()); terr != nil {
			log.Warn("touch event", "err", terr)
		}
		return cehttp.NewResult(http.StatusServiceUnavailable, "instance %s: %s: retry later", d.AppInstanceID, d.ChangeType)
	}
	if err := in.d.Store.Settle(context.WithoutCancel(ctx), e.ID()); err != nil {
		// The work is done; a redelivery finds nothing left to do.
		log.Warn("settle event", "err", err)
		return cehttp.NewResult(http.StatusServiceUnavailable, "settle %s: unavailable", e.ID())
	}
	return nil
}

func (in *Installer) refuse(ctx context.Context, e cloudevents.Event, err error) protocol.Result {
	in.log.Warn("event refused", "event", e.ID(), "err", err)
	if e.Source() == events.Source {
		if serr := in.d.Store.Settle(ctx, e.ID()); serr != nil {
			in.log.Warn("refused event not settled", "event", e.ID(), "err", serr)
		}
	}
	return cehttp.NewResult(http.StatusBadRequest, "event %s: %w", e.ID(), err)
}

func (in *Installer) touch(ctx context.Context, id string) error {
	return in.d.Store.Record(ctx, store.Progress{Touch: []string{id}})
}

// locked runs work under app's lease, touching event id meanwhile. It
// returns errRetry (wrapped) when the lease could not be had within
// LockWait, when it was lost, or when work's error must be retried.
func (in *Installer) locked(ctx context.Context, id, app string, log *slog.Logger, work func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, in.d.LockWait+in.d.Timeout)
	defer cancel()
	var stopTouch context.CancelFunc
	{
		tctx, tcancel := context.WithCancel(ctx)
		stopTouch = tcancel
		go func() {
			t := time.NewTicker(in.d.TouchEvery)
			defer t.Stop()
			for {
				select {
				case <-tctx.Done():
					return
				case <-t.C:
					if err := in.touch(tctx, id); err != nil && tctx.Err() == nil {
						log.Warn("touch event", "err", err)
					}
				}
			}
		}()
	}
	defer stopTouch()

	name, holder := LeaseName(app), randomHex(8)
	acquired, err := in.acquire(ctx, name, holder)
	if err != nil {
		return err
	}
	defer func() {
		if err := in.d.Store.ReleaseLease(context.WithoutCancel(ctx), name, holder); err != nil {
			log.Warn("release lease", "err", err)
		}
	}()
	wctx, wcancel := context.WithTimeout(ctx, in.d.Timeout)
	defer wcancel()
	var lost error
	kept := make(chan error, 1)
	k := lease.Keeper{Store: in.d.Store, Name: name, Holder: holder, TTL: in.d.LeaseTTL, Margin: in.d.LeaseTTL / 3, Log: log}
	go func() { kept <- k.Keep(wctx, acquired, func(reason error) { lost = reason; wcancel() }) }()
	err = work(wctx)
	wcancel()
	<-kept
	switch {
	case lost != nil:
		return fmt.Errorf("%w: %w", errRetry, lost)
	case err != nil && retryable(wctx, err):
		return fmt.Errorf("%w: %w", errRetry, err)
	case err != nil:
		// Recorded already where it could be; nothing more to retry.
		log.Error("work failed", "err", err)
	}
	return nil
}

// acquire takes lease name for holder, waiting up to LockWait while
// another delivery holds it.
func (in *Installer) acquire(ctx context.Context, name, holder string) (time.Time, error) {
	deadline := time.Now().Add(in.d.LockWait)
	wait := 50 * time.Millisecond
	for {
		start := time.Now()
		ok, err := in.d.Store.AcquireLease(ctx, name, holder, in.d.LeaseTTL)
		if err != nil {
			return start, fmt.Errorf("%w: lease %s: %w", errRetry, name, err)
		}
		if ok {
			return start, nil
		}
		if time.Now().Add(wait).After(deadline) {
			return start, fmt.Errorf("%w: lease %s is held by another delivery", errRetry, name)
		}
		select {
		case <-ctx.Done():
			return start, fmt.Errorf("%w: %w", errRetry, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// retryable reports whether err must be retried by a later delivery rather
// than recorded: the store failed (nothing could be recorded anyway) or
// the work was interrupted (the installer is stopping, or lost its lease).
func retryable(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, errRetry) || errors.Is(err, store.ErrUnavailable) ||
		errors.Is(err, context.Canceled)
}

// install installs app if it is still INSTANTIATING.
func (in *Installer) install(ctx context.Context, app string, log *slog.Logger) error {
	st := in.d.Store
	inst, err := st.GetInstance(ctx, app)
	if errors.Is(err, store.ErrNotFound) {
		log.Info("nothing to install: the instance is gone")
		return nil
	}
	if err != nil {
		return err
	}
	if inst.State != store.InstanceInstantiating {
		log.Info("nothing to install", "state", inst.State)
		return nil
	}
	start := time.Now()
	log = log.With("release", inst.Release, "namespace", inst.Namespace)
	var kubeconfig []byte
	var credentials, rules bool
	var spec store.InstallSpec
	fail := func(step string, err error) error {
		if retryable(ctx, err) {
			return err
		}
		log.Error("instantiate failed", "step", step, "err", err)
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer ccancel()
		if kubeconfig != nil {
			if own, _, rerr := in.ours(cctx, kubeconfig, inst, spec); rerr == nil && own {
				if uerr := in.d.Cluster.Uninstall(cctx, kubeconfig, inst.Namespace, inst.Release); uerr != nil && !errors.Is(uerr, kube.ErrNotFound) {
					log.Error("uninstall after a failed instantiate", "err", uerr)
				}
			}
		}
		if rules {
			if derr := st.DeleteAppD(cctx, app); derr != nil && !errors.Is(derr, store.ErrNotFound) {
				log.Error("remove rules after a failed instantiate", "err", derr)
			}
		}
		if credentials {
			if derr := st.DeleteAppConf(cctx, app); derr != nil && !errors.Is(derr, store.ErrNotFound) {
				log.Error("remove credentials after a failed instantiate", "err", derr)
			}
		}
		inst.State, inst.Reason = store.InstanceFailed, step+": "+err.Error()
		if uerr := st.UpdateInstanceIf(cctx, inst, store.InstanceInstantiating); uerr != nil && !errors.Is(uerr, store.ErrConflict) && !errors.Is(uerr, store.ErrNotFound) {
			return fmt.Errorf("record failed instantiate: %w", uerr)
		}
		return nil
	}
	if spec, err = st.GetInstallSpec(ctx, app); err != nil {
		return fail("read install spec", err)
	}
	host, err := st.GetHostKubeconfig(ctx, inst.HostAddress)
	if err != nil {
		return fail("read MEC host "+inst.HostAddress, err)
	}
	kubeconfig = host.Kubeconfig
	ch, err := in.chart(ctx, spec)
	if err != nil {
		return fail("read package", err)
	}
	conf, err := st.GetAppConf(ctx, app)
	switch {
	case err == nil && conf.AccessKeyID == spec.AK:
		credentials = true // stored by an earlier delivery
	case err == nil || errors.Is(err, store.ErrNotFound):
		if _, err := st.PutAppConf(ctx, store.AppConf{AppInstanceID: app, AccessKeyID: spec.AK, SecretKey: spec.SK, AppName: inst.AppName}); err != nil {
			return fail("store credentials", err)
		}
		credentials = true
	default:
		return fail("store credentials", err)
	}
	if err := in.d.Cluster.EnsureNamespace(ctx, kubeconfig, inst.Namespace); err != nil {
		return fail("create namespace", err)
	}
	own, status, err := in.ours(ctx, kubeconfig, inst, spec)
	switch {
	case err != nil && !errors.Is(err, kube.ErrNotFound):
		return fail("helm status", err)
	case err == nil && !own:
		return fail("helm install: the release name is in use", fmt.Errorf("a release %s that is not this instance's exists in %s", inst.Release, inst.Namespace))
	case err == nil && status == "deployed":
		log.Info("release deployed by an earlier delivery")
	default:
		if err == nil {
			// Ours, but not deployed: an install that was interrupted.
			log.Info("removing an interrupted install of this instance", "status", status)
			if uerr := in.d.Cluster.Uninstall(ctx, kubeconfig, inst.Namespace, inst.Release); uerr != nil && !errors.Is(uerr, kube.ErrNotFound) {
				return fail("helm uninstall of an interrupted install", uerr)
			}
		}
		if err := in.d.Cluster.Install(ctx, kubeconfig, inst.Namespace, inst.Release, ch, spec.Values); err != nil {
			return fail("helm install", err)
		}
	}
	if len(spec.AppD.Traffic)+len(spec.AppD.DNS) > 0 {
		if _, err := st.CreateAppD(ctx, spec.AppD); err != nil && !errors.Is(err, store.ErrConflict) {
			return fail("apply APPD rules", err)
		}
		rules = true
	}
	inst.State, inst.Reason = store.InstanceInstantiated, ""
	if err := st.UpdateInstanceIf(ctx, inst, store.InstanceInstantiating); err != nil {
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			log.Info("installed, but the instance is being terminated meanwhile")
			return nil
		}
		return fail("record instance", err)
	}
	log.Info("instantiated", "took", time.Since(start).String())
	return nil
}

// ours reads the release of inst: whether it is this instance's (installed
// with its access key) and its status. kube.ErrNotFound when there is none.
func (in *Installer) ours(ctx context.Context, kubeconfig []byte, inst store.Instance, spec store.InstallSpec) (bool, string, error) {
	rel, err := in.d.Cluster.Release(ctx, kubeconfig, inst.Namespace, inst.Release)
	if err != nil {
		return false, "", err
	}
	ak, _ := rel.Values["ak"].(string)
	return spec.AK != "" && ak == spec.AK, rel.Status, nil
}

// chart loads the package's chart from the bucket.
func (in *Installer) chart(ctx context.Context, spec store.InstallSpec) (*chart.Chart, error) {
	p, err := csar.Open(in.d.Objects.ReaderAt(ctx, spec.Object, spec.Size), spec.Size)
	if err != nil {
		return nil, err
	}
	tgz, err := p.Chart("")
	if err != nil {
		return nil, err
	}
	return kube.LoadChart(tgz)
}

// remove terminates app if it is TERMINATING.
func (in *Installer) remove(ctx context.Context, app string, graceful time.Duration, log *slog.Logger) error {
	st := in.d.Store
	inst, err := st.GetInstance(ctx, app)
	if errors.Is(err, store.ErrNotFound) {
		log.Info("nothing to terminate: the instance is gone")
		return nil
	}
	if err != nil {
		return err
	}
	if inst.State != store.InstanceTerminating {
		log.Info("nothing to terminate", "state", inst.State)
		return nil
	}
	log = log.With("release", inst.Release, "namespace", inst.Namespace)
	failed := func(step string, err error) error {
		if retryable(ctx, err) {
			return err
		}
		log.Error("terminate failed", "step", step, "err", err)
		inst.Reason = step + ": " + err.Error()
		if uerr := st.UpdateInstanceIf(context.WithoutCancel(ctx), inst, store.InstanceTerminating); uerr != nil &&
			!errors.Is(uerr, store.ErrNotFound) && !errors.Is(uerr, store.ErrConflict) {
			return fmt.Errorf("record failed terminate: %w", uerr)
		}
		return nil
	}
	if _, err := lifecycle.Terminate(ctx, st, app, graceful); err != nil {
		return failed("termination flow", err)
	}
	host, err := st.GetHostKubeconfig(ctx, inst.HostAddress)
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Warn("MEC host no longer registered: its release cannot be removed", "host", inst.HostAddress)
	case err != nil:
		return failed("read MEC host "+inst.HostAddress, err)
	default:
		spec, serr := st.GetInstallSpec(ctx, app)
		if serr != nil && !errors.Is(serr, store.ErrNotFound) {
			return failed("read install spec", serr)
		}
		own, _, rerr := in.ours(ctx, host.Kubeconfig, inst, spec)
		switch {
		case errors.Is(rerr, kube.ErrNotFound):
		case rerr != nil:
			return failed("helm status", rerr)
		case !own && serr == nil:
			log.Warn("the release of this name is not this instance's: left alone")
		default:
			if err := in.d.Cluster.Uninstall(ctx, host.Kubeconfig, inst.Namespace, inst.Release); err != nil && !errors.Is(err, kube.ErrNotFound) {
				return failed("helm uninstall", err)
			}
		}
	}
	if err := st.DeleteInstance(ctx, app); err != nil {
		return failed("delete record", err)
	}
	log.Info("terminated")
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
