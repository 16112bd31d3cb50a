# Switchboard: the two commands of a fresh machine are `make run` and
# `make test`; everything they need is installed by scripts/ensure-deps.sh.

CARGO ?= cargo
DATA_DIR ?= ./data

.PHONY: run test attacks deps build release lint fmt bench soak clean

## Run switchboard-signaling on its embedded defaults (SIP 5060 UDP+TCP,
## REST on 8080, SQLite under ./data) and the dashboard on :3000 pointed at
## it (scripts/run.sh); Ctrl-C stops both.
run: deps
	$(CARGO) build --release --bin switchboard-signaling --bin switchboard-ui
	DATA_DIR=$(DATA_DIR) scripts/run.sh

## Lint and every test: unit, RFC 4475 torture, fuzz run, sipp scenarios;
## the deployment files too (check-deploy before, image-check after the
## tests, on the debug binaries they built; neither needs a cluster or an
## engine).
test: deps lint check-deploy
	$(CARGO) test --workspace --all-targets
	scripts/check-images.sh

## The attack suite alone (part of make test too): every test file named
## attacks_*.rs, each attack over real sockets on loopback.
attacks: deps
	$(CARGO) test --workspace $(patsubst %.rs,--test %,$(notdir $(wildcard crates/*/tests/attacks_*.rs)))

deps:
	@scripts/ensure-deps.sh

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Benchmarks against the reference systems (prints figures; not a test).
bench: deps release
	bench/run.sh
	bench/calls.sh
	BENCH_BUILD=0 bench/rtp.sh
	BENCH_BUILD=0 bench/tls.sh
	scripts/ensure-services.sh
	BENCH_BUILD=0 bench/cluster.sh
	BENCH_BUILD=0 bench/ui.sh

## Soak (not part of make test): SOAK_SECONDS (600) of calls at 80 % of
## the measured rate, media on a share, vanishing callers, a signaling
## restart in the middle; checks leaks, sessions, memory and CDRs.
soak: deps release
	bench/soak.sh

clean:
	$(CARGO) clean

# ---------------------------------------------------------------------------
# Containers and Kubernetes (k3s). README, "Kubernetes (k3s)".
# ---------------------------------------------------------------------------
.PHONY: check-deploy image-check docker-build docker-build-signaling docker-build-rtpmanager docker-build-ui \
	docker-build-operator docker-save k8s-load k8s-secret k8s-deploy k8s-delete k8s-status k8s-logs k8s-restart \
	k8s-operator-token

## Image names: $(IMAGE_REGISTRY)/$(IMAGE_PREFIX)-signaling:$(TAG). The full
## name keeps docker, podman (which would say localhost/...) and k3s'
## containerd agreeing on it; docker.io/library/ cannot be pushed to by
## anyone else, so a missing local image is an error, never someone's pull.
IMAGE_REGISTRY ?= docker.io/library
IMAGE_PREFIX ?= switchboard
IMAGES_DIR ?= build/images
## NO_BUILD=1: k8s-load/k8s-deploy take the tars already in $(IMAGES_DIR)
## (e.g. built on another machine with make docker-save) and their tag.
NO_BUILD ?=
ifneq ($(NO_BUILD),)
TAG ?= $(shell cat $(IMAGES_DIR)/TAG 2>/dev/null)
endif
## A new tag for every new build of other sources (deploy/image-tag.sh), so
## `make k8s-deploy` changes the pods' image and Kubernetes replaces them.
TAG ?= $(shell deploy/image-tag.sh)
SIGNALING_IMAGE = $(IMAGE_REGISTRY)/$(IMAGE_PREFIX)-signaling
RTPMANAGER_IMAGE = $(IMAGE_REGISTRY)/$(IMAGE_PREFIX)-rtpmanager
UI_IMAGE = $(IMAGE_REGISTRY)/$(IMAGE_PREFIX)-ui
OPERATOR_IMAGE = $(IMAGE_REGISTRY)/$(IMAGE_PREFIX)-operator
## the call agent's image, the operator's JOB_IMAGE (k8s-deploy sets it to
## $(CALL_IMAGE):$(TAG)); built from its own Dockerfile (crates/call-agent)
CALL_IMAGE = $(IMAGE_REGISTRY)/$(IMAGE_PREFIX)-call
## docker or podman; empty: whichever answers (a docker client whose daemon
## does not answer does not count)
ENGINE ?=
KUBECTL ?= kubectl
K8S_NAMESPACE ?= switchboard
## OVERLAY=multi-node (or tls, wss): deploy/k8s/overlays/<name> instead of deploy/k8s
OVERLAY ?=
K8S_DIR = deploy/k8s$(if $(OVERLAY),/overlays/$(OVERLAY))
SUDO = $(if $(filter 0,$(shell id -u)),,sudo)

# Picks the engine into $$e, or says what is missing and fails.
find_engine = e="$(ENGINE)"; \
	if [ -z "$$e" ]; then \
	  for c in docker podman; do \
	    if command -v $$c >/dev/null 2>&1 && $$c info >/dev/null 2>&1; then e=$$c; break; fi; \
	  done; \
	fi; \
	if [ -z "$$e" ]; then \
	  echo "no container engine answers:" >&2; \
	  if command -v docker >/dev/null 2>&1; then echo "  docker: the client is here, but its daemon does not answer (docker info fails): start it (systemctl start docker) or use podman" >&2; \
	  else echo "  docker: not installed (https://docs.docker.com/engine/install/)" >&2; fi; \
	  if command -v podman >/dev/null 2>&1; then echo "  podman: installed, but podman info fails" >&2; \
	  else echo "  podman: not installed (apt-get install podman)" >&2; fi; \
	  exit 1; \
	fi

## Deployment files without a cluster or an engine (also part of make test).
check-deploy: deps
	@scripts/check-deploy.sh

## The images' runtime stages against the debug binaries cargo test built
## (no engine, no release build): files, user, read-only root, health.
image-check:
	@scripts/check-images.sh

docker-build: docker-build-signaling docker-build-rtpmanager docker-build-ui docker-build-operator

docker-build-signaling:
	@$(find_engine); echo "$$e build -f Dockerfile.signaling -t $(SIGNALING_IMAGE):$(TAG)"; \
	DOCKER_BUILDKIT=1 $$e build -f Dockerfile.signaling -t $(SIGNALING_IMAGE):$(TAG) -t $(SIGNALING_IMAGE):latest .

docker-build-rtpmanager:
	@$(find_engine); echo "$$e build -f Dockerfile.rtpmanager -t $(RTPMANAGER_IMAGE):$(TAG)"; \
	DOCKER_BUILDKIT=1 $$e build -f Dockerfile.rtpmanager -t $(RTPMANAGER_IMAGE):$(TAG) -t $(RTPMANAGER_IMAGE):latest .

docker-build-ui:
	@$(find_engine); echo "$$e build -f Dockerfile.ui -t $(UI_IMAGE):$(TAG)"; \
	DOCKER_BUILDKIT=1 $$e build -f Dockerfile.ui -t $(UI_IMAGE):$(TAG) -t $(UI_IMAGE):latest .

docker-build-operator:
	@$(find_engine); echo "$$e build -f Dockerfile.operator -t $(OPERATOR_IMAGE):$(TAG)"; \
	DOCKER_BUILDKIT=1 $$e build -f Dockerfile.operator -t $(OPERATOR_IMAGE):$(TAG) -t $(OPERATOR_IMAGE):latest .

## One tar per image under $(IMAGES_DIR), and the tag they carry.
docker-save: docker-build
	@mkdir -p $(IMAGES_DIR)
	@$(find_engine); \
	for i in $(SIGNALING_IMAGE) $(RTPMANAGER_IMAGE) $(UI_IMAGE) $(OPERATOR_IMAGE); do \
	  f=$(IMAGES_DIR)/$${i##*/}.tar; rm -f $$f; \
	  $$e save -o $$f $$i:$(TAG) && echo "saved $$i:$(TAG) to $$f" || exit 1; \
	done; \
	echo "$(TAG)" > $(IMAGES_DIR)/TAG

## Imports the saved images into k3s' containerd (sudo k3s ctr images import).
k8s-load: $(if $(NO_BUILD),,docker-save)
	@[ -n "$(TAG)" ] || { echo "no $(IMAGES_DIR)/TAG: make docker-save first" >&2; exit 1; }
	@command -v k3s >/dev/null 2>&1 || { echo "k3s not found: install it (curl -sfL https://get.k3s.io | sh -), or import $(IMAGES_DIR)/*.tar into your cluster's runtime yourself" >&2; exit 1; }
	@for f in $(IMAGES_DIR)/$(IMAGE_PREFIX)-signaling.tar $(IMAGES_DIR)/$(IMAGE_PREFIX)-rtpmanager.tar $(IMAGES_DIR)/$(IMAGE_PREFIX)-ui.tar \
	  $(IMAGES_DIR)/$(IMAGE_PREFIX)-operator.tar; do \
	  echo "importing $$f into k3s"; $(SUDO) k3s ctr images import $$f || exit 1; \
	done

## The Secret, with random values, when it does not exist (never replaced).
k8s-secret:
	@KUBECTL="$(KUBECTL)" deploy/k8s/create-secret.sh $(K8S_NAMESPACE)

## Build, save, load into k3s, then apply $(K8S_DIR) with the new tag
## (a kustomization under build/k8s sets it; the repository stays as it is).
k8s-deploy: k8s-load k8s-secret
	@mkdir -p build/k8s
	@printf '%s\n' \
	  'apiVersion: kustomize.config.k8s.io/v1beta1' 'kind: Kustomization' \
	  'resources:' '  - ../../$(K8S_DIR)' 'images:' \
	  '  - name: switchboard-signaling' '    newName: $(SIGNALING_IMAGE)' '    newTag: "$(TAG)"' \
	  '  - name: switchboard-rtpmanager' '    newName: $(RTPMANAGER_IMAGE)' '    newTag: "$(TAG)"' \
	  '  - name: switchboard-ui' '    newName: $(UI_IMAGE)' '    newTag: "$(TAG)"' \
	  '  - name: switchboard-operator' '    newName: $(OPERATOR_IMAGE)' '    newTag: "$(TAG)"' \
	  'patches:' '  - patch: |-' '      apiVersion: apps/v1' '      kind: Deployment' \
	  '      metadata:' '        name: switchboard-operator' '      spec:' '        template:' \
	  '          spec:' '            containers:' '              - name: operator' '                env:' \
	  '                  - name: JOB_IMAGE' '                    value: "$(CALL_IMAGE):$(TAG)"' \
	  > build/k8s/kustomization.yaml
	$(KUBECTL) apply -k build/k8s
	@echo "deployed $(K8S_DIR) with images tagged $(TAG); make k8s-status to follow"

## Removes the workloads, Services, ConfigMaps and RBAC; keeps the namespace,
## the Secret and the Postgres/NATS volumes (kubectl delete namespace
## $(K8S_NAMESPACE) removes those too).
k8s-delete:
	$(KUBECTL) -n $(K8S_NAMESPACE) delete deployment,statefulset,service,configmap,poddisruptionbudget,rolebinding,role,serviceaccount \
	  -l app.kubernetes.io/part-of=switchboard --ignore-not-found

k8s-status:
	@$(KUBECTL) -n $(K8S_NAMESPACE) get pods,statefulsets,deployments,services,pvc -o wide
	@echo
	@$(KUBECTL) -n $(K8S_NAMESPACE) get endpointslices -l kubernetes.io/service-name=rtpmanager \
	  -o custom-columns='SLICE:.metadata.name,MANAGERS:.endpoints[*].targetRef.name,ADDRESSES:.endpoints[*].addresses[0],READY:.endpoints[*].conditions.ready,TERMINATING:.endpoints[*].conditions.terminating'

k8s-logs:
	$(KUBECTL) -n $(K8S_NAMESPACE) logs -l app.kubernetes.io/part-of=switchboard --all-containers --prefix -f --max-log-requests=20

## Replaces the signaling and RTP manager pods (same image). An RTP manager
## drains first: its pod may take up to an hour to go (README).
k8s-restart:
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout restart deployment/signaling statefulset/rtpmanager
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status deployment/signaling --timeout=10m
	@echo "rtpmanager pods drain one at a time: $(KUBECTL) -n $(K8S_NAMESPACE) rollout status statefulset/rtpmanager"

## The operator's API token (README, "Operator"): curl -H "Authorization: Bearer $$(make -s k8s-operator-token)"
k8s-operator-token:
	@$(KUBECTL) -n $(K8S_NAMESPACE) get secret switchboard-secrets -o jsonpath='{.data.OPERATOR_TOKEN}' | base64 -d; echo
