"""The contracts that the operator, the trainer, the scorer and the console share, and nothing else.

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
- `batch`: the BatchJob plan, shard results and manifest, their places under the output prefix, and the
  rule that cuts the input into shards; `parquet_footer`: a Parquet file's row count without pyarrow.
- `exitcodes`: exit codes and the termination log; `labels`: label and annotation keys, the API group,
  version and plurals; `kubelogin`: the API server credentials (in-cluster or kubeconfig).

Dependencies stay small (pydantic, minio): the operator imports this without scikit-learn or numpy.
"""
