"""The contracts that the operator, the trainer and the scorer share, and nothing else.

- `storage`: object storage (S3 API / MinIO), `s3://` URIs, streaming, clear errors.
- `ilearner`: the `.ilearner` container (manifest model, streaming digest check, manifest-only reader);
  serializing and loading the pipeline itself stays with the trainer and the scorer (skops).
- `vocabulary`: the algorithm allowlist with each parameter's accepted values, and the metrics, as plain
  data (generated from scikit-learn by `kstudio-dev vocabulary`, checked against it by a test).
- `runresult`: the document a training run leaves next to its artifact (one model: the trainer writes it,
  the operator reads it).
- `evaluation`: the evaluation report a run leaves next to its artifact (`evaluation.json`, figures) and
  its verified reader.
- `environment`: the environment of scorer and trainer pods as a typed table (the operator's builders
  write it, the pods' settings read the same names), and the one reading of a yes/no value and of an
  object-store endpoint.
- `exitcodes`: exit codes and the termination log; `labels`: label and annotation keys, the API group.

Dependencies stay small (pydantic, minio): the operator imports this without scikit-learn or numpy.
"""
