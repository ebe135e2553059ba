"""The I/O layer: one reconcile per kind (serving.py holds WebService and Endpoint). Each observes
(indexes, object storage), calls its pure decision (decisions/), applies the actions (kube.py), posts the
Events and writes the status (runtime.py).

They are plain coroutines: runtime.py's workers call the reconciles, kopf the deletion handlers
(kstudio_operator.main registers both).
"""
