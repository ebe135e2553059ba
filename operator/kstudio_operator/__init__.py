"""Control plane: the kopf operator, the resource models and the CRDs generated from them."""
