# Switchyard's image: the daemon and its CNI plugin, built static, on a small Debian base that carries
# only the user-space tools the code runs. Nothing in this repository's CI builds it (the project's
# machine has no container engine); build it yourself:
#   docker build -t REGISTRY/switchyard:TAG . && docker push REGISTRY/switchyard:TAG
# then set that image in the overlay you apply (see deploy/README.md).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY internal ./internal
COPY podnet ./podnet
COPY proxier ./proxier
COPY watcher ./watcher
# Static binaries: no libc dependency, so the runtime base only needs the tools below.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/switchyard ./cmd/switchyard-cni

FROM debian:bookworm-slim
# What the code execs, and nothing else:
#   iptables   iptables-{nft,legacy}{,-save,-restore} (both variants: the daemon programs the one the
#              node's kubelet uses) and plain iptables/iptables-restore (the pod network's masquerade);
#   conntrack  conntrack(8), run by the IPVS backend to clear stale UDP flows;
#   kmod       modprobe, for IPVS modules and the init steps of the ipvs and pod-network overlays.
# Not needed: ipset (the IPVS backend drives ipsets over netlink) and iproute2 (netlink too).
# /bin/sh, cp and mv (the install-cni init step) come with the base.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables conntrack kmod \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/switchyard /out/switchyard-cni /usr/local/bin/
ENTRYPOINT ["/usr/local/bin/switchyard"]
