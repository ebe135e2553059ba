"""Development tools that need the product installed beside them, and so never ship in its wheel or image.

    kstudio-dev upload-examples   # the example datasets into object storage (make demo, tests, bench)
    kstudio-dev vocabulary        # regenerate core's algorithms.json from scikit-learn (--check: compare)

Modules: examples (the example datasets, their Experiment specs and their upload; palmerpenguins is a
dependency of this dev distribution only), vocabulary_gen (the generator of kstudio_core/algorithms.json:
it reads scikit-learn's private parameter constraints, fine at development time, never in the product).
"""
