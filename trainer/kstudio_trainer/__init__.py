"""The training Job's entry point: experiment snapshot -> scikit-learn pipeline -> .ilearner."""
