// Package kube installs, inspects and removes app releases on a MEC host's
// Kubernetes cluster: charts are rendered and installed with the Helm SDK
// (release storage in Secrets), namespaces and workload readiness go
// through client-go. Every call takes the host's kubeconfig; nothing is
// kept between calls.
package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	kubefake "helm.sh/helm/v3/pkg/kube/fake"
	"helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Errors. Check them with errors.Is / errors.As.
var (
	// ErrUnreachable: the cluster could not be reached or failed.
	ErrUnreachable = errors.New("cluster unreachable")
	// ErrNotFound: no such release.
	ErrNotFound = errors.New("release not found")
	// ErrBadKubeconfig: the host's kubeconfig cannot be used.
	ErrBadKubeconfig = errors.New("unusable kubeconfig")
)

// RenderError is a chart that Helm cannot load or render; Message is Helm's.
type RenderError struct{ Message string }

func (e *RenderError) Error() string { return "chart render: " + e.Message }

// Deployer runs Helm and client-go against clusters. The zero value is not
// usable; use New.
type Deployer struct {
	log     *slog.Logger
	timeout time.Duration
}

// Options configure a Deployer.
type Options struct {
	// Log is the logger (Helm's debug lines go to it at Debug). Zero value:
	// slog.Default().
	Log *slog.Logger
	// Timeout bounds each request to the API server. Zero value: 10 s.
	Timeout time.Duration
}

// New returns a Deployer.
func New(o Options) *Deployer {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Timeout == 0 {
		o.Timeout = 10 * time.Second
	}
	return &Deployer{log: o.Log, timeout: o.Timeout}
}

// getter is Helm's RESTClientGetter over a kubeconfig held in memory.
type getter struct {
	cc        clientcmd.ClientConfig
	namespace string
	timeout   time.Duration
	disc      discovery.CachedDiscoveryInterface
}

func newGetter(kubeconfig []byte, namespace string, timeout time.Duration) (*getter, error) {
	raw, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKubeconfig, err)
	}
	cc := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{Context: clientcmdapi.Context{Namespace: namespace}})
	return &getter{cc: cc, namespace: namespace, timeout: timeout}, nil
}

func (g *getter) ToRESTConfig() (*rest.Config, error) {
	c, err := g.cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKubeconfig, err)
	}
	c.Timeout = g.timeout
	c.QPS, c.Burst = 100, 200
	return c, nil
}

func (g *getter) ToDiscoveryClient() (discovery.CachedDiscoveryInterface, error) {
	if g.disc != nil {
		return g.disc, nil
	}
	c, err := g.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return nil, err
	}
	g.disc = memory.NewMemCacheClient(dc)
	return g.disc, nil
}

func (g *getter) ToRESTMapper() (meta.RESTMapper, error) {
	dc, err := g.ToDiscoveryClient()
	if err != nil {
		return nil, err
	}
	return restmapper.NewShortcutExpander(restmapper.NewDeferredDiscoveryRESTMapper(dc), dc, nil), nil
}

func (g *getter) ToRawKubeConfigLoader() clientcmd.ClientConfig { return g.cc }

func (d *Deployer) config(kubeconfig []byte, namespace string) (*action.Configuration, *getter, error) {
	g, err := newGetter(kubeconfig, namespace, d.timeout)
	if err != nil {
		return nil, nil, err
	}
	cfg := new(action.Configuration)
	logf := func(format string, v ...any) { d.log.Debug("helm: " + fmt.Sprintf(format, v...)) }
	if err := cfg.Init(g, namespace, "secret", logf); err != nil {
		return nil, nil, classify("helm init", err)
	}
	return cfg, g, nil
}

// LoadChart loads a chart archive (.tgz). A broken chart is a *RenderError.
func LoadChart(tgz []byte) (*chart.Chart, error) {
	ch, err := loader.LoadArchive(bytes.NewReader(tgz))
	if err != nil {
		return nil, &RenderError{Message: err.Error()}
	}
	return ch, nil
}

// Render renders the chart with values without a cluster (Helm's
// client-only dry run): a chart that cannot render is a *RenderError and
// nothing is sent anywhere.
func (d *Deployer) Render(ch *chart.Chart, name, namespace string, values map[string]any) error {
	cfg := &action.Configuration{
		Releases:     storage.Init(driver.NewMemory()),
		KubeClient:   &kubefake.PrintingKubeClient{},
		Capabilities: chartutil.DefaultCapabilities,
		Log:          func(string, ...any) {},
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace = name, namespace
	in.DryRun, in.ClientOnly, in.Replace = true, true, true
	if _, err := in.Run(ch, values); err != nil {
		return &RenderError{Message: err.Error()}
	}
	return nil
}

// Reachable asks the cluster for its version: ErrUnreachable when it does
// not answer, ErrBadKubeconfig when the kubeconfig cannot be used.
func (d *Deployer) Reachable(ctx context.Context, kubeconfig []byte) error {
	cs, err := d.clientset(kubeconfig, "default")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, min(d.timeout, 5*time.Second))
	defer cancel()
	_, err = cs.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return fmt.Errorf("reach cluster: %w: %v", ErrUnreachable, err)
	}
	return nil
}

// EnsureNamespace creates namespace when it does not exist.
func (d *Deployer) EnsureNamespace(ctx context.Context, kubeconfig []byte, namespace string) error {
	cs, err := d.clientset(kubeconfig, namespace)
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return classify("get namespace "+namespace, err)
	}
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "kmep"}}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return classify("create namespace "+namespace, err)
}

func (d *Deployer) clientset(kubeconfig []byte, namespace string) (*kubernetes.Clientset, error) {
	g, err := newGetter(kubeconfig, namespace, d.timeout)
	if err != nil {
		return nil, err
	}
	return g.clientset()
}

// clientset is a client-go clientset over the getter's REST config.
func (g *getter) clientset() (*kubernetes.Clientset, error) {
	rc, err := g.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(rc)
}

// Install installs the chart as release name in namespace. It does not wait
// for pods. When the install fails after creating something, what it
// created is uninstalled before the error is returned.
func (d *Deployer) Install(ctx context.Context, kubeconfig []byte, namespace, name string, ch *chart.Chart, values map[string]any) error {
	cfg, _, err := d.config(kubeconfig, namespace)
	if err != nil {
		return err
	}
	in := action.NewInstall(cfg)
	in.ReleaseName, in.Namespace = name, namespace
	in.Timeout = d.timeout
	in.DisableOpenAPIValidation = true
	_, err = in.RunWithContext(ctx, ch, values)
	if err == nil {
		return nil
	}
	ierr := classify("helm install "+name, err)
	// Helm records a failed release: remove it and whatever it created. A
	// release that is deployed is someone else's (the name was in use) and
	// stays.
	rel, serr := action.NewStatus(cfg).Run(name)
	if serr == nil && (rel.Info.Status == release.StatusFailed || rel.Info.Status == release.StatusPendingInstall) {
		if uerr := d.Uninstall(context.WithoutCancel(ctx), kubeconfig, namespace, name); uerr != nil && !errors.Is(uerr, ErrNotFound) {
			d.log.Error("failed install could not be uninstalled", "release", name, "namespace", namespace, "err", uerr)
		}
	}
	return ierr
}

// Uninstall removes release name and its objects. ErrNotFound when there is
// no such release.
func (d *Deployer) Uninstall(ctx context.Context, kubeconfig []byte, namespace, name string) error {
	cfg, _, err := d.config(kubeconfig, namespace)
	if err != nil {
		return err
	}
	un := action.NewUninstall(cfg)
	un.Timeout = d.timeout
	_, err = un.Run(name)
	if err != nil && errors.Is(err, driver.ErrReleaseNotFound) {
		return fmt.Errorf("uninstall %s: %w", name, ErrNotFound)
	}
	return classify("helm uninstall "+name, err)
}

// Workload is one Deployment, StatefulSet or DaemonSet of a release.
type Workload struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Desired int32  `json:"desired"`
	Ready   int32  `json:"ready"`
	// Failure is the kubelet's reason why a pod of the workload cannot
	// start (PodFailureReasons), "pod P container C: Reason: message".
	Failure string `json:"failure,omitempty"`
}

// PodFailureReasons are the container waiting reasons that Status reports
// as a failure: the kubelet cannot start the container as specified (its
// image cannot be pulled, its configuration is wrong), which waiting does
// not mend. CrashLoopBackOff and the like are only "not ready".
var PodFailureReasons = []string{"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
	"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}

// Status is a release's state on the cluster.
type Status struct {
	// Release is Helm's status: deployed, failed, pending-install, ...
	Release string `json:"releaseStatus"`
	// Resources are the release's objects as "Kind/name".
	Resources []string   `json:"resources"`
	Workloads []Workload `json:"workloads"`
	// Ready is true when every workload has all its replicas ready.
	Ready bool `json:"ready"`
	// Message explains what is not ready.
	Message string `json:"message,omitempty"`
	// Failure is the first workload's Failure: the release cannot become
	// ready as it is.
	Failure string `json:"failure,omitempty"`
}

// Status reads release name's Helm status and its workloads' readiness.
// ErrNotFound when there is no such release.
func (d *Deployer) Status(ctx context.Context, kubeconfig []byte, namespace, name string) (Status, error) {
	cfg, g, err := d.config(kubeconfig, namespace)
	if err != nil {
		return Status{}, err
	}
	rel, err := action.NewStatus(cfg).Run(name)
	if err != nil {
		if errors.Is(err, driver.ErrReleaseNotFound) {
			return Status{}, fmt.Errorf("status %s: %w", name, ErrNotFound)
		}
		return Status{}, classify("helm status "+name, err)
	}
	st := Status{Release: rel.Info.Status.String(), Resources: []string{}, Workloads: []Workload{}}
	resources, err := cfg.KubeClient.Build(bytes.NewBufferString(rel.Manifest), false)
	if err != nil {
		return st, classify("read release manifest", err)
	}
	cs, err := g.clientset() // the kubeconfig Helm's client was built from, parsed once
	if err != nil {
		return st, err
	}
	var notReady []string
	for _, r := range resources {
		kind := r.Mapping.GroupVersionKind.Kind
		st.Resources = append(st.Resources, kind+"/"+r.Name)
		w := Workload{Kind: kind, Name: r.Name}
		var sel *metav1.LabelSelector
		switch kind {
		case "Deployment":
			o, err := cs.AppsV1().Deployments(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return st, classify("get deployment "+r.Name, err)
			}
			w.Desired, w.Ready, sel = 1, o.Status.ReadyReplicas, o.Spec.Selector
			if o.Spec.Replicas != nil {
				w.Desired = *o.Spec.Replicas
			}
		case "StatefulSet":
			o, err := cs.AppsV1().StatefulSets(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return st, classify("get statefulset "+r.Name, err)
			}
			w.Desired, w.Ready, sel = 1, o.Status.ReadyReplicas, o.Spec.Selector
			if o.Spec.Replicas != nil {
				w.Desired = *o.Spec.Replicas
			}
		case "DaemonSet":
			o, err := cs.AppsV1().DaemonSets(r.Namespace).Get(ctx, r.Name, metav1.GetOptions{})
			if err != nil {
				return st, classify("get daemonset "+r.Name, err)
			}
			w.Desired, w.Ready, sel = o.Status.DesiredNumberScheduled, o.Status.NumberReady, o.Spec.Selector
		default:
			continue
		}
		if w.Ready < w.Desired {
			if w.Failure, err = podFailure(ctx, cs, r.Namespace, sel); err != nil {
				return st, classify("list pods of "+r.Name, err)
			}
			notReady = append(notReady, fmt.Sprintf("%s/%s %d/%d ready", w.Kind, w.Name, w.Ready, w.Desired))
			if st.Failure == "" && w.Failure != "" {
				st.Failure = kind + "/" + r.Name + ": " + w.Failure
			}
		}
		st.Workloads = append(st.Workloads, w)
	}
	st.Ready = rel.Info.Status == release.StatusDeployed && len(notReady) == 0
	switch {
	case rel.Info.Status != release.StatusDeployed:
		st.Message = "release is " + rel.Info.Status.String()
	case len(notReady) > 0:
		st.Message = "pods not ready: " + strings.Join(notReady, ", ")
	}
	return st, nil
}

// podFailure is the first PodFailureReasons waiting reason of a container
// (init containers first) of the pods that sel selects in namespace, ""
// when there is none.
func podFailure(ctx context.Context, cs kubernetes.Interface, namespace string, sel *metav1.LabelSelector) (string, error) {
	if sel == nil {
		return "", nil
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || selector.Empty() {
		return "", nil
	}
	pods, err := cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		for _, c := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
			if wt := c.State.Waiting; wt != nil && slices.Contains(PodFailureReasons, wt.Reason) {
				return fmt.Sprintf("pod %s container %s: %s: %s", p.Name, c.Name, wt.Reason, wt.Message), nil
			}
		}
	}
	return "", nil
}

// classify marks errors of reaching the cluster as ErrUnreachable.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrBadKubeconfig) || errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: %w", op, err)
	}
	var ue *url.Error
	var ne net.Error
	var se apierrors.APIStatus
	switch {
	case errors.As(err, &ue), errors.As(err, &ne), errors.Is(err, context.DeadlineExceeded),
		strings.Contains(err.Error(), "Kubernetes cluster unreachable"), strings.Contains(err.Error(), "connection refused"):
		return fmt.Errorf("%s: %w: %v", op, ErrUnreachable, err)
	case errors.As(err, &se) && se.Status().Code >= 500:
		return fmt.Errorf("%s: %w: %v", op, ErrUnreachable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}
