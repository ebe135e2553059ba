"""The local node agent: our stand-in for kubelet + a container runtime (`kstudio-dev node-agent --config F`).

Runs the pods bound to one Node as processes: each pod gets a network namespace wired by the CNI loopback
and bridge/host-local plugins; each container is a process in that netns with its own mount, UTS and IPC
namespaces, a root filesystem built from read-only binds (host /usr, /etc, the Python prefix, the checkout
that is the `kstudio` image) plus the pod's volumes, the pod's user, and a memory cgroup. Status, probes,
restarts, hooks, termination and `kubectl logs` behave as kubelet's do.

Where things are (stateDir from the config):
    pods/<uid>/volumes/<name>       volume contents (secret/configMap/projected via an atomic ..data link)
    pods/<uid>/logs/<ctr>/<n>.log   CRI-format log of restart n (what /containerLogs serves)
    pods/<uid>/termination/<ctr>-n  the file bind-mounted at terminationMessagePath
    pods/<uid>/specs/<ctr>.json     the launcher's spec (0600; removed once the container has started)
    cni-ipam/                       host-local IP reservations
    /sys/fs/cgroup/memory/<cgroupParent>/<uid>/<ctr>  container cgroup (cgroup.procs = its processes)
    /var/run/netns/<podNetnsPrefix><uid[:12]>          the pod's network namespace

On start the agent removes whatever a previous instance left (processes via cgroups, netns, IPs) and takes
over the pods still bound to the node; on SIGTERM it stops its pods' processes and sandboxes (API objects
are left alone). Kept import-light: launcher.py runs as a script from here.
"""
