# local/cluster/cluster.mk: kmep on a real single-node Kubernetes with
# Knative on this machine (no Docker, no kind): containerd + runc from
# Debian, Kubernetes, Knative and Traefik built from source, images built
# with ko into a registry on loopback. Included by the Makefile. Needs
# root; builds are cached in ~/.cache/kmep/cluster.
.PHONY: cluster-up deploy smoke cluster-env cluster-down e2e
cluster-up: ## Build (once) and start the local cluster with Knative Serving and Eventing; base URL 127.0.0.1:$KMEP_CLUSTER_PORT (8080).
	./local/cluster/up.sh

deploy: ## Apply manifests/ to the local cluster (images by ko, Secrets by local/kind/secrets.sh), wait until all is Ready.
	./local/cluster/deploy.sh

smoke: ## The README walkthrough against the local cluster's base URL.
	./local/cluster/smoke.sh

cluster-env: ## Print KUBECONFIG, KUBECTL, KMEP_URL, KMEP_ADMIN_TOKEN exports for the local cluster: eval "$(make -s cluster-env)".
	@./local/cluster/env.sh

cluster-down: ## Stop the local cluster; leaves no process, mount, interface or iptables rule behind (safe to run twice).
	./local/cluster/down.sh

e2e: ## cluster-up, deploy, smoke, scale-to-zero and pod-kill checks, cluster-down; prints what it measured (slow; not in make test).
	$(GO) test -count=1 -v -timeout 120m -tags e2e ./local/cluster/e2e/
