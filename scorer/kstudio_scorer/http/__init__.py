"""The HTTP face of the scorer: the app, its route table, and the layers every request passes."""
