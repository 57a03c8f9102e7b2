# local/kind/kind.mk: kmep on a local Knative cluster (kind + kn quickstart).
# Included by the Makefile. Needs Docker, kind, kn with the quickstart
# plugin, ko, kubectl (and jq, openssl, curl for smoke and secrets).
KIND_CLUSTER_NAME ?= knative
KO_DOCKER_REPO    ?= kind.local
export KIND_CLUSTER_NAME KO_DOCKER_REPO

.PHONY: kind-up kind-deploy kind-smoke kind-down deploy-kn
kind-up: ## Create a kind cluster with Knative Serving (Kourier) and Eventing: kn quickstart kind.
	sh local/kind/kind-up.sh

kind-deploy: ## Build the images with ko into the kind cluster and apply manifests/ (ko apply).
	sh local/kind/deploy.sh

kind-smoke: ## The README walkthrough against the kind cluster's function URLs.
	KMEP_SMOKE_KSVC_URLS=1 ./local/cluster/smoke.sh

kind-down: ## Delete the kind cluster.
	kind delete cluster --name $(KIND_CLUSTER_NAME)

deploy-kn: ## Deploy with ko build + kn service apply / kn broker / kn trigger (the by-hand path).
	sh local/kind/deploy-kn.sh
