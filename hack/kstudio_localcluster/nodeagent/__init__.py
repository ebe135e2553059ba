"""The local node agent: our stand-in for kubelet + a container runtime.

Runs the pods bound to one Node as processes, each pod in its own network namespace (CNI bridge plugin),
each container in its own mount namespace with the pod's volumes bind-mounted, as the pod's user, under
its memory limit, and reports status the way kubelet does. Kept import-light: `launcher` runs from here.
"""
