# shellcheck shell=bash
# Certificates and kubeconfigs for the local cluster, made with openssl. Source after common.sh.
# One CA signs everything; keys are EC P-256 because they are fast to generate.
# Each file is made once: re-running up keeps existing credentials valid for running processes.

SY_PKI="${SY_STATE}/pki"

# sy_cert NAME CN ORG [SAN] writes ${SY_PKI}/NAME.{key,crt}, signed by the cluster CA.
# ORG becomes the Kubernetes group of a client certificate; SAN makes it a serving certificate.
sy_cert() {
	local name="$1" cn="$2" org="$3" san="${4:-}"
	[[ -s "${SY_PKI}/${name}.crt" ]] && return 0
	local subj="/CN=${cn}"
	[[ -n "${org}" ]] && subj="/O=${org}${subj}"
	local ext="${SY_PKI}/${name}.ext"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [[ -n "${san}" ]]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=${san}"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"${ext}"
	openssl ecparam -name prime256v1 -genkey -noout -out "${SY_PKI}/${name}.key" 2>/dev/null
	openssl req -new -key "${SY_PKI}/${name}.key" -subj "${subj}" -out "${SY_PKI}/${name}.csr"
	openssl x509 -req -in "${SY_PKI}/${name}.csr" -CA "${SY_PKI}/ca.crt" -CAkey "${SY_PKI}/ca.key" \
		-CAcreateserial -days 30 -extfile "${ext}" -out "${SY_PKI}/${name}.crt.tmp" 2>/dev/null
	mv "${SY_PKI}/${name}.crt.tmp" "${SY_PKI}/${name}.crt"
	rm -f "${SY_PKI}/${name}.csr" "${ext}"
}

# sy_kubeconfig FILE CERTNAME [SERVER] writes a kubeconfig for SERVER (default
# https://127.0.0.1:6443) with embedded credentials, so it can be copied anywhere (a node namespace
# sees the same path anyway).
sy_kubeconfig() {
	local file="$1" cert="$2" server="${3:-https://127.0.0.1:${SY_APISERVER_PORT}}"
	[[ -s "${file}" ]] && return 0
	cat >"${file}.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: switchyard-local
  cluster:
    server: ${server}
    certificate-authority-data: $(base64 -w0 <"${SY_PKI}/ca.crt")
users:
- name: ${cert}
  user:
    client-certificate-data: $(base64 -w0 <"${SY_PKI}/${cert}.crt")
    client-key-data: $(base64 -w0 <"${SY_PKI}/${cert}.key")
contexts:
- name: switchyard-local
  context:
    cluster: switchyard-local
    user: ${cert}
current-context: switchyard-local
EOF
	chmod 600 "${file}.tmp"
	mv "${file}.tmp" "${file}"
}

# sy_make_pki creates the CA, the API server's serving certificate, the service-account key pair,
# client certificates for admin, controller-manager and each node, and their kubeconfigs.
sy_make_pki() {
	mkdir -p "${SY_PKI}"
	chmod 700 "${SY_PKI}"
	if [[ ! -s "${SY_PKI}/ca.crt" ]]; then
		openssl ecparam -name prime256v1 -genkey -noout -out "${SY_PKI}/ca.key" 2>/dev/null
		openssl req -x509 -new -key "${SY_PKI}/ca.key" -subj "/CN=switchyard-local-ca" -days 30 \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			-out "${SY_PKI}/ca.crt.tmp"
		mv "${SY_PKI}/ca.crt.tmp" "${SY_PKI}/ca.crt"
	fi
	# Nodes reach the API server on their own loopback through the relay, pods through the
	# kubernetes Service, the underlay through the advertised address, and the IPVS VM
	# (hack/vm) through qemu's user-mode gateway 10.0.2.2, which is this machine's loopback.
	local san="IP:127.0.0.1,IP:${SY_SERVICE_APISERVER_IP},IP:${SY_UNDERLAY_GW},IP:10.0.2.2,DNS:localhost"
	san+=",DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
	san+=",DNS:kubernetes.default.svc.cluster.local"
	sy_cert apiserver kube-apiserver "" "${san}"
	sy_cert admin switchyard-admin system:masters
	sy_cert controller-manager system:kube-controller-manager ""
	if [[ ! -s "${SY_PKI}/sa.key" ]]; then
		openssl ecparam -name prime256v1 -genkey -noout -out "${SY_PKI}/sa.key" 2>/dev/null
		openssl ec -in "${SY_PKI}/sa.key" -pubout -out "${SY_PKI}/sa.pub" 2>/dev/null
	fi
	sy_kubeconfig "${SY_STATE}/admin.kubeconfig" admin
	sy_kubeconfig "${SY_STATE}/controller-manager.kubeconfig" controller-manager
	# The IPVS VM (hack/vm) is one more node, reaching this machine's loopback through qemu's
	# user-mode gateway.
	sy_cert sy-vm "system:switchyard:sy-vm" switchyard:nodes
	sy_kubeconfig "${SY_STATE}/vm.kubeconfig" sy-vm "https://10.0.2.2:${SY_APISERVER_PORT}"
	local i node
	for ((i = 1; i <= SY_NODES; i++)); do
		node="$(sy_node_name "${i}")"
		# The group is bound to kube-proxy's system:node-proxier role and to switchyard's
		# node role (see controlplane.sh); the user name says which node is speaking.
		sy_cert "${node}" "system:switchyard:${node}" switchyard:nodes
		mkdir -p "${SY_STATE}/nodes/${node}"
		sy_kubeconfig "${SY_STATE}/nodes/${node}/kubeconfig" "${node}"
	done
}
