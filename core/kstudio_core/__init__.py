"""The contracts that the operator, the trainer and the scorer share, and nothing else.

- `storage`: object storage (S3 API / MinIO), `s3://` URIs, streaming, clear errors.
- `ilearner`: the `.ilearner` container (manifest model, streaming digest check, manifest-only reader);
  serializing and loading the pipeline itself stays with the trainer and the scorer (skops).
- `vocabulary`: the algorithm allowlist with each parameter's accepted values, and the metrics, as plain
  data (generated from scikit-learn by `kstudio_trainer.vocabulary_gen`, checked against it by a test).
- `evaluation`: the evaluation report a run leaves next to its artifact (`evaluation.json`, figures) and
  its verified reader.
- `runresult`: the document a training run leaves next to its artifact; `exitcodes`; `labels`.

Dependencies stay small (pydantic, minio): the operator imports this without scikit-learn or numpy.
"""
