"""The I/O layer: one reconcile loop per kind (serving.py holds WebService and Endpoint). Each observes
(indexes, object storage), calls its pure decision (decisions/), applies the actions (kube.py), posts the
Events and writes the status (runtime.py).

They are plain functions; kstudio_operator.main registers them with kopf.
"""
