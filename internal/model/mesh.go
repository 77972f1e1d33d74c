package model

// Mesh (trellis.dev/v1) is the file `trellis up -f` runs: every workload of a
// local mesh, how to start it, and which services it calls.
//
//	apiVersion: trellis.dev/v1
//	kind: Mesh
//	metadata: {name: bookinfo}
//	spec:
//	  entry: {workload: productpage-v1, path: /productpage}
//	  workloads:
//	  - name: productpage-v1
//	    service: productpage
//	    labels: {version: v1}
//	    demo: productpage            # or: command: ["./my-app", "--flag"]
//	    port: {port: 9080, protocol: http}
//	    upstreams: [details, reviews]
//
// Other documents in the same file (VirtualService, DestinationRule...) are
// applied to the control plane once it is up.
type Mesh struct {
	TypeMeta   `json:",inline"`
	ObjectMeta `json:"metadata"`
	Spec       MeshSpec `json:"spec"`
}

// MeshSpec lists the workloads to run.
type MeshSpec struct {
	// Entry names the page `trellis up` prints: the workload whose app serves it
	// and the path.
	Entry     *MeshEntry     `json:"entry,omitempty"`
	Workloads []MeshWorkload `json:"workloads"`
}

// MeshEntry is the page a user opens first.
type MeshEntry struct {
	Workload string `json:"workload"`
	Path     string `json:"path,omitempty"`
}

// MeshWorkload is one workload of a Mesh file.
type MeshWorkload struct {
	Name           string            `json:"name"`
	Service        string            `json:"service"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Labels         map[string]string `json:"labels,omitempty"`
	// Demo runs the built-in demo app of that name (see examples/demoapp).
	// Exactly one of Demo and Command is set.
	Demo string `json:"demo,omitempty"`
	// Command runs an arbitrary program. It receives its listen address in
	// PORT / TRELLIS_APP_ADDR and its upstreams in TRELLIS_UPSTREAM_<SERVICE>.
	Command   []string          `json:"command,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Port      MeshPort          `json:"port"`
	Upstreams []string          `json:"upstreams,omitempty"`
}

// MeshPort is the port a workload's app serves.
type MeshPort struct {
	Port     uint32   `json:"port,omitempty"`     // logical service port; defaults to 80
	Protocol Protocol `json:"protocol,omitempty"` // defaults to http
}

// Key implements Object.
func (m *Mesh) Key() Key { return Key{Kind: KindMesh, Namespace: m.NamespaceOrDefault(), Name: m.Name} }
