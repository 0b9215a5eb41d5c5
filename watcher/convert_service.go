package watcher

import (
	"fmt"
	"net/netip"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/switchyard/switchyard/proxier/model"
)

// The label the watcher reads (kube-proxy's), and the API's affinity defaults and limits.
const (
	// LabelServiceProxyName marks a Service (and its EndpointSlices) as handled by another proxy.
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	// proxySelector is the server-side label selector kube-proxy uses for Services and EndpointSlices:
	// nothing another proxy owns, and no headless service's slices.
	proxySelector = "!" + LabelServiceProxyName + ",!" + v1.IsHeadlessService

	// defaultAffinityTimeout is the API's default for sessionAffinityConfig.clientIP.timeoutSeconds.
	defaultAffinityTimeout = 10800
	// maxAffinityTimeout is the largest timeout the API accepts (one day).
	maxAffinityTimeout = 86400
)

// Rejection reasons. They are the values of the "reason" label of metrics.InvalidObjectsTotal, so they
// are short, fixed strings.
const (
	reasonInvalidIP        = "invalid-ip"
	reasonWrongFamily      = "wrong-family"
	reasonPortRange        = "port-range"
	reasonProtocol         = "protocol"
	reasonSourceRange      = "source-range"
	reasonAffinityTimeout  = "affinity-timeout"
	reasonDuplicatePort    = "duplicate-port"
	reasonServiceType      = "service-type"
	reasonMissingPort      = "missing-port"
	reasonNoAddress        = "no-address"
	reasonNoServiceName    = "no-service-name"
	kindService            = "service"
	kindEndpointSlice      = "endpointslice"
	defaultProtocolOnEmpty = model.TCP
)

// rejection is one part of an API object the watcher refused to model.
type rejection struct {
	Kind   string // kindService or kindEndpointSlice
	Object string // namespace/name of the API object
	Part   string // the service port or endpoint concerned, "" when the whole object is refused
	Reason string // one of the reason* constants
	Detail string // the offending value, for the log line
}

func (r rejection) String() string {
	return fmt.Sprintf("%s %s %s: %s (%s)", r.Kind, r.Object, r.Part, r.Reason, r.Detail)
}

// convertService turns a Service into the model's service ports, keyed by port name. Ports it cannot
// model are left out and described in the returned rejections; the other ports of the same service are
// kept. Source ranges that do not parse are left out and described there too. A service Switchyard
// does not proxy at all (headless, ExternalName, another proxy's) yields no ports and no rejections.
// It never panics, whatever svc holds.
func convertService(svc *v1.Service) (map[model.ServicePortName]*model.ServicePort, []rejection) {
	key := model.ServiceKey{Namespace: svc.Namespace, Name: svc.Name}
	if reason := skipReason(svc); reason != "" {
		klog.V(4).InfoS("Not proxying service", "service", key, "reason", reason)
		return nil, nil
	}
	var rejects []rejection
	rejectAll := func(reason, detail string) (map[model.ServicePortName]*model.ServicePort, []rejection) {
		for _, p := range svc.Spec.Ports {
			rejects = append(rejects, rejection{Kind: kindService, Object: key.String(), Part: portLabel(p.Name),
				Reason: reason, Detail: detail})
		}
		if len(svc.Spec.Ports) == 0 {
			rejects = append(rejects, rejection{Kind: kindService, Object: key.String(), Reason: reason, Detail: detail})
		}
		return nil, rejects
	}

	switch svc.Spec.Type {
	case "", v1.ServiceTypeClusterIP, v1.ServiceTypeNodePort, v1.ServiceTypeLoadBalancer:
		// The API server defaults an empty type to ClusterIP; fakes and old objects may not have it.
	default:
		return rejectAll(reasonServiceType, string(svc.Spec.Type))
	}

	// Everything below is shared by all ports of the service, so a fault in it rejects every port.
	shared, reason, detail := convertServiceShared(svc)
	if reason != "" {
		return rejectAll(reason, detail)
	}

	// A source range that does not parse costs only itself, as in kube-proxy.
	var badRanges []string
	shared.LoadBalancerSourceRanges, badRanges = sourceRanges(svc.Spec.LoadBalancerSourceRanges)
	for _, r := range badRanges {
		rejects = append(rejects, rejection{Kind: kindService, Object: key.String(), Part: "loadBalancerSourceRanges",
			Reason: reasonSourceRange, Detail: r})
	}

	ports := make(map[model.ServicePortName]*model.ServicePort, len(svc.Spec.Ports))
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		name := model.ServicePortName{ServiceKey: key, Port: p.Name}
		reason, detail := checkServicePort(p)
		if reason == "" {
			if _, dup := ports[name]; dup {
				reason, detail = reasonDuplicatePort, p.Name
			}
		}
		if reason != "" {
			rejects = append(rejects, rejection{Kind: kindService, Object: key.String(), Part: portLabel(p.Name),
				Reason: reason, Detail: detail})
			continue
		}
		sp := *shared // copy: each port gets its own immutable value
		sp.Name = name
		sp.Protocol = protocolOf(p.Protocol)
		sp.Port = p.Port
		sp.NodePort = p.NodePort
		ports[name] = &sp
	}
	if len(ports) == 0 {
		return nil, rejects
	}
	return ports, rejects
}

// skipReason says why a service is not proxied at all, or "" if it is.
func skipReason(svc *v1.Service) string {
	switch {
	case hasKey(svc.Labels, LabelServiceProxyName):
		return "handled by another proxy"
	case svc.Spec.Type == v1.ServiceTypeExternalName:
		return "ExternalName service"
	case svc.Spec.ClusterIP == v1.ClusterIPNone || len(svc.Spec.ClusterIPs) > 0 && svc.Spec.ClusterIPs[0] == v1.ClusterIPNone:
		return "headless service"
	case svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) == 0:
		return "no cluster IP"
	}
	return ""
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// convertServiceShared converts the fields every port of svc shares. On bad input it returns the
// rejection reason and the offending value.
func convertServiceShared(svc *v1.Service) (sp *model.ServicePort, reason, detail string) {
	sp = &model.ServicePort{}

	clusterIPs := svc.Spec.ClusterIPs
	if len(clusterIPs) == 0 {
		clusterIPs = []string{svc.Spec.ClusterIP}
	}
	for i, s := range clusterIPs {
		ip, err := parseIP(s)
		if err != nil {
			return nil, reasonInvalidIP, "clusterIP " + s
		}
		// spec.ipFamilies[i] names the family of spec.clusterIPs[i].
		if i < len(svc.Spec.IPFamilies) && !familyMatches(svc.Spec.IPFamilies[i], ip) {
			return nil, reasonWrongFamily, fmt.Sprintf("clusterIP %s is not %s", s, svc.Spec.IPFamilies[i])
		}
		for _, prev := range sp.ClusterIPs {
			if familyOfAddr(prev) == familyOfAddr(ip) {
				return nil, reasonWrongFamily, "two clusterIPs of one family: " + s
			}
		}
		sp.ClusterIPs = append(sp.ClusterIPs, ip)
	}

	for _, s := range svc.Spec.ExternalIPs {
		ip, err := parseIP(s)
		if err != nil {
			return nil, reasonInvalidIP, "externalIP " + s
		}
		sp.ExternalIPs = append(sp.ExternalIPs, ip)
	}

	for _, ing := range svc.Status.LoadBalancer.Ingress {
		if ing.IP == "" {
			continue // a hostname-only ingress is nothing a node can program
		}
		// kube-proxy leaves "Proxy"-mode ingress IPs to the load balancer, which sends traffic to the
		// node rather than to the IP.
		if ing.IPMode != nil && *ing.IPMode == v1.LoadBalancerIPModeProxy {
			continue
		}
		ip, err := parseIP(ing.IP)
		if err != nil {
			return nil, reasonInvalidIP, "load-balancer ingress " + ing.IP
		}
		sp.LoadBalancerIPs = append(sp.LoadBalancerIPs, ip)
	}

	if svc.Spec.SessionAffinity == v1.ServiceAffinityClientIP {
		timeout := int32(defaultAffinityTimeout)
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			timeout = *c.ClientIP.TimeoutSeconds
		}
		if timeout <= 0 || timeout > maxAffinityTimeout {
			return nil, reasonAffinityTimeout, fmt.Sprint(timeout)
		}
		sp.Affinity = model.SessionAffinity{ClientIP: true, TimeoutSeconds: timeout}
	}

	sp.ExternalPolicy = model.PolicyCluster
	if svc.Spec.ExternalTrafficPolicy == v1.ServiceExternalTrafficPolicyLocal {
		sp.ExternalPolicy = model.PolicyLocal
	}
	sp.InternalPolicy = model.PolicyCluster
	if p := svc.Spec.InternalTrafficPolicy; p != nil && *p == v1.ServiceInternalTrafficPolicyLocal {
		sp.InternalPolicy = model.PolicyLocal
	}

	// Like kube-proxy, the health-check node port only matters for eTP=Local load balancers.
	if svc.Spec.Type == v1.ServiceTypeLoadBalancer && sp.ExternalPolicy == model.PolicyLocal {
		if !validPortOrZero(svc.Spec.HealthCheckNodePort) {
			return nil, reasonPortRange, fmt.Sprintf("healthCheckNodePort %d", svc.Spec.HealthCheckNodePort)
		}
		sp.HealthCheckNodePort = svc.Spec.HealthCheckNodePort
	}

	sp.TrafficDistribution = trafficDistribution(svc)
	return sp, "", ""
}

// sourceRanges reads spec.loadBalancerSourceRanges as kube-proxy v1.37 does: each entry trimmed of
// the whitespace the API validation lets through, empty ones skipped, and one that does not parse
// left out (returned in bad, to be logged and counted) rather than failing the service. Only the spec
// field is read: kube-proxy ignores the service.beta.kubernetes.io/load-balancer-source-ranges
// annotation, which only the API server and cloud providers look at. Family filtering and the
// meaning of 0.0.0.0/0 are the backends' (model.ServicePort.SourceRangesFor).
func sourceRanges(spec []string) (ranges []netip.Prefix, bad []string) {
	for _, s := range spec {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := parsePrefix(s)
		if err != nil {
			bad = append(bad, s)
			continue
		}
		ranges = append(ranges, p)
	}
	return ranges, bad
}

// trafficDistribution returns spec.trafficDistribution verbatim. The topology-mode annotation (and
// the older topology-aware-hints one) is left alone: kube-proxy v1.37 reads neither the field nor the
// annotations, only the hints the EndpointSlice controller derives from them (v1.31 already ignored
// the annotations under its default feature gates), and model.Categorize does the same.
func trafficDistribution(svc *v1.Service) string {
	if td := svc.Spec.TrafficDistribution; td != nil {
		return *td
	}
	return ""
}

// checkServicePort validates the per-port fields of p.
func checkServicePort(p *v1.ServicePort) (reason, detail string) {
	if !validProtocol(p.Protocol) {
		return reasonProtocol, string(p.Protocol)
	}
	if p.Port < 1 || p.Port > 65535 {
		return reasonPortRange, fmt.Sprintf("port %d", p.Port)
	}
	if !validPortOrZero(p.NodePort) {
		return reasonPortRange, fmt.Sprintf("nodePort %d", p.NodePort)
	}
	return "", ""
}

func validPortOrZero(p int32) bool { return p >= 0 && p <= 65535 }

func validProtocol(p v1.Protocol) bool {
	switch p {
	case "", v1.ProtocolTCP, v1.ProtocolUDP, v1.ProtocolSCTP:
		return true
	}
	return false
}

// protocolOf maps a validated API protocol to the model's; the API defaults an empty one to TCP.
func protocolOf(p v1.Protocol) model.Protocol {
	if p == "" {
		return defaultProtocolOnEmpty
	}
	return model.Protocol(p)
}

// portLabel names a service port in logs: its name, or "(unnamed)".
func portLabel(name string) string {
	if name == "" {
		return "(unnamed)"
	}
	return name
}
