"""The served model: the verified artifact, its bounded loading, prediction and online micro-batching."""
