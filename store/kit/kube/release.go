package kube

import (
	"context"
	"errors"
	"fmt"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/storage/driver"
)

// Release is what Helm's release record (a Secret) says of a release: its
// status and the values it was installed with. An installer that must act
// at most once reads it to tell its own release (its values) from another.
type Release struct {
	// Status is Helm's: deployed, failed, pending-install, uninstalling, ...
	Status string
	// Values are the values given at install (not the chart's defaults).
	Values map[string]any
}

// Release reads release name's Helm record. ErrNotFound when there is
// none. It reads only the record, none of the release's objects.
func (d *Deployer) Release(ctx context.Context, kubeconfig []byte, namespace, name string) (Release, error) {
	if err := ctx.Err(); err != nil {
		return Release{}, err
	}
	cfg, _, err := d.config(kubeconfig, namespace)
	if err != nil {
		return Release{}, err
	}
	rel, err := action.NewStatus(cfg).Run(name)
	if err != nil {
		if errors.Is(err, driver.ErrReleaseNotFound) {
			return Release{}, fmt.Errorf("release %s: %w", name, ErrNotFound)
		}
		return Release{}, classify("helm status "+name, err)
	}
	return Release{Status: rel.Info.Status.String(), Values: rel.Config}, nil
}
