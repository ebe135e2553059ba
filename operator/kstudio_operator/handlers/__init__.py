"""Thin kopf handlers, one module per kind: parse, build (pure), apply (kube.py), report (status, Events).

They are plain functions; kstudio_operator.main registers them with kopf.
"""
