"""The wire formats of online scoring: Azure ML request-response, Studio (classic), Open Inference V2."""
