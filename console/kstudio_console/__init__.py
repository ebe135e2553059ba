"""The read-only web console (`kstudio console`) and the HTML of evaluation reports.

- `watch`, `cache`: one watch per kind feeding an in-memory cache; pages read only from it.
- `pages`: what each page shows, as pure functions of cached objects; `app`: the one route table.
- `evaluations`, `report_html`: a model's verified report and two models' deltas, and their HTML (also what
  `kstudio report` / `kstudio compare` use); `reports`, `charts`: reports, figures and run charts kept by
  sha256 or by their data.
- `testform`: Studio's Test form (one row, the user's key, the endpoint's Service).

Layers, highest first (each imports only lower ones; checked by tests/unit/test_import_direction.py):
`cli` > `app` > `pages`, `watch`, `reports`, `report_html`, `testform` > `cache`, `evaluations`, `charts`.

It imports the core and nothing else of ours: the trainer's renderer and the operator's promotion gate are
handed in by the `kstudio` command (kstudio_cli.console).
"""
